"""HTTP hardening shared by every endpoint: Origin checks, trusted proxies, secure cookies.

State-changing API requests pass one guard (:func:`origin_guard`), so a new endpoint cannot
forget the check. Forwarded headers are believed only from ``server.trusted_proxies``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from hub.settings import ServerSettings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def origin_allowed(request: web.Request, allowed: Sequence[str]) -> bool:
    """Browsers send Origin on websockets and on cross-site writes: it must be our own or an
    allowed one. A missing Origin means a non-browser client, which cannot be used for
    cross-site request forgery or websocket hijacking."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    if "*" in allowed or origin in allowed:
        return True
    parts = urlsplit(origin)
    return parts.netloc == request.host and parts.scheme in {"http", "https"}


def origin_guard(allowed: Sequence[str]) -> Middleware:
    """Refuse every non-GET request under ``/api/`` from a foreign Origin with 403."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if (
            request.method not in _SAFE_METHODS
            and request.path.startswith("/api/")
            and not origin_allowed(request, allowed)
        ):
            return web.json_response(
                {"error": "forbidden_origin", "message": "this origin may not change anything"},
                status=403,
            )
        return await handler(request)

    return guard


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def from_trusted_proxy(request: web.Request, proxies: Sequence[Network]) -> bool:
    peer = _address(request.remote or "")
    return peer is not None and any(peer in network for network in proxies)


def client_address(request: web.Request, proxies: Sequence[Network]) -> str:
    """The client's address: behind trusted proxies, the nearest X-Forwarded-For entry that is
    not itself a trusted proxy (entries further left are the client's word, not the proxy's)."""
    remote = request.remote or "unknown"
    if not from_trusted_proxy(request, proxies):
        return remote
    hops = [hop.strip() for hop in request.headers.get("X-Forwarded-For", "").split(",")]
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            break
        if not any(address in network for network in proxies):
            return str(address)
    return remote


def is_secure(request: web.Request, server: ServerSettings) -> bool:
    """Whether the browser reached us over HTTPS: TLS here, an ``https`` public_url, or a trusted
    proxy saying ``X-Forwarded-Proto: https``."""
    if request.secure:
        return True
    if (server.public_url or "").lower().startswith("https://"):
        return True
    if from_trusted_proxy(request, server.trusted_proxies):
        proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
        return proto == "https"
    return False
