"""The SQL of storing inbound messages: what a batch finds stored, and writing what was planned.

The decisions (which conversation a message joins, whether it reopens one, what is audited and
answered) are made by the pure planner in ``hub.ingest.plan``; this module only reads the
state it needs and writes the rows it produced, each table in one statement per batch, so the
number of statements stays constant (a handful) whatever the batch's size. It knows nothing of
customers or rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from sqlalchemy import and_, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.envelope import Envelope, Outbound
from hub.store.schema import (
    ASSIGNED,
    CLOSED,
    QUEUED,
    attachments,
    conversations,
    events,
    messages,
    outbox,
    routing_records,
)

__all__ = [
    "ASSIGNED",
    "CLOSED",
    "QUEUED",
    "ConversationState",
    "IngestRows",
    "find_duplicates",
    "linked_threads",
    "open_threads",
    "outbound_row",
    "outbox_row",
    "write_rows",
]


class ConversationState(msgspec.Struct, frozen=True, kw_only=True):
    """A stored conversation as ingest sees it: enough to thread, reopen and dispatch."""

    id: str
    inbox: str
    thread_key: str | None
    customer_id: str
    status: str
    assignee: str | None
    queue: str
    priority: str
    queued_at: float | None


_STATE = (
    conversations.c.id,
    conversations.c.inbox,
    conversations.c.thread_key,
    conversations.c.customer_id,
    conversations.c.status,
    conversations.c.assignee,
    conversations.c.queue,
    conversations.c.priority,
    conversations.c.queued_at,
)


def _state(row: Any) -> ConversationState:
    mapping = row._mapping
    return ConversationState(**{column.name: mapping[column.name] for column in _STATE})


@dataclass(slots=True)
class IngestRows:
    """Every row one ingest batch writes (see :func:`write_rows`)."""

    conversations: list[dict[str, object]] = field(default_factory=list)
    messages: list[dict[str, object]] = field(default_factory=list)  # inbound, then replies
    attachments: list[dict[str, object]] = field(default_factory=list)
    outbox: list[dict[str, object]] = field(default_factory=list)
    #: closed conversations queued again: ``cid``, ``queue``, ``priority``, ``at``
    reopened: list[dict[str, object]] = field(default_factory=list)
    touched: dict[str, float] = field(default_factory=dict)  # conversation id -> updated_at
    events: list[dict[str, object]] = field(default_factory=list)  # all built by event_row
    routing_records: list[dict[str, object]] = field(default_factory=list)  # hub.ingest.record


def outbox_row(outbound: Outbound, now: float) -> dict[str, object]:
    """The outbox entry that makes the sender deliver ``outbound``."""
    return {
        "message_id": outbound.message_id,
        "inbox": outbound.inbox,
        "payload": msgspec.json.encode(outbound).decode(),
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


def outbound_row(outbound: Outbound, channel: str, kind: str = "message") -> dict[str, object]:
    """The messages row of a reply we send."""
    return {
        "id": outbound.message_id,
        "conversation_id": outbound.conversation_id,
        "kind": kind,
        "direction": "outbound",
        "channel": channel,
        "inbox": outbound.inbox,
        "idempotency_key": outbound.idempotency_key,
        "provider_id": None,
        "author": outbound.author,
        "text": outbound.text,
        "html": None,
        "subject": outbound.subject,
        "envelope": None,
        "rules": None,
        "delivery_status": "queued",
        "delivery_error": None,
        "created_at": outbound.created_at,
    }


async def find_duplicates(
    connection: AsyncConnection, batch: Sequence[Envelope]
) -> dict[str, tuple[str, str]]:
    """Idempotency keys already stored, with their message and conversation ids."""
    keys = list({envelope.idempotency_key for envelope in batch})
    rows = await connection.execute(
        select(messages.c.idempotency_key, messages.c.id, messages.c.conversation_id).where(
            messages.c.idempotency_key.in_(keys)
        )
    )
    return {row.idempotency_key: (row.id, row.conversation_id) for row in rows}


async def open_threads(
    connection: AsyncConnection, batch: Sequence[Envelope]
) -> dict[tuple[str, str], ConversationState]:
    """Open (not closed) conversations for the batch's thread keys, by (inbox, thread key)."""
    sessions = {envelope.thread.session for envelope in batch if envelope.thread.session}
    if not sessions:
        return {}
    rows = await connection.execute(
        select(*_STATE).where(
            and_(conversations.c.thread_key.in_(sessions), conversations.c.status != CLOSED)
        )
    )
    return {(row.inbox, row.thread_key): _state(row) for row in rows}


