"""The events on the bus and their one wire format.

Events are msgspec Structs tagged by class name, so every bus implementation serializes them
the same way (JSON: readable with ``redis-cli XRANGE``) and a consumer decodes exactly the
union it knows.
"""

from __future__ import annotations

import msgspec

from hub.bus.node_events import (
    AgentCall,
    AgentFrames,
    CallAnswer,
    NodeBeat,
    Reannounce,
    RulesChanged,
    VisitorFrame,
)
from hub.envelope import CallEvent


class AttachmentListed(msgspec.Struct, frozen=True, kw_only=True):
    """A stored attachment as the console lists it (no blob reference: the console fetches
    the file through the access-checked attachment path)."""

    id: str
    name: str
    content_type: str
    size: int
    sha256: str


class MessageStored(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """A message (inbound, reply or note) is durably stored in a conversation."""

    conversation_id: str
    message_id: str
    direction: str
    kind: str = "message"
    conversation_created: bool = False
    reopened: bool = False  # a closed conversation is queued again by this message
    status: str = "queued"
    assignee: str | None = None
    queue: str | None = None
    priority: str | None = None
    queued_at: float | None = None
    channel: str | None = None
    text: str = ""
    author: str | None = None
    created_at: float = 0.0
    customer_id: str | None = None
    skills: tuple[str, ...] = ()  # from the routing decision
    preferred_agent: str | None = None  # the rules asked for this agent
    sla: float | None = None  # first-response target from the rules
    # what the agent's live frame shows, carried here so dispatch reads nothing per message
    attachments: tuple[AttachmentListed, ...] = ()
    notes: tuple[str, ...] = ()


class DeliveryUpdated(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """An outbound message's delivery state changed."""

    conversation_id: str
    message_id: str
    status: str
    error: str | None = None


class CallUpdated(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """A new event in a phone call's timeline (the console shows it to the agent holding
    the conversation)."""

    conversation_id: str
    event: CallEvent


class OutboxReady(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """Something was put into the outbox: senders should look now instead of at their next poll."""

    message_id: str


class CustomerPresence(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """A customer on a live channel came or left (the last window closed)."""

    inbox: str
    session: str
    present: bool
    at: float


BusEvent = (
    MessageStored
    | DeliveryUpdated
    | OutboxReady
    | CustomerPresence
    | CallUpdated
    | AgentCall
    | CallAnswer
    | AgentFrames
    | NodeBeat
    | Reannounce
    | RulesChanged
    | VisitorFrame
)

MESSAGES = "messages"
DELIVERIES = "deliveries"
OUTBOX = "outbox"

TOPICS = (MESSAGES, DELIVERIES, OUTBOX)

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(BusEvent)


def encode_event(event: BusEvent) -> bytes:
    """The event as the bytes a stream entry carries."""
    return _encoder.encode(event)


def decode_event(data: bytes) -> BusEvent:
    """The event in ``data``; raises :class:`msgspec.DecodeError` (or ``ValidationError``) for
    bytes that are not one of :data:`BusEvent`, such as an entry a newer or foreign writer put
    in the stream."""
    return _decoder.decode(data)
