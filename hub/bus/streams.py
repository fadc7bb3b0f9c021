"""Pure pieces of the Redis Streams bus: key names, entry ids, entry decoding, dead-letter
entries, which errors mean "Redis cannot serve now", and the reconnect delay."""

from __future__ import annotations

import random
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

import msgspec
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from hub.bus.events import BusEvent, decode_event

EVENT_FIELD = b"event"
BROADCAST = "broadcast"  # the group label of broadcast subscriptions in metrics and logs

# error replies that say "not now" rather than "wrong command": loading a dump, cannot persist,
# out of memory, a replica, a failover in progress, a script running too long
_TRANSIENT_REPLIES = (
    "LOADING",
    "MISCONF",
    "OOM",
    "READONLY",
    "MASTERDOWN",
    "CLUSTERDOWN",
    "TRYAGAIN",
    "NOREPLICAS",
    "BUSY ",
)


def stream_key(prefix: str, topic: str) -> str:
    return f"{prefix}:{topic}"


def dead_letter_key(prefix: str, topic: str) -> str:
    return f"{prefix}:{topic}:dead"


def parse_id(raw: bytes | str) -> tuple[int, int]:
    """``b"1700000000000-3"`` as ``(1700000000000, 3)``, for comparing positions."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    millis, _, sequence = text.partition("-")
    return int(millis), int(sequence or 0)


def as_text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


class Undecodable(ValueError):
    """A stream entry that is not a :data:`BusEvent` (garbage, or a foreign writer's)."""


def decode_entry(fields: Mapping[bytes, bytes] | None) -> BusEvent:
    """The event a stream entry carries; :class:`Undecodable` says why there is none."""
    if not fields:
        raise Undecodable("the entry has no fields")
    data = fields.get(EVENT_FIELD)
    if data is None:
        raise Undecodable(f"the entry has no {EVENT_FIELD.decode()!r} field")
    try:
        return decode_event(data)
    except msgspec.DecodeError as exc:
        raise Undecodable(str(exc)) from None


def dead_letter_fields(
    fields: Mapping[bytes, bytes] | None,
    *,
    source_id: bytes | str,
    group: str,
    consumer: str,
    reason: str,
    deliveries: int,
) -> dict[bytes, bytes]:
    """A dead-letter entry: why and where from, then the original fields under ``field:``
    (so an original field can never overwrite the explanation)."""
    entry = {
        b"reason": reason.encode(),
        b"source_id": source_id if isinstance(source_id, bytes) else source_id.encode(),
        b"group": group.encode(),
        b"consumer": consumer.encode(),
        b"deliveries": str(deliveries).encode(),
    }
    for name, value in (fields or {}).items():
        entry[b"field:" + name] = value
    return entry


def is_unavailable(exc: BaseException) -> bool:
    """True when Redis cannot serve now (unreachable, timing out, loading, read-only, out of
    memory, cannot persist): worth retrying later, and a publisher's caller answers 503."""
    if isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError):
        return True
    if isinstance(exc, ResponseError):
        return str(exc).upper().startswith(_TRANSIENT_REPLIES)
    return False


def is_missing_group(exc: BaseException) -> bool:
    """XREADGROUP/XAUTOCLAIM on a stream or group that does not exist (Redis lost its data)."""
    return isinstance(exc, ResponseError) and str(exc).startswith("NOGROUP")


def is_missing_key(exc: BaseException) -> bool:
    return isinstance(exc, ResponseError) and "no such key" in str(exc).lower()


def reconnect_delay(attempt: int, initial: float, cap: float, rng: random.Random) -> float:
    """Seconds before reconnect attempt ``attempt`` (0-based): exponential from ``initial`` up
    to ``cap``, with "equal jitter" (between half and all of it) so that nodes that lost Redis
    together do not come back in lockstep."""
    delay = min(cap, initial * float(2 ** min(attempt, 30)))
    return delay / 2 + rng.uniform(0, delay / 2)


def redacted(url: str) -> str:
    """``url`` without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))
