"""Messages of conversations: rows as :class:`Message` records and the thread history a channel
shows its customer."""

from __future__ import annotations

from typing import Any

import msgspec
from sqlalchemy import and_, desc, select

from connectors.base import HistoryItem
from hub.envelope import decode_envelope, problem_notes
from hub.store.database import Database
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
