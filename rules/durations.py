"""Durations as admins write them in YAML: ``30s``, ``15m``, ``1h``, ``2d``, ``250ms`` or seconds.

One parser for ``rules.yaml`` (``sla``) and ``hub.yaml`` (timeouts, TTLs), so both files accept
the same spellings; the hub imports it from here.
"""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: object) -> float:
    """``30s``, ``15m``, ``1h``, ``2d``, ``250ms`` or a number of seconds, to seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration like 30s, 15m, 1h or 2d")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ValueError("a duration like 30s, 15m, 1h or 2d")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds
