"""Echo's wire format, pure: no awaits, sockets or clocks (the time is passed in).

Inbound: the provider POSTs ``{"id": ..., "from": ..., "text": ...}`` as JSON with
``X-Echo-Signature: sha256=<hex HMAC-SHA256 of the body>``. Outbound: ``POST
{api_url}/v1/messages`` with ``{"to": ..., "text": ...}`` and an ``Idempotency-Key``; the
provider answers ``201 {"id": ...}`` or ``{"error": ...}`` with a 4xx/5xx status.
"""

from __future__ import annotations

import hashlib
import hmac

import msgspec

from connectors.base import SendError
from hub.envelope import (
    Delivery,
    DeliveryStatus,
    Direction,
    Envelope,
    Identity,
    Outbound,
    ThreadHints,
)

CHANNEL = "echo"
IDENTITY_KIND = "echo"  # an Echo user handle
MAX_TEXT = 10_000


class BadWebhook(ValueError):
    """A webhook body that is not what the provider sends; the message says what is wrong."""


class _Inbound(msgspec.Struct, frozen=True):
    id: str
    sender: str = msgspec.field(name="from")
    text: str = ""


def sign(secret: bytes, body: bytes) -> str:
    """The ``X-Echo-Signature`` value of ``body``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is the signature of ``body`` (compared in constant time)."""
    return header is not None and hmac.compare_digest(header.encode(), sign(secret, body).encode())


def to_envelope(body: bytes, *, inbox: str, received_at: float) -> Envelope:
    """The envelope of one inbound webhook; :class:`BadWebhook` if it is malformed.

    The provider's message id is the idempotency key: a redelivery is stored only once.
    """
    try:
        message = msgspec.json.decode(body, type=_Inbound)
    except msgspec.DecodeError as exc:
        raise BadWebhook(f"not an Echo message: {exc}") from None
    if not 0 < len(message.id) <= 100:
        raise BadWebhook("id must be 1 to 100 characters")
    if not 0 < len(message.sender) <= 100:
        raise BadWebhook("from must be 1 to 100 characters")
    if len(message.text) > MAX_TEXT:
        raise BadWebhook(f"text is over {MAX_TEXT} characters")
    sender = Identity(kind=IDENTITY_KIND, address=message.sender)
    return Envelope(
        channel=CHANNEL,
        inbox=inbox,
        direction=Direction.INBOUND,
        idempotency_key=f"echo:{inbox}:{message.id}",
        provider_id=message.id,
        sender=sender,
        received_at=received_at,
        text=message.text,
        thread=ThreadHints(session=sender.address),  # one open conversation per user
    )


def to_request(outbound: Outbound) -> dict[str, str]:
    """The JSON body that sends ``outbound``."""
    return {"to": outbound.recipient.address, "text": outbound.text}


def delivery(status: int, body: bytes) -> Delivery:
    """The provider's answer to a send as a :class:`Delivery`, or :class:`SendError`.

    429 and 5xx are worth another try; any other 4xx fails the same way again.
    """
    try:
        document = msgspec.json.decode(body) if body else {}
    except msgspec.DecodeError:
        document = {}
    if not isinstance(document, dict):
        document = {}
    if status >= 400:
        reason = str(document.get("error") or f"HTTP {status}")[:300]
        raise SendError(
            f"Echo refused the message: {reason}",
            code=f"http_{status}",
            retryable=status == 429 or status >= 500,
        )
    message_id = document.get("id")
    if not isinstance(message_id, str) or not message_id:
        raise SendError("Echo answered without a message id", code="bad_answer")
    return Delivery(status=DeliveryStatus.SENT, provider_id=message_id)
