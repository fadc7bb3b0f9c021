"""Tokens signed with an instance's key: ``PAYLOAD.MAC``, where MAC is the URL-safe base64 of
HMAC-SHA256 over PAYLOAD (cut to ``size`` bytes). Pure.

What a payload means is the caller's business (a web chat visitor, a link to a blob); this
module only proves that this instance issued it. Compare with :func:`verify`, which takes
constant time over the MAC, never with ``==``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

FULL = 32  # bytes of an untruncated HMAC-SHA256


def b64(data: bytes) -> str:
    """URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mac(secret: bytes, payload: str, size: int = FULL) -> str:
    """The MAC of ``payload`` under ``secret``: ``size`` bytes (at most 32) of HMAC-SHA256."""
    return b64(hmac.new(secret, payload.encode(), hashlib.sha256).digest()[:size])


def sign(secret: bytes, payload: str, size: int = FULL) -> str:
    """``payload`` with its MAC appended after a dot."""
    return f"{payload}.{mac(secret, payload, size)}"


def verify(secret: bytes, token: str, size: int = FULL) -> str | None:
    """The payload of a token :func:`sign` made with ``secret`` and ``size``; None for
    anything else (no dot, a MAC that does not match)."""
    payload, dot, given = token.rpartition(".")
    if not dot:
        return None
    # as bytes: compare_digest raises TypeError for a str with non-ASCII characters
    expected = mac(secret, payload, size).encode()
    return payload if hmac.compare_digest(given.encode(), expected) else None
