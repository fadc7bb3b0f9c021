"""A phone call's timeline events (ringing, answered by whom, ended, …) in the audit log.

Each :class:`~hub.envelope.CallEvent` is an ``events`` row of kind ``call.<state>`` on the
conversation whose thread key the connector names, so reports read calls like every other
event. A provider repeats status callbacks; the same report (its ``key``, else the same call, state
and agent) is stored once.
"""

from __future__ import annotations

from collections.abc import Collection

import msgspec
from sqlalchemy import and_, desc, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.envelope import CallEvent
from hub.store.audit import record_event
from hub.store.database import Database
from hub.store.schema import conversations, events

PREFIX = "call."


class CallRecorded(msgspec.Struct, frozen=True, kw_only=True):
    """Where a call event went, and whether it was new."""

    conversation_id: str
    new: bool


class CallEvents:
    """Recording call events against the conversation of a thread."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def record(self, inbox: str, session: str, event: CallEvent) -> CallRecorded | None:
        """Store ``event`` on the newest conversation of ``inbox`` with thread key
        ``session`` (None if there is none), unless it is there already."""

        async def run(connection: AsyncConnection) -> CallRecorded | None:
            found = (
                await connection.execute(
                    select(conversations.c.id)
                    .where(
                        and_(conversations.c.inbox == inbox, conversations.c.thread_key == session)
                    )
                    .order_by(desc(conversations.c.created_at))
                    .limit(1)
                )
            ).first()
            if found is None:
                return None
            conversation_id = str(found.id)
            same = await connection.execute(
                select(events.c.agent, events.c.data).where(
                    and_(
                        events.c.conversation_id == conversation_id,
                        events.c.kind == PREFIX + event.state,
                    )
                )
            )
            for row in same:
                data = row.data or {}
                if event.key is not None:
                    seen = data.get("key") == event.key
                else:
                    seen = data.get("call_sid") == event.call_sid and row.agent == event.agent
                if seen:
                    return CallRecorded(conversation_id=conversation_id, new=False)
            await record_event(
                connection,
                event.at,
                PREFIX + event.state,
                conversation_id=conversation_id,
                agent=event.agent,
                data={
                    "call_sid": event.call_sid,
                    "duration": event.duration,
                    "detail": event.detail,
                    "key": event.key,
                },
            )
            return CallRecorded(conversation_id=conversation_id, new=True)

        result: CallRecorded | None = await self._db.writer.call(run)
        return result


async def calls_of(
    connection: AsyncConnection, ids: Collection[str]
) -> dict[str, tuple[CallEvent, ...]]:
    """The call events of these conversations, oldest first, by conversation id."""
    if not ids:
        return {}
    rows = await connection.execute(
        select(events.c.conversation_id, events.c.at, events.c.kind, events.c.agent, events.c.data)
        .where(and_(events.c.conversation_id.in_(list(ids)), events.c.kind.like(PREFIX + "%")))
        .order_by(events.c.seq)
    )
    found: dict[str, list[CallEvent]] = {}
    for row in rows:
        data = row.data or {}
        found.setdefault(row.conversation_id, []).append(
            CallEvent(
                call_sid=str(data.get("call_sid") or ""),
                state=row.kind.removeprefix(PREFIX),
                at=float(row.at),
                agent=row.agent,
                duration=data.get("duration"),
                detail=data.get("detail"),
            )
        )
    return {key: tuple(value) for key, value in found.items()}
