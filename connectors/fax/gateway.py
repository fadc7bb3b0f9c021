"""The one interface every fax gateway module implements (Sinch, Telnyx, email).

A gateway knows its provider's wire format and nothing about documents or the hub: it turns
webhooks (or mail) into :class:`IncomingFax` and :class:`Delivery` reports handed to
:class:`Hooks`, and sends an :class:`OutgoingFax` that the connector has already rendered.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
import msgspec
from aiohttp import web

from connectors.base import ConnectorContext, Route, SendError
from hub.envelope import Delivery


@dataclass(frozen=True, slots=True)
class IncomingFax:
    """A received fax as the gateway reported it; ``data`` is the document (None if it could
    not be had, ``problem`` then says why)."""

    fax_id: str
    from_number: str
    to_number: str
    data: bytes | None
    pages_declared: int | None = None
    partial: bool = False
    problem: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OutgoingFax:
    """A rendered reply: ``ref`` is the stored PDF (served to gateways that fetch by URL),
    ``key`` the reply's idempotency key (sent along so a retry can find an earlier send)."""

    key: str
    to_number: str
    from_number: str
    pdf: bytes
    pages: int
    ref: str
    subject: str | None
    attempt: int
    created_at: float


@dataclass(frozen=True, slots=True)
class Hooks:
    ctx: ConnectorContext
    receive: Callable[[IncomingFax], Awaitable[None]]  # returns once the fax is kept durably
    report: Callable[[str, Delivery], Awaitable[bool]]
    public_base: str  # where the gateway reaches this instance: …/channels/NAME
    media_url: Callable[[str, str], str]  # (blob ref, content type) -> signed URL
    already: Callable[[str], bool]  # this fax id was kept or stored lately (skip the download)


class Gateway(Protocol):
    name: str

    def routes(self) -> Sequence[Route]: ...

    async def start(self, hooks: Hooks) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, fax: OutgoingFax) -> Delivery:
        """Hand the fax to the provider; :class:`connectors.base.SendError` on failure."""
        ...

    def health(self) -> str | None: ...


# how much earlier than the reply a provider's clock may date the reply's own fax
CLOCK_SKEW = 300.0


def reply_ref(key: str) -> str:
    """A short, fixed-length mark of one reply (its idempotency key hashed): what a provider
    stores with the fax (Telnyx ``client_state``, a mail's Message-ID) so that a retry adopts
    this reply's own earlier fax and never another reply's, whatever their content."""
    return hashlib.sha256(key.encode()).hexdigest()[:40]


def created_before(stamp: object, reply_created_at: float) -> bool:
    """True when a provider's creation time (ISO 8601) is clearly before the reply existed:
    such a fax cannot be this reply's. An absent or unreadable time decides nothing."""
    if not isinstance(stamp, str) or not stamp:
        return False
    try:
        when = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return False
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp() < reply_created_at - CLOCK_SKEW


def iso_time(seconds: float) -> str:
    """``seconds`` since the epoch as ISO 8601 UTC (``2026-11-30T09:01:11Z``)."""
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def decode_json(data: bytes | str) -> Any:
    """JSON from a caller or provider; ValueError (never RecursionError: 100,000 nested
    brackets made the webhook answer 500) when it is not JSON we can take."""
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError:
        raise ValueError("the body is not JSON") from None
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None


def json_object(body: bytes) -> dict[str, Any]:
    """A provider's JSON answer as an object; {} for anything else (an HTML error page)."""
    try:
        document = decode_json(body) if body else {}
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole request body, or 413 as soon as it is over ``limit`` bytes.

    ``request.content.read(n)`` returns what has arrived *so far* (up to n): a large webhook
    read that way was cut short, so it is read to its end here."""
    if (request.content_length or 0) > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length or 0)
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.readany():
        size += len(chunk)
        if size > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size)
        chunks.append(chunk)
    return b"".join(chunks)


async def get_json(
    hooks: Hooks, url: str, *, params: dict[str, str], headers: dict[str, str], seconds: float
) -> dict[str, Any]:
    """GET a provider's JSON (listing earlier faxes); :class:`SendError` (retryable) if that
    cannot be had, since sending blind could fax twice."""
    try:
        async with hooks.ctx.http.get(
            url, params=params, headers=headers, timeout=aiohttp.ClientTimeout(total=seconds)
        ) as response:
            if response.status != 200:
                raise SendError(
                    f"cannot check for an earlier send (HTTP {response.status})",
                    code="check_failed",
                )
            return json_object(await response.read())
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise SendError(f"gateway unreachable: {exc.__class__.__name__}", code="network") from None


def client_address(
    request: web.Request, trusted_proxies: tuple[str, ...]
) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The caller's address: the peer, or the last X-Forwarded-For hop a trusted proxy added."""
    try:
        peer = ipaddress.ip_address(request.remote or "")
    except ValueError:
        return None
    proxies = [ipaddress.ip_network(cidr, strict=False) for cidr in trusted_proxies]
    if any(peer in net for net in proxies):
        hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",")]
        for hop in reversed([h for h in hops if h]):
            try:
                address = ipaddress.ip_address(hop)
            except ValueError:
                return None
            if not any(address in net for net in proxies):
                return address
    return peer


def source_allowed(
    request: web.Request, allowed: tuple[str, ...], trusted_proxies: tuple[str, ...]
) -> bool:
    if not allowed:
        return True
    address = client_address(request, trusted_proxies)
    return address is not None and any(
        address in ipaddress.ip_network(cidr, strict=False) for cidr in allowed
    )
