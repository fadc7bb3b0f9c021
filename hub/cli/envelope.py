"""``channelhub envelope FILE``: the envelope a connector makes of a recorded sample.

The CLI knows no concrete connector: it asks the connector type's
:meth:`~connectors.base.Connector.sample_envelope` hook (a raw mail for ``email``), so a
third-party channel that implements the hook works here and in ``rules test --sample``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

from hub.envelope import Envelope
from hub.errors import ConfigError


def read_sample(name: str) -> bytes:
    """A sample file's bytes (``-``: standard input); a clear error if it cannot be read."""
    try:
        return sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    except OSError as exc:
        raise ConfigError([f"{name}: {exc.strerror or exc}"]) from None


def sample_envelope(name: str, raw: bytes, connector_type: str, inbox: str) -> Envelope:
    """What a connector of ``connector_type`` builds from ``raw`` (files listed, not stored)."""
    from hub.plugins import ConnectorRegistry

    connector = ConnectorRegistry.discover().get(connector_type)
    try:
        return connector.sample_envelope(raw, inbox, time.time())
    except NotImplementedError:
        raise ConfigError([f"connector type {connector_type!r} cannot read samples"]) from None
    except ValueError as exc:
        raise ConfigError([f"{name}: {exc}"]) from None


def show(args: argparse.Namespace) -> int:
    envelope = sample_envelope(args.file, read_sample(args.file), args.type, args.inbox)
    json.dump(msgspec.to_builtins(envelope), sys.stdout, indent=2, ensure_ascii=False)
    print()
    return 0


def add_commands(commands: Any) -> None:
    showing = commands.add_parser(
        "envelope", help="print the envelope a connector makes of a sample (default: a raw mail)"
    )
    showing.add_argument("file", help="the sample (a raw RFC 5322 mail for email), - for stdin")
    showing.add_argument("--type", default="email", help="connector type (default: email)")
    showing.add_argument("--inbox", default="email", help="inbox name to show (default: email)")
    showing.set_defaults(run=show)
