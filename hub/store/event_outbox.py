"""The event outbox: bus events committed in the same transaction as what they announce.

A row is written with the state change (``hub.ingest.stages``), *claimed* for a short while by
the process that committed it, which publishes it right after the commit and deletes it
(:meth:`EventOutbox.done`). A row still there when its claim lapses (the publish failed, or the
process died between commit and publish) is anyone's: every process's relay claims such rows
(``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL, as the reply outbox does), publishes and
deletes them. A row can so be published twice (a relay and a slow first publish), never zero
times; every bus handler is idempotent (docs/scaling.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import msgspec
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.bus.events import BusEvent, decode_event, encode_event
from hub.store.database import Database
from hub.store.schema import event_outbox

log = logging.getLogger(__name__)

#: seconds published rows wait for a transaction to take their delete along
FLUSH_AFTER = 0.5


class PendingEvent(msgspec.Struct, frozen=True):
    """An event row: its id (the order it was committed in), topic and the event."""

    id: str
    topic: str
    event: BusEvent


class Backlog(msgspec.Struct, frozen=True):
    """How many events wait to be published, and when the oldest was committed (None: none)."""

    pending: int
    oldest: float | None


def event_rows(
    events: Sequence[PendingEvent], now: float, holder: str, hold: float
) -> list[dict[str, object]]:
    """The rows for ``events``, claimed by ``holder`` for ``hold`` seconds. Pure."""
    return [
        {
            "id": pending.id,
            "topic": pending.topic,
            "event": encode_event(pending.event).decode(),
            "created_at": now,
            "conversation_id": getattr(pending.event, "conversation_id", None),
            "claimed_by": holder,
            "claimed_until": now + hold,
        }
        for pending in events
    ]


async def write_events(connection: AsyncConnection, rows: list[dict[str, object]]) -> None:
    """Insert event rows inside the caller's transaction."""
    if rows:
        await connection.execute(event_outbox.insert(), rows)


class EventOutbox:
    """Claiming, deleting and counting the event rows; writes go through the shared writer."""

    def __init__(self, database: Database) -> None:
        self._db = database
        self._published: list[str] = []  # rows to delete with the next transaction
        self._flush: asyncio.TimerHandle | None = None

    async def add(self, events: Sequence[PendingEvent], holder: str, hold: float) -> None:
        """Write ``events`` in a transaction of their own (for events whose state change was
        committed already and whose publish failed: a relay publishes them)."""
        rows = event_rows(events, self._db.clock(), holder, hold)

        async def run(connection: AsyncConnection) -> None:
            await write_events(connection, rows)

        await self._db.writer.call(run)

    async def claim(
        self, holder: str, hold: float, limit: int = 100, *, own: bool = False
    ) -> list[PendingEvent]:
        """Take up to ``limit`` rows nobody holds for ``hold`` seconds, in commit order (with
        ``own``, also rows ``holder`` holds already); rows another process is claiming right
        now are skipped, not waited for."""

        async def run(connection: AsyncConnection) -> list[PendingEvent]:
            now = self._db.clock()
            free = or_(
                event_outbox.c.claimed_until.is_(None),
                event_outbox.c.claimed_until <= now,
                *([event_outbox.c.claimed_by == holder] if own else []),
            )
            rows = (
                await connection.execute(
                    select(event_outbox.c.id, event_outbox.c.topic, event_outbox.c.event)
                    .where(free)
                    .order_by(event_outbox.c.id)
                    .limit(limit)
                    .with_for_update(skip_locked=True)  # SQLite: nothing (one writer)
                )
            ).all()
            if rows:
                await connection.execute(
                    update(event_outbox)
                    .where(event_outbox.c.id.in_([row.id for row in rows]))
                    .values(claimed_by=holder, claimed_until=now + hold)
                )
            return [event for event in map(_decoded, rows) if event is not None]

        claimed: list[PendingEvent] = await self._db.writer.call(run)
        return claimed

    def done(self, ids: Sequence[str]) -> None:
        """Delete published rows soon, without waiting: with the next ingest transaction
        (:meth:`delete_published`), or in a small one of their own after ``FLUSH_AFTER``
        seconds. A row whose delete is lost is published once more by a relay: harmless."""
        if not ids:
            return
        self._published.extend(ids)
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(FLUSH_AFTER, self._flush_now)

    def flush(self) -> None:
        """Queue the pending deletes now (the store is closing: the writer commits them)."""
        if self._flush is not None:
            self._flush.cancel()
        self._flush_now()

    def _flush_now(self) -> None:
        self._flush = None
        ids, self._published = self._published, []
        if ids and self._db.writer.running:
            self._db.writer.enqueue(self._delete, ids).add_done_callback(_retrieve)

    async def delete_published(self, connection: AsyncConnection) -> None:
        """Delete the published rows waiting for a transaction, inside the caller's (a write
        that happens anyway takes them along: no transaction of their own under load)."""
        ids, self._published = self._published, []
        if ids:
            await connection.execute(delete(event_outbox).where(event_outbox.c.id.in_(ids)))

    async def _delete(self, connection: AsyncConnection, batches: list[list[str]]) -> list[None]:
        ids = [row_id for batch in batches for row_id in batch]
        await connection.execute(delete(event_outbox).where(event_outbox.c.id.in_(ids)))
        return [None] * len(batches)

    async def release(self, ids: Sequence[str] | None = None) -> None:
        """Drop the claims on ``ids`` (None: on every row), so any relay takes them now."""

        async def run(connection: AsyncConnection) -> None:
            statement = update(event_outbox)
            if ids is not None:
                statement = statement.where(event_outbox.c.id.in_(list(ids)))
            await connection.execute(statement.values(claimed_by=None, claimed_until=None))

        if ids is None or ids:
            await self._db.writer.call(run)

    async def backlog(self) -> Backlog:
        """Rows waiting to be published and the oldest one's commit time (for /metrics)."""
        async with self._db.read() as connection:
            row = (
                await connection.execute(
                    select(func.count(), func.min(event_outbox.c.created_at)).select_from(
                        event_outbox
                    )
                )
            ).one()
        return Backlog(int(row[0]), row[1])


def _decoded(row: Any) -> PendingEvent | None:
    """The row's event; None for one this version cannot read (a newer process wrote it during
    a rolling upgrade): it stays claimed for a while and a newer relay publishes it."""
    try:
        return PendingEvent(row.id, row.topic, decode_event(row.event.encode()))
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        log.warning(
            "event %s is not one this version knows (%s); left to newer relays", row.id, exc
        )
        return None


def _retrieve(future: asyncio.Future[Any]) -> None:
    """A delete that failed is made up for by a relay publishing again: nothing to log."""
    if not future.cancelled():
        future.exception()
