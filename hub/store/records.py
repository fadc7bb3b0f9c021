"""What the store hands out: typed, frozen records instead of database rows.

Everything a store aggregate returns to the rest of the hub is one of these (or an envelope
type), so the console, dispatch, the API and the outbox read fields, not dictionary keys that
only a query knew. JSON columns stay as they were stored (``decision``, ``rules``), and a
conversation's ``customer`` is the context ``hub.customers.context`` builds for the console.
"""

from __future__ import annotations

from typing import Any

import msgspec

from hub.envelope import CallEvent, Identity, Outbound


class MessageFile(msgspec.Struct, frozen=True, kw_only=True):
    """A file of a message as the console lists it (its bytes: ``GET /api/attachments/{id}``)."""

    id: str
    name: str
    content_type: str
    size: int
    sha256: str


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """A stored message, reply or internal note (``kind``) of a conversation."""

    id: str
    conversation_id: str
    kind: str  # message | note
    direction: str  # inbound | outbound
    channel: str
    author: str | None  # the agent, for replies and notes
    text: str
    subject: str | None
    rules: list[str] | None  # names of the rules that fired for an inbound message
    delivery_status: str | None
    delivery_error: str | None
    created_at: float
    attachments: tuple[MessageFile, ...] = ()
    notes: tuple[str, ...] = ()  # what went wrong taking it in (see envelope.problem_notes)


class OptOut(msgspec.Struct, frozen=True, kw_only=True):
    """A customer's request to an inbox to send nothing more (SMS STOP)."""

    keyword: str
    at: float


class ConversationSummary(msgspec.Struct, frozen=True, kw_only=True):
    """What dispatch needs to queue or restore a conversation (no messages, no customer)."""

    id: str
    queue: str
    priority: str
    queued_at: float | None
    created_at: float
    channel: str
    decision: dict[str, Any] | None  # the routing Decision as stored (skills, sla_seconds, …)
    customer_id: str
    assignee: str | None = None


class Conversation(msgspec.Struct, frozen=True, kw_only=True):
    """A conversation with its customer, whom a reply goes to and its messages (notes too)."""

    id: str
    customer_id: str
    channel: str
    inbox: str
    thread_key: str | None
    status: str  # queued | assigned | closed
    queue: str
    priority: str
    assignee: str | None
    subject: str | None
    decision: dict[str, Any] | None  # the routing Decision as stored
    rules_digest: str | None  # the rules revision that routed it
    disposition: str | None
    created_at: float
    updated_at: float
    queued_at: float | None
    closed_at: float | None
    customer: dict[str, Any]  # hub.customers.context's view, without this conversation
    recipient: Identity | None  # whom a reply goes to (None before any inbound message)
    last_inbound_at: float | None
    opt_out: OptOut | None  # the recipient asked this inbox to send nothing more
    messages: tuple[Message, ...] = ()
    calls: tuple[CallEvent, ...] = ()  # a phone call's timeline (hub.store.calls)


#: the columns of the conversations table a :class:`Conversation` carries, in its order
CONVERSATION_COLUMNS = tuple(
    name
    for name in Conversation.__struct_fields__
    if name not in {"customer", "recipient", "last_inbound_at", "opt_out", "messages", "calls"}
)


class StoredAttachment(msgspec.Struct, frozen=True, kw_only=True):
    """An attachment's blob with what deciding who may read it needs: its conversation's id
    and assignee."""

    id: str
    name: str
    content_type: str
    blob_ref: str
    conversation_id: str
    assignee: str | None


class RulesRevision(msgspec.Struct, frozen=True, kw_only=True):
    """An accepted rules file, kept once per content."""

    digest: str  # SHA-256 of the text
    path: str
    loaded_at: float
    text: str


class Reply(msgspec.Struct, frozen=True, kw_only=True):
    """An agent's reply or note as stored; ``duplicate`` when the client id was seen before."""

    message: Message
    duplicate: bool


class OutboxItem(msgspec.Struct, frozen=True, kw_only=True):
    """A reply waiting to be sent, with the attempts counted so far."""

    message_id: str
    outbound: Outbound
    attempts: int


class Attempt(msgspec.Struct, frozen=True, kw_only=True):
    """A send attempt as counted before it starts: its number (1 for the first) and when the
    reply's first attempt began."""

    number: int
    first_at: float


class DeliveryChange(msgspec.Struct, frozen=True, kw_only=True):
    """A reply whose delivery state a provider's report changed."""

    conversation_id: str
    message_id: str
    status: str
    error: str | None
    changed: bool = True


class StoredSession(msgspec.Struct, frozen=True, kw_only=True):
    """An agent session row; ``credential`` fingerprints the password hash it was made with."""

    token_hash: str
    agent: str
    credential: str
    expires_at: float
