"""Web chat protocol core: frames, visitor tokens, signed customers, envelopes. Pure: no I/O.

Customer websocket protocol (documented in docs/webchat.md):

client → server: ``hello {token?, name?}``, ``message {client_id, text}``, ``ping``
server → client: ``welcome {token, visitor, title, welcome, history}``, ``ack {client_id, id,
duplicate}``, ``message {id, from, text, at, automatic}``, ``error {code, message,
client_id?}``, ``pong``
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import msgspec

from connectors.base import HistoryItem
from connectors.shared import signed_tokens
from hub.envelope import Direction, Envelope, Identity, ThreadHints

TOKEN_PREFIX = "v1"  # noqa: S105 - a version tag, not a secret
TOKEN_MAC_BYTES = 18
IDENTITY_KIND = "webchat"


class Hello(msgspec.Struct, frozen=True, tag="hello", forbid_unknown_fields=True):
    token: str | None = None
    name: str | None = None
    email: str | None = None  # what the visitor typed in a pre-chat form: unverified
    phone: str | None = None
    customer: str | None = None  # a customer number the host page vouches for …
    expires: int | None = None  # … until this time (epoch seconds) …
    signature: str | None = None  # … with HMAC-SHA256(identity_secret, "customer.expires")


class Say(msgspec.Struct, frozen=True, tag="message", forbid_unknown_fields=True):
    client_id: str
    text: str


class Ping(msgspec.Struct, frozen=True, tag="ping", forbid_unknown_fields=True):
    pass


ChatCommand = Hello | Say | Ping

_decoder = msgspec.json.Decoder(ChatCommand)
_encoder = msgspec.json.Encoder()


class ChatProtocolError(Exception):
    def __init__(self, code: str, message: str, client_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.client_id = client_id


def parse_frame(data: str | bytes, *, max_chars: int) -> ChatCommand:
    """Parse one visitor frame; raise :class:`ChatProtocolError` with a stable code."""
    try:
        command: ChatCommand = _decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise ChatProtocolError("bad_frame", str(exc)) from None
    except msgspec.DecodeError:
        raise ChatProtocolError("bad_frame", "frames must be JSON objects") from None
    if isinstance(command, Say):
        if not 0 < len(command.client_id) <= 64:
            raise ChatProtocolError("bad_frame", "client_id must be 1 to 64 characters")
        if not command.text.strip():
            raise ChatProtocolError("empty", "the message is empty", command.client_id)
        if len(command.text) > max_chars:
            raise ChatProtocolError(
                "too_long", f"messages are limited to {max_chars} characters", command.client_id
            )
    if isinstance(command, Hello):
        for field_name, limit in (("name", 100), ("email", 254), ("phone", 32)):
            value = getattr(command, field_name)
            if value is not None and len(value) > limit:
                raise ChatProtocolError(
                    "bad_frame", f"{field_name} is limited to {limit} characters"
                )
    return command


MAX_VOUCH_SECONDS = 7 * 86400


def customer_signature(secret: bytes, customer: str, expires: int) -> str:
    """What the company's website computes for a logged-in customer (hex HMAC-SHA256)."""
    return hmac.new(secret, f"{customer}.{expires}".encode(), hashlib.sha256).hexdigest()


def vouched_customer(secret: bytes, hello: Hello, now: float) -> str | None:
    """The customer number of a hello the host page signed, if the signature holds and has
    not expired (and does not reach more than a week ahead); None otherwise."""
    if not (hello.customer and hello.expires and hello.signature):
        return None
    if len(hello.customer) > 128 or not now < hello.expires <= now + MAX_VOUCH_SECONDS:
        return None
    expected = customer_signature(secret, hello.customer, hello.expires)
    # as bytes: compare_digest raises TypeError for a str with non-ASCII characters
    given = hello.signature.lower().encode()
    return hello.customer if hmac.compare_digest(expected.encode(), given) else None


def issue_token(secret: bytes, random_bytes: bytes) -> tuple[str, str]:
    """A new visitor: (token to hand to the browser, visitor id). Needs 16+ random bytes.

    The token is ``v1.VISITOR.MAC`` (:mod:`connectors.shared.signed_tokens`)."""
    if len(random_bytes) < 16:
        raise ValueError("a visitor id needs at least 128 random bits")
    visitor = base64.urlsafe_b64encode(random_bytes).decode().rstrip("=")
    return signed_tokens.sign(secret, f"{TOKEN_PREFIX}.{visitor}", TOKEN_MAC_BYTES), visitor


def verify_token(secret: bytes, token: str) -> str | None:
    """The visitor id of a token this instance issued, or None for anything else."""
    if len(token) > 200:
        return None
    payload = signed_tokens.verify(secret, token, TOKEN_MAC_BYTES)
    if payload is None:
        return None
    prefix, _, visitor = payload.partition(".")
    if prefix != TOKEN_PREFIX or not visitor or "." in visitor:
        return None
    return visitor


def to_envelope(
    instance: str,
    visitor: str,
    say: Say,
    *,
    now: float,
    name: str | None,
    vouched: str | None = None,
    claimed: tuple[Identity, ...] = (),
) -> Envelope:
    """The envelope of one visitor message; the client id makes a resend idempotent."""
    return Envelope(
        channel="webchat",
        inbox=instance,
        direction=Direction.INBOUND,
        idempotency_key=f"webchat:{instance}:{visitor}:{say.client_id}",
        provider_id=say.client_id,
        sender=Identity(kind=IDENTITY_KIND, address=visitor, display_name=name),
        received_at=now,
        thread=ThreadHints(session=visitor),
        text=say.text,
        vouched_customer=vouched,
        claimed=claimed,
    )


def claims(hello: Hello) -> tuple[Identity, ...]:
    """The contact details a visitor typed, as unproven identities (the hub decides)."""
    found = []
    if hello.email and hello.email.strip():
        found.append(Identity(kind="email", address=hello.email.strip()))
    if hello.phone and hello.phone.strip():
        found.append(Identity(kind="phone", address=hello.phone.strip()))
    return tuple(found)


def history_entry(item: HistoryItem) -> dict[str, object]:
    return {
        "id": item.message_id,
        "from": "you" if item.direction == "inbound" else "agent",
        "text": item.text,
        "at": item.created_at,
        "automatic": item.direction == "outbound" and item.author is None,
    }


def encode(kind: str, **fields: object) -> str:
    """A server frame as JSON text."""
    return _encoder.encode({"type": kind, **fields}).decode()