async def linked_threads(
    connection: AsyncConnection, batch: Sequence[Envelope]
) -> dict[int, ConversationState]:
    """Conversations (open or closed) that envelopes name by a verified conversation id or by
    the provider ids they answer, by batch position.

    A conversation id is only taken within its inbox; of the referenced messages, In-Reply-To
    wins, then the newest entry of References that is stored in the same inbox. Whether the
    sender may join the conversation found is for the planner to say (``hub.ingest.plan``)."""
    wanted_ids = {e.thread.conversation for e in batch if e.thread.conversation}
    refs = {
        ref for e in batch for ref in (*e.thread.references, *filter(None, [e.thread.in_reply_to]))
    }
    if not wanted_ids and not refs:
        return {}
    found: dict[str, ConversationState] = {}
    if wanted_ids:
        for row in await connection.execute(
            select(*_STATE).where(conversations.c.id.in_(wanted_ids))
        ):
            found[row.id] = _state(row)
    by_ref: dict[tuple[str, str], str] = {}
    if refs:
        inboxes = {e.inbox for e in batch}
        for ref_row in await connection.execute(
            select(messages.c.inbox.label("message_inbox"), messages.c.provider_id, *_STATE)
            .join(conversations, conversations.c.id == messages.c.conversation_id)
            .where(and_(messages.c.inbox.in_(inboxes), messages.c.provider_id.in_(refs)))
            .order_by(messages.c.created_at)
        ):
            by_ref[(ref_row.message_inbox, ref_row.provider_id)] = ref_row.id
            found.setdefault(ref_row.id, _state(ref_row))
    linked: dict[int, ConversationState] = {}
    for index, envelope in enumerate(batch):
        hint = envelope.thread.conversation
        if hint and hint in found and found[hint].inbox == envelope.inbox:
            linked[index] = found[hint]
            continue
        candidates = [*filter(None, [envelope.thread.in_reply_to])]
        candidates.extend(reversed(envelope.thread.references))
        for ref in candidates:
            conversation_id = by_ref.get((envelope.inbox, ref))
            if conversation_id is not None:
                linked[index] = found[conversation_id]
                break
    return linked


async def write_rows(connection: AsyncConnection, rows: IngestRows) -> None:
    """Write one batch's rows: new conversations before the messages that point at them,
    reopened conversations queued again, the others' ``updated_at`` moved on."""
    if rows.conversations:
        await connection.execute(conversations.insert(), rows.conversations)
    if rows.messages:
        await connection.execute(messages.insert(), rows.messages)
    if rows.outbox:
        await connection.execute(outbox.insert(), rows.outbox)
    if rows.attachments:
        await connection.execute(attachments.insert(), rows.attachments)
    if rows.routing_records:
        await connection.execute(routing_records.insert(), rows.routing_records)
    if rows.reopened:
        await connection.execute(
            update(conversations)
            .where(conversations.c.id == bindparam("cid"))
            .values(
                status=QUEUED,
                assignee=None,
                queue=bindparam("queue"),
                priority=bindparam("priority"),
                queued_at=bindparam("at"),
                updated_at=bindparam("at"),
                closed_at=None,
                disposition=None,
            ),
            rows.reopened,
        )
    if rows.touched:
        await connection.execute(
            update(conversations)
            .where(conversations.c.id == bindparam("cid"))
            .values(updated_at=bindparam("at")),
            [{"cid": cid, "at": at} for cid, at in rows.touched.items()],
        )
    if rows.events:
        await connection.execute(events.insert(), rows.events)
