"""The agent protocol's server frames and the objects in them, as msgspec models.

The hub builds its frames as plain dicts (``protocol.frame``) for speed; these models are the
declared shape of those dicts. They are the one source the TypeScript types of the console
(``python -m hub.console.typegen``) and the tables in docs/agent-protocol.md are checked
against, and the tests decode every frame a test client receives with them, so a field added
to a frame without adding it here (or the other way round) fails the suite.

A field without a default is always present (possibly ``null``); a field with a default may be
missing. ``forbid_unknown_fields`` is off only where a frame carries open-ended data (a
connector's draft preview, the customer's ``attributes``).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

Priority = Literal["low", "normal", "high", "urgent"]
PresenceStatus = Literal["available", "busy", "away"]
Role = Literal["agent", "supervisor", "admin"]


class _Object(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass


class _Frame(_Object, frozen=True, tag_field="type"):
    pass


# -- objects ---------------------------------------------------------------------------------


class Identity(_Object, frozen=True):
    kind: str
    address: str
    display_name: str | None


class PastConversation(_Object, frozen=True):
    """One of the customer's other conversations (newest first, at most 10)."""

    id: str
    channel: str
    inbox: str
    status: str
    subject: str | None
    created_at: float
    disposition: str | None


class Rfm(_Object, frozen=True):
    r: int | None
    f: int | None
    m: int | None


class Customer(_Object, frozen=True):
    """The customer context an agent sees (the same as ``GET /api/customers/{key}``)."""

    id: str
    kind: Literal["customer", "prospect"]
    known: bool
    customer_number: str | None
    name: str | None
    company: str | None
    tier: str | None
    tier_source: Literal["crm", "manual", "computed"] | None
    crm_fetched_at: float | None
    lifetime_value: float
    revenue_window: float
    orders_12m: int
    last_order_at: float | None
    days_since_last_order: int | None
    last_purchase: str | None
    payment_punctuality: float | None
    overdue_invoices: int
    rfm: Rfm | None
    open_conversations: int
    tags: list[str]
    attributes: dict[str, Any]
    identities: list[Identity]
    history: list[PastConversation]
    computed_at: float | None


class AttachmentInfo(_Object, frozen=True):
    id: str
    name: str
    content_type: str
    size: int
    sha256: str


class Message(_Object, frozen=True):
    id: str
    kind: Literal["message", "note"]
    direction: Literal["inbound", "outbound"]
    author: str | None
    automatic: bool
    text: str
    created_at: float
    delivery_status: str | None
    delivery_error: str | None = None
    subject: str | None = None
    attachments: list[AttachmentInfo] = msgspec.field(default_factory=list)
    notes: list[str] = msgspec.field(default_factory=list)


class CallItem(_Object, frozen=True):
    call_sid: str
    state: str
    at: float
    agent: str | None
    duration: int | None
    detail: str | None


class TemplateInfo(_Object, frozen=True):
    name: str
    body: str
    variables: list[str]


class Alternative(_Object, frozen=True):
    inbox: str
    channel: str
    kind: str
    address: str


class Compose(_Object, frozen=True):
    mode: Literal["text", "template", "blocked"]
    window_closes_at: float | None
    templates: list[TemplateInfo]
    reason: str | None
    alternatives: list[Alternative]


class Conversation(_Object, frozen=True):
    id: str
    channel: str
    inbox: str
    status: Literal["queued", "assigned", "closed"]
    queue: str
    priority: Priority
    assignee: str | None
    subject: str | None
    created_at: float
    sla_due_at: float | None
    customer: Customer
    instructions: list[str]
    tags: list[str]
    rules: list[str]
    messages: list[Message]
    compose: Compose | None = None
    calls: list[CallItem] = msgspec.field(default_factory=list)


class OfferView(_Object, frozen=True):
    conversation_id: str
    expires_at: float
    channel: str
    inbox: str
    queue: str
    priority: Priority
    sla_due_at: float | None
    customer: Customer
    preview: str
    instructions: list[str]


