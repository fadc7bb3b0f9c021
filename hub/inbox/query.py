"""What an inbox request asks for (``GET /api/conversations``), checked. Pure.

A view (``mine``, ``queues``, ``unassigned``, ``closed``, ``all``) and optional filters
(``channel``, ``queue``, ``tag``, ``tier``); pages newest change first, continued by an
opaque cursor. Anything else answers 400 with what to change (:class:`BadRequest`).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

import msgspec

MAX_LIMIT = 100
DEFAULT_LIMIT = 50
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
_KNOWN = {"view", "channel", "queue", "tag", "tier", "cursor", "limit"}


class View(StrEnum):
    MINE = "mine"  # held by me
    QUEUES = "queues"  # waiting in the queues I serve
    UNASSIGNED = "unassigned"  # waiting anywhere I may see
    CLOSED = "closed"  # closed, of what I may see
    ALL = "all"  # everything I may see


class BadRequest(ValueError):
    """The request cannot be answered; the message says what to change."""


@dataclass(frozen=True, slots=True)
class After:
    at: float
    key: str


@dataclass(frozen=True, slots=True)
class InboxQuery:
    view: View
    channel: str | None
    queue: str | None
    tag: str | None
    tier: str | None
    limit: int
    after: After | None


def _name(params: Mapping[str, str], key: str) -> str | None:
    value = params.get(key)
    if value is None or value == "":
        return None
    if not _NAME.fullmatch(value):
        raise BadRequest(f"{key} must be a name of letters, digits and _ . : - (at most 64)")
    return value


def parse(params: Mapping[str, str]) -> InboxQuery:
    unknown = sorted(set(params) - _KNOWN)
    if unknown:
        raise BadRequest(f"unknown parameter {unknown[0]!r}; allowed: {', '.join(sorted(_KNOWN))}")
    raw_view = params.get("view") or View.MINE.value
    try:
        view = View(raw_view)
    except ValueError:
        raise BadRequest(f"view must be one of {', '.join(v.value for v in View)}") from None
    tier = params.get("tier") or None
    if tier is not None and not re.fullmatch(r"[A-Za-z]", tier):
        raise BadRequest("tier is one letter (A, B, C)")
    limit_text = params.get("limit") or str(DEFAULT_LIMIT)
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_LIMIT:
        raise BadRequest(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return InboxQuery(
        view=view,
        channel=_name(params, "channel"),
        queue=_name(params, "queue"),
        tag=_name(params, "tag"),
        tier=tier.upper() if tier else None,
        limit=int(limit_text),
        after=decode_cursor(params.get("cursor")),
    )


_CURSOR = msgspec.json.Decoder(tuple[float, str])


def encode_cursor(after: After) -> str:
    raw = msgspec.json.encode((after.at, after.key))
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(value: str | None) -> After | None:
    if not value:
        return None
    if len(value) > 200:
        raise BadRequest("cursor is not one this API gave out")
    try:
        at, key = _CURSOR.decode(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise BadRequest("cursor is not one this API gave out") from None
    if not key or len(key) > 64:
        raise BadRequest("cursor is not one this API gave out")
    return After(at=at, key=key)
