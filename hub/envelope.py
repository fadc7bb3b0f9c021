"""The one typed message model every layer passes around.

Connectors build an :class:`Envelope` for each inbound message; the hub replies through an
:class:`Outbound` and gets a :class:`Delivery` back. All are frozen msgspec Structs: a round trip
through JSON is about three times faster than pydantic, and the same types serialize onto the bus.
Nothing here performs I/O.
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec


class Channel(enum.StrEnum):
    """Kinds of channel the hub knows natively; plugins may use their own names."""

    EMAIL = "email"
    SMS = "sms"
    WHATSAPP = "whatsapp"
    FAX = "fax"
    WEBCHAT = "webchat"
    VOICE = "voice"


class Direction(enum.StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class DeliveryStatus(enum.StrEnum):
    """Where an outbound message stands, in the order a provider reports it."""

    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    UNDELIVERED = "undelivered"
    FAILED = "failed"


class Identity(msgspec.Struct, frozen=True, kw_only=True):
    """A channel address of a person: ``kind`` says how to read ``address``.

    Kinds used by the built-in connectors: ``email``, ``phone`` (E.164), ``whatsapp``, ``fax``,
    ``webchat`` (a visitor id). Plugins may add their own kinds.
    """

    kind: str
    address: str
    display_name: str | None = None


class Attachment(msgspec.Struct, frozen=True, kw_only=True):
    """Metadata of a file that came with a message; the bytes live in the blob store."""

    name: str
    content_type: str
    size: int
    sha256: str
    blob_ref: str
    inline: bool = False
    content_id: str | None = None


class ThreadHints(msgspec.Struct, frozen=True, kw_only=True):
    """What a channel tells about the conversation a message belongs to.

    ``session`` is a channel's own thread key (a chat visitor, a phone-number pair): it joins an
    open conversation with that key. ``in_reply_to`` and ``references`` are provider message ids
    (email Message-IDs): they name the conversation of the newest stored message of the same
    inbox. ``conversation`` is a conversation id the channel verified itself (a signed token in
    a reply to our mail) and is tried first. A message linked either way joins only when its
    sender is that conversation's customer (and verified); anyone else's starts a conversation
    of its own. ``reopen`` says what a message linked to a closed conversation does: reopen it
    (True) or start a new one. ``delivery_report`` marks a report about a message we sent (a
    bounce): it comes from the recipient's mail system, not the customer, and joins the
    conversation its verified ``conversation`` token names (only that way).
    """

    session: str | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    conversation: str | None = None
    reopen: bool = False
    delivery_report: bool = False


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """One message, normalized: the only thing a connector hands to the hub.

    ``idempotency_key`` must be the same every time the provider redelivers the same message (a
    Message-ID, a MessageSid, a chat client id); the hub stores a message at most once per key.
    ``received_at`` is seconds since the epoch (UTC). ``vouched_customer`` is a customer number
    the channel has verified belongs to the sender (a web chat host page's signed customer id):
    the hub then links the sender's identity to that customer. ``sender_verified`` is False when
    the channel knows the sender address may be forged (an email that failed SPF/DKIM/DMARC):
    such a message is never attached to an existing customer by itself. ``claimed`` holds
    addresses the sender says are theirs without proof (a pre-chat form): linked only while no
    one else owns them, otherwise shown to the agent as a claim.
    """

    channel: str
    inbox: str
    direction: Direction
    idempotency_key: str
    sender: Identity
    received_at: float
    provider_id: str | None = None
    recipients: tuple[Identity, ...] = ()
    thread: ThreadHints = ThreadHints()
    subject: str | None = None
    text: str = ""
    html: str | None = None
    language: str | None = None
    attachments: tuple[Attachment, ...] = ()
    auto_submitted: bool = False
    sender_verified: bool = True
    vouched_customer: str | None = None
    claimed: tuple[Identity, ...] = ()
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


class Template(msgspec.Struct, frozen=True, kw_only=True):
    """A provider-approved message template the agent picked (WhatsApp outside its 24 hours).

    ``name`` is the template's name in the inbox settings; ``variables`` fill its placeholders.
    """

    name: str
    variables: dict[str, str] = msgspec.field(default_factory=dict)


class Outbound(msgspec.Struct, frozen=True, kw_only=True):
    """A reply the hub asks a connector to send.

    ``idempotency_key`` is stable across retries of the same reply, so a connector whose provider
    supports it can make a resend after a crash harmless. ``attempt`` counts send attempts of this
    reply, this one included, as recorded before the connector is called: above 1 an earlier
    attempt may have reached the provider (a crash or a lost answer), and a connector whose
    provider cannot deduplicate should look for that message before sending again. Such a
    lookup may only adopt a message created at or after ``first_attempt_at`` (when this reply's
    first attempt began, by the hub's clock) whose provider id is not in
    ``foreign_provider_ids`` (ids the hub has recorded for other replies).
    """

    message_id: str
    conversation_id: str
    inbox: str
    idempotency_key: str
    recipient: Identity
    text: str
    subject: str | None = None
    html: str | None = None
    thread: ThreadHints = ThreadHints()
    attachments: tuple[Attachment, ...] = ()
    author: str | None = None
    created_at: float = 0.0
    template: Template | None = None
    attempt: int = 1
    first_attempt_at: float | None = None
    foreign_provider_ids: tuple[str, ...] = ()


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    """What a connector reports after handing an :class:`Outbound` to its provider."""

    status: DeliveryStatus
    provider_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None


class CallEvent(msgspec.Struct, frozen=True, kw_only=True):
    """Something that happened to a phone call, for its conversation's timeline.

    ``state`` is one of :data:`CALL_STATES`; ``call_sid`` the provider's id of the call leg it
    is about (the caller's, or an agent's); ``agent`` who answered, held or was transferred
    to; ``duration`` seconds, with ``ended``; ``detail`` words for the agent (why it failed,
    the recording's attachment name). ``key`` is the provider's identity of the report when
    it has one (a conference event's sequence number): an event with a key is recorded once per
    key, one without once per (call_sid, state, agent), so a provider's repeated callback
    changes nothing.
    """

    call_sid: str
    state: str
    at: float
    agent: str | None = None
    duration: int | None = None
    detail: str | None = None
    key: str | None = None


#: what a :class:`CallEvent` may say, in the order a call usually goes through them
CALL_STATES = (
    "ringing",
    "answered",
    "held",
    "resumed",
    "transferred",
    "voicemail",
    "callback_requested",
    "callback_dialed",
    "recording",
    "abandoned",
    "ended",
    "failed",
)


def reply_to(
    source: Envelope,
    *,
    message_id: str,
    conversation_id: str,
    idempotency_key: str,
    text: str,
    created_at: float,
    author: str | None = None,
) -> Outbound:
    """The :class:`Outbound` answering ``source`` on its channel, threaded under it."""
    return Outbound(
        message_id=message_id,
        conversation_id=conversation_id,
        inbox=source.inbox,
        idempotency_key=idempotency_key,
        recipient=source.sender,
        text=text,
        subject=source.subject,
        thread=ThreadHints(
            session=source.thread.session,
            in_reply_to=source.provider_id,
            references=(*source.thread.references, *filter(None, [source.provider_id])),
        ),
        author=author,
        created_at=created_at,
    )


_encoder = msgspec.json.Encoder()
_envelope_decoder = msgspec.json.Decoder(Envelope)


def encode_envelope(envelope: Envelope) -> bytes:
    """Serialize an envelope to JSON bytes (for the store and the bus)."""
    return _encoder.encode(envelope)


def decode_envelope(data: bytes | str) -> Envelope:
    """Parse JSON bytes produced by :func:`encode_envelope`, validating every field."""
    return _envelope_decoder.decode(data)


def problem_notes(metadata: dict[str, Any]) -> tuple[str, ...]:
    """What a connector flagged about an inbound message (a fax without its document, OCR
    unavailable), for the agent: ``metadata["problems"]`` as at most ten short strings."""
    problems = metadata.get("problems")
    if not isinstance(problems, list):
        return ()
    return tuple(str(problem)[:300] for problem in problems[:10])
