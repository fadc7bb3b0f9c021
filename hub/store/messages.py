"""Messages of conversations: rows as :class:`Message` records, the thread history a channel
shows its customer, and the inbound message a reply answers."""

from __future__ import annotations

from typing import Any

import msgspec
from sqlalchemy import and_, desc, select
from sqlalchemy.ext.asyncio import AsyncConnection

from connectors.base import HistoryItem
from hub.envelope import Envelope, decode_envelope, problem_notes
from hub.store.database import Database
from hub.store.identities import identity_owner
from hub.store.records import Message, MessageFile
from hub.store.schema import conversations, messages

#: the columns a :class:`Message` is made of (``message_record``)
MESSAGE_COLUMNS = (
    messages.c.id,
    messages.c.conversation_id,
    messages.c.kind,
    messages.c.direction,
    messages.c.channel,
    messages.c.author,
    messages.c.text,
    messages.c.subject,
    messages.c.rules,
    messages.c.delivery_status,
    messages.c.delivery_error,
    messages.c.created_at,
)


def message_record(
    row: Any, attachments: tuple[MessageFile, ...] = (), notes: tuple[str, ...] = ()
) -> Message:
    """A :class:`Message` from a row (or mapping with attributes) of :data:`MESSAGE_COLUMNS`."""
    return Message(
        id=row.id,
        conversation_id=row.conversation_id,
        kind=row.kind,
        direction=row.direction,
        channel=row.channel,
        author=row.author,
        text=row.text,
        subject=row.subject,
        rules=row.rules,
        delivery_status=row.delivery_status,
        delivery_error=row.delivery_error,
        created_at=row.created_at,
        attachments=attachments,
        notes=notes,
    )


def notes_of(stored: str | None) -> tuple[str, ...]:
    """The problem notes of a stored envelope (see :func:`problem_notes`)."""
    if not stored:
        return ()
    try:
        return tuple(problem_notes(decode_envelope(stored).metadata))
    except (msgspec.DecodeError, msgspec.ValidationError):
        return ()


def stored_inbound(row: Any) -> bool:
    """Whether a message row (with ``direction`` and ``envelope``) came in with its envelope."""
    return bool(row.direction == "inbound" and row.envelope)


class Messages:
    """Reads of messages across a thread."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def history(self, inbox: str, session: str, limit: int = 200) -> list[HistoryItem]:
        """Customer-visible messages of every conversation on thread ``session``, oldest first."""
        query = (
            select(
                messages.c.id,
                messages.c.direction,
                messages.c.text,
                messages.c.created_at,
                messages.c.author,
            )
            .join(conversations, conversations.c.id == messages.c.conversation_id)
            .where(
                and_(
                    conversations.c.inbox == inbox,
                    conversations.c.thread_key == session,
                    messages.c.kind == "message",
                )
            )
            .order_by(desc(messages.c.created_at), desc(messages.c.id))
            .limit(limit)
        )
        async with self._db.read() as connection:
            rows = (await connection.execute(query)).all()
        return [
            HistoryItem(
                message_id=row.id,
                direction=row.direction,
                text=row.text,
                created_at=row.created_at,
                author=row.author,
            )
            for row in reversed(rows)
        ]


async def answered(
    connection: AsyncConnection, conversation_id: str, customer_id: str
) -> Envelope | None:
    """The inbound message a reply answers, and so whom it goes to: the conversation's customer.

    That is the newest message whose sender is one of the customer's identities; when the
    newest came from anyone else (stored before strangers were kept out of threads, or a
    customer whose record holds no address, such as an unverified sender's), the message that
    opened the conversation. A reply never goes to whoever wrote last."""
    last = await _inbound(connection, conversation_id, newest=True)
    if last is None:
        return None
    newest = decode_envelope(last.envelope)
    owner = await identity_owner(connection, newest.sender.kind, newest.sender.address)
    if owner is not None and owner.customer_id == customer_id:
        return newest
    first = await _inbound(connection, conversation_id, newest=False)
    return decode_envelope(first.envelope) if first is not None else newest


async def _inbound(connection: AsyncConnection, conversation_id: str, *, newest: bool) -> Any:
    """The newest (or first) inbound message row (``envelope``, ``created_at``)."""
    created = desc(messages.c.created_at) if newest else messages.c.created_at
    ids = desc(messages.c.id) if newest else messages.c.id
    return (
        await connection.execute(
            select(messages.c.envelope, messages.c.created_at)
            .where(
                and_(
                    messages.c.conversation_id == conversation_id,
                    messages.c.direction == "inbound",
                    messages.c.envelope.is_not(None),
                )
            )
            .order_by(created, ids)
            .limit(1)
        )
    ).first()
