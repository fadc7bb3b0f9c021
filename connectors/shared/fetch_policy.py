"""Which URLs a webhook may make the hub fetch: the SSRF policy of media downloads. Pure.

A provider's webhook names the media to download (Twilio's ``MediaUrl0``, Telnyx's
``media_url``); whoever can forge or replay one must not turn the hub into a proxy into its own
network. A URL is fetched only over https (plain http only with ``allow_private``), without
credentials in it, from a host on the allow-list and, unless allowed, not at a private address.
:mod:`connectors.shared.media_fetcher` applies this to every redirect and checks DNS answers
with :func:`address_private` when it connects.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    """Whether ``host`` is on ``allowed``: exact names, ``*.example.com`` for its subdomains
    (not the domain itself), or ``*`` for any host."""
    host = host.lower().rstrip(".")
    for pattern in allowed:
        pattern = pattern.lower().rstrip(".")
        if pattern == "*":  # any host (private addresses are still refused separately)
            return True
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and host != pattern[2:]:
                return True
        elif host == pattern:
            return True
    return False


def address_private(value: str) -> bool:
    """True for addresses a webhook must never make us call: loopback, private, link-local
    (cloud metadata at 169.254.169.254), multicast, reserved, unspecified, and IPv6 forms of
    them (IPv4-mapped included)."""
    address = ipaddress.ip_address(value.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast


def media_refusal(url: str, allowed: tuple[str, ...], allow_private: bool) -> str | None:
    """Why ``url`` must not be fetched, or None if it may be (DNS answers are checked again
    when connecting)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return "not a valid URL"
    schemes = {"https", "http"} if allow_private else {"https"}
    if parts.scheme.lower() not in schemes:
        return f"scheme {parts.scheme or '(none)'!r} is not allowed"
    if parts.username is not None or parts.password is not None:
        return "credentials in the URL are not allowed"
    host = parts.hostname or ""
    if not host:
        return "no host"
    if not host_allowed(host, allowed):
        return f"host {host!r} is not on media_hosts"
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None and not allow_private and address_private(host):
        return f"address {host} is private"
    return None