class HelloAgent(_Object, frozen=True):
    id: str
    name: str
    role: Role
    supervisor: bool


class Colleague(_Object, frozen=True):
    id: str
    name: str


class CannedText(_Object, frozen=True):
    """A canned response from hub.yaml; ``queues`` empty: for every queue."""

    name: str
    text: str
    queues: list[str]


class QueueRow(_Object, frozen=True):
    name: str
    waiting: int
    offered: int
    oldest_wait: float
    sla_at_risk: int


class AgentRow(_Object, frozen=True):
    id: str
    presence: Literal["available", "busy", "away", "offline"]
    conversations: int
    offers: int
    capacity: int
    wrap_up: bool
    assigned: list[str]


# -- frames ----------------------------------------------------------------------------------


class HelloFrame(_Frame, frozen=True, tag="hello"):
    protocol: int
    agent: HelloAgent
    dispositions: list[str]
    queues: list[str]
    agents: list[Colleague]
    wrap_up: float
    canned: list[CannedText]


class SnapshotFrame(_Frame, frozen=True, tag="snapshot"):
    offers: list[OfferView]
    conversations: list[Conversation]
    presence: Literal["available", "busy", "away"]


class OfferFrame(OfferView, frozen=True, tag="offer", tag_field="type"):
    pass


class OfferRevokedFrame(_Frame, frozen=True, tag="offer_revoked"):
    conversation_id: str
    reason: Literal["timeout", "declined", "withdrawn"]


class ConversationFrame(_Frame, frozen=True, tag="conversation"):
    conversation: Conversation


class MessageFrame(_Frame, frozen=True, tag="message"):
    conversation_id: str
    message: Message


class ReplyAckFrame(_Frame, frozen=True, tag="reply_ack"):
    client_id: str
    conversation_id: str
    duplicate: bool
    message: Message


class DeliveryFrame(_Frame, frozen=True, tag="delivery"):
    conversation_id: str
    message_id: str
    status: str
    error: str | None


class CallFrame(_Frame, frozen=True, tag="call"):
    conversation_id: str
    call: CallItem


class ConversationClosedFrame(_Frame, frozen=True, tag="conversation_closed"):
    conversation_id: str
    disposition: str


class ConversationRemovedFrame(_Frame, frozen=True, tag="conversation_removed"):
    conversation_id: str
    reason: Literal["transferred", "reassigned", "disconnected", "no_reply", "unknown_agent"]


class ReassignedFrame(_Frame, frozen=True, tag="reassigned"):
    conversation_id: str
    agent: str


class PresenceFrame(_Frame, frozen=True, tag="presence"):
    status: PresenceStatus


class PongFrame(_Frame, frozen=True, tag="pong"):
    ref: str | None


class PreviewFrame(msgspec.Struct, frozen=True, tag="preview", tag_field="type"):
    """What a draft costs; the channel may add fields of its own (SMS: the four below)."""

    conversation_id: str
    characters: int
    encoding: Literal["GSM-7", "UCS-2"] | None = None
    segments: int | None = None
    units: int | None = None
    unicode_characters: list[str] | None = None


class QueueStateFrame(_Frame, frozen=True, tag="queue_state"):
    queues: list[QueueRow]
    agents: list[AgentRow]


class ErrorFrame(_Frame, frozen=True, tag="error"):
    code: str
    message: str
    ref: str | None
    reason: str | None = None


ServerFrame = (
    HelloFrame
    | SnapshotFrame
    | OfferFrame
    | OfferRevokedFrame
    | ConversationFrame
    | MessageFrame
    | ReplyAckFrame
    | DeliveryFrame
    | CallFrame
    | ConversationClosedFrame
    | ConversationRemovedFrame
    | ReassignedFrame
    | PresenceFrame
    | PongFrame
    | PreviewFrame
    | QueueStateFrame
    | ErrorFrame
)

_decoder = msgspec.json.Decoder(ServerFrame)


def check_server_frame(data: bytes | str) -> ServerFrame:
    """Decode one server frame strictly (tests use this on everything the hub sends)."""
    return _decoder.decode(data)
