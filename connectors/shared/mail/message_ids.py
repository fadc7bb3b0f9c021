"""Our outbound Message-IDs: stable per reply, and carrying a signed conversation token.

``<ch.NONCE.CONVERSATION.MAC@domain>``: NONCE is derived from the reply's idempotency key, so a
resend after a crash carries the same Message-ID (receivers and their clients collapse the two);
CONVERSATION is the hub's conversation id and MAC an HMAC over both with the instance's key.
When a customer answers, the id comes back in In-Reply-To/References: a genuine one names its
conversation even if the hub lost track of the sent message, and a forged one (someone guessing
ids to read another customer's thread) is recognized and ignored. Pure.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

_OURS = re.compile(r"^ch\.([a-z2-7]{16})\.([0-9a-z]{1,40})\.([a-z2-7]{16})@(.+)$")


def _b32(data: bytes, length: int) -> str:
    return base64.b32encode(data).decode().lower().rstrip("=")[:length]


def _mac(secret: bytes, nonce: str, conversation_id: str) -> str:
    digest = hmac.new(secret, f"{nonce}.{conversation_id}".encode(), hashlib.sha256).digest()
    return _b32(digest, 16)


def make(secret: bytes, idempotency_key: str, conversation_id: str, domain: str) -> str:
    """The Message-ID (without angle brackets) of the reply with ``idempotency_key``."""
    nonce = _b32(hmac.new(secret, b"mid:" + idempotency_key.encode(), "sha256").digest(), 16)
    return f"ch.{nonce}.{conversation_id}.{_mac(secret, nonce, conversation_id)}@{domain}"


def conversation_of(secret: bytes, message_id: str, domain: str) -> str | None:
    """The conversation a genuine Message-ID of ours names; None for anyone else's id."""
    found = _OURS.match(message_id.strip().strip("<>").lower())
    if found is None or found[4] != domain.lower():
        return None
    nonce, conversation_id, mac = found[1], found[2], found[3]
    if not hmac.compare_digest(mac, _mac(secret, nonce, conversation_id)):
        return None
    return conversation_id


def looks_ours(message_id: str, domain: str) -> bool:
    """True for anything shaped like our ids at our domain, genuine or forged."""
    found = _OURS.match(message_id.strip().strip("<>").lower())
    return found is not None and found[4] == domain.lower()
