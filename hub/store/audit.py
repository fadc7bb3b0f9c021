"""Rows of the audit log (the ``events`` table).

Every row is built here with every column present. A multi-row INSERT takes its column list
from the first row, so rows with different keys in one ``executemany`` either lose a column
silently (a later row's ``message_id`` dropped when the first row had none) or fail on a missing
bind parameter (the other way round), which sank whole ingest batches.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.store.schema import events


def event_row(
    at: float,
    kind: str,
    *,
    conversation_id: object = None,
    message_id: object = None,
    agent: str | None = None,
    data: dict[str, Any] | None = None,
) -> dict[str, object]:
    """One ``events`` row with all of its columns, so rows of one batch share one shape."""
    return {
        "at": at,
        "kind": kind,
        "conversation_id": conversation_id,
        "message_id": message_id,
        "agent": agent,
        "data": data,
    }


async def record_event(
    connection: AsyncConnection,
    at: float,
    kind: str,
    conversation_id: str | None = None,
    message_id: str | None = None,
    agent: str | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    """Append one event inside the caller's transaction."""
    await connection.execute(
        events.insert(),
        event_row(
            at, kind, conversation_id=conversation_id, message_id=message_id, agent=agent, data=data
        ),
    )


async def conversation_events(
    connection: AsyncConnection, conversation_id: str, kinds: Collection[str], limit: int
) -> list[Any]:
    """The audit events of one conversation of the given kinds, oldest first (at most
    ``limit``, the newest ones)."""
    newest = (
        select(events.c.seq, events.c.at, events.c.kind, events.c.agent, events.c.data)
        .where(events.c.conversation_id == conversation_id, events.c.kind.in_(sorted(kinds)))
        .order_by(events.c.seq.desc())
        .limit(limit)
    )
    rows = list(await connection.execute(newest))
    rows.reverse()
    return rows
