"""Agents' replies and internal notes: stored once per client id, a reply with its outbox row
in the same transaction, so it is sent exactly when it is stored."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.envelope import Attachment, Identity, Outbound, Template, ThreadHints, reply_to
from hub.errors import Forbidden, InvalidState, NotFound, StoreConflict
from hub.ids import new_id
from hub.store.audit import record_event
from hub.store.database import Clock, Database
from hub.store.ingest import outbox_row
from hub.store.messages import MESSAGE_COLUMNS, answered, message_record
from hub.store.records import Message, MessageFile, Reply
from hub.store.schema import ASSIGNED, attachments, conversations, messages, outbox

#: another channel instance a reply leaves through: (inbox, channel, recipient)
Via = tuple[str, str, Identity]


@dataclass(frozen=True, slots=True)
class _Draft:
    """What an agent asked to store, and the idempotency key it is stored under."""

    conversation_id: str
    agent: str
    key: str
    text: str
    note: bool
    template: Template | None
    via: Via | None
    files: tuple[Attachment, ...]


class Replies:
    """Writes of agents' replies and notes."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def add(
        self,
        conversation_id: str,
        *,
        agent: str,
        client_id: str,
        text: str,
        note: bool = False,
        template: Template | None = None,
        via: Via | None = None,
        files: tuple[Attachment, ...] = (),
    ) -> Reply:
        """Store an agent's reply (queued in the outbox) or internal note, once per client id.

        ``template`` is an approved template the reply is sent as (``text`` is its rendering);
        ``via`` (inbox, channel, recipient) sends it through another channel instance, as a new
        message there rather than a threaded answer; ``files`` go with it (already stored)."""
        key = f"{'note' if note else 'reply'}:{agent}:{conversation_id}:{client_id}"
        draft = _Draft(conversation_id, agent, key, text, note, template, via, files)

        async def run(connection: AsyncConnection) -> Reply:
            existing = await _by_key(connection, key)
            if existing is not None:
                return Reply(message=existing, duplicate=True)
            return Reply(message=await _store(connection, draft, self._db.clock), duplicate=False)

        try:
            reply: Reply = await self._db.writer.call(run)
        except StoreConflict:  # a concurrent resend won the race: report the stored one
            async with self._db.read() as connection:
                stored = await _by_key(connection, key)
            if stored is None:
                raise
            return Reply(message=stored, duplicate=True)
        return reply


async def _by_key(connection: AsyncConnection, key: str) -> Message | None:
    """The reply or note stored under ``key`` (listed without its files, as it always was)."""
    row = (
        await connection.execute(select(*MESSAGE_COLUMNS).where(messages.c.idempotency_key == key))
    ).first()
    return None if row is None else message_record(row)


async def _store(connection: AsyncConnection, draft: _Draft, clock: Clock) -> Message:
    """Store ``draft`` on a conversation the agent holds; a reply with its files and outbox row."""
    conversation = await _held(connection, draft.conversation_id, draft.agent)
    now = clock()
    message_id = new_id(now)
    row = _message_row(draft, conversation, message_id, now)
    if draft.note:
        await connection.execute(messages.insert(), row)
        await record_event(
            connection, now, "note.added", draft.conversation_id, message_id, draft.agent
        )
        return _message(row)
    outbound = await _outbound(connection, draft, conversation.customer_id, message_id, now)
    await connection.execute(messages.insert(), row)
    listed = tuple(
        MessageFile(
            id=new_id(now),
            name=item.name,
            content_type=item.content_type,
            size=item.size,
            sha256=item.sha256,
        )
        for item in draft.files
    )
    if listed:
        await connection.execute(
            attachments.insert(),
            [
                {
                    **msgspec.structs.asdict(file),
                    "message_id": message_id,
                    "blob_ref": item.blob_ref,
                }
                for file, item in zip(listed, draft.files, strict=True)
            ],
        )
    await connection.execute(outbox.insert(), outbox_row(outbound, now))
    await record_event(
        connection, now, "reply.queued", draft.conversation_id, message_id, draft.agent
    )
    return _message(row, listed)


async def _held(connection: AsyncConnection, conversation_id: str, agent: str) -> Any:
    """The conversation's row, if ``agent`` holds it (NotFound, Forbidden otherwise)."""
    conversation = (
        await connection.execute(select(conversations).where(conversations.c.id == conversation_id))
    ).first()
    if conversation is None:
        raise NotFound(f"conversation {conversation_id} does not exist")
    if conversation.status != ASSIGNED or conversation.assignee != agent:
        raise Forbidden(f"conversation {conversation_id} is not assigned to you")
    return conversation


def _message_row(draft: _Draft, conversation: Any, message_id: str, now: float) -> dict[str, Any]:
    """The messages row of a reply or note."""
    return {
        "id": message_id,
        "conversation_id": draft.conversation_id,
        "kind": "note" if draft.note else "message",
        "direction": "outbound",
        "channel": draft.via[1] if draft.via else conversation.channel,
        "inbox": draft.via[0] if draft.via else conversation.inbox,
        "idempotency_key": draft.key,
        "provider_id": None,
        "author": draft.agent,
        "text": draft.text,
        "html": None,
        "subject": None,
        "envelope": None,
        "rules": None,
        "delivery_status": None if draft.note else "queued",
        "delivery_error": None,
        "created_at": now,
    }


def _message(row: dict[str, Any], files: tuple[MessageFile, ...] = ()) -> Message:
    return Message(
        id=row["id"],
        conversation_id=row["conversation_id"],
        kind=row["kind"],
        direction=row["direction"],
        channel=row["channel"],
        author=row["author"],
        text=row["text"],
        subject=row["subject"],
        rules=row["rules"],
        delivery_status=row["delivery_status"],
        delivery_error=row["delivery_error"],
        created_at=row["created_at"],
        attachments=files,
    )


async def _outbound(
    connection: AsyncConnection, draft: _Draft, customer_id: str, message_id: str, now: float
) -> Outbound:
    """What the outbox sends: an answer to the customer's message, as the agent asked."""
    answering = await answered(connection, draft.conversation_id, customer_id)
    if answering is None:
        raise InvalidState("this conversation has no inbound message to reply to")
    outbound = reply_to(
        answering,
        message_id=message_id,
        conversation_id=draft.conversation_id,
        idempotency_key=draft.key,
        text=draft.text,
        created_at=now,
        author=draft.agent,
    )
    if draft.template is not None:
        outbound = msgspec.structs.replace(outbound, template=draft.template)
    if draft.via is not None:
        outbound = msgspec.structs.replace(
            outbound, inbox=draft.via[0], recipient=draft.via[2], thread=ThreadHints()
        )
    if draft.files:
        outbound = msgspec.structs.replace(outbound, attachments=draft.files)
    return outbound
