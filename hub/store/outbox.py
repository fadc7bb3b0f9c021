"""The outbox: replies waiting to be sent, each attempt counted before it starts, and what
providers report about them afterwards.

Several hub processes may share one outbox: each *claims* due replies for a while
(:meth:`Outbox.claim`, ``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two processes
never take the same rows; SQLite has one writer and runs the same statements), and a claim
that lapses (its process died) lets another process take the reply over. The attempt counter
(:meth:`Outbox.begin_attempt` with ``after``) stays what guarantees one attempt at a time.
"""

from __future__ import annotations

from typing import Any

import msgspec
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.envelope import Delivery, DeliveryStatus, Outbound
from hub.errors import ProviderIdTaken, StoreConflict
from hub.store.audit import record_event
from hub.store.database import Database
from hub.store.records import Attempt, DeliveryChange, OutboxItem
from hub.store.schema import messages, outbox

_outbound_decoder = msgspec.json.Decoder(Outbound)

#: how far along a reply is; a provider's late or repeated report never moves it backwards
_DELIVERY_RANK = {
    DeliveryStatus.QUEUED: 0,
    DeliveryStatus.SENT: 1,
    DeliveryStatus.DELIVERED: 2,
    DeliveryStatus.READ: 3,
    DeliveryStatus.UNDELIVERED: 4,
    DeliveryStatus.FAILED: 4,
}


def _error_text(delivery: Delivery) -> str | None:
    """A delivery's error as stored: ``code: message``."""
    error = delivery.error_message
    if delivery.error_code:
        error = f"{delivery.error_code}: {error or ''}".strip()
    return error


class Outbox:
    """Sends due, attempts and delivery states of replies."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def due(self, limit: int = 100) -> list[OutboxItem]:
        """Pending sends whose next attempt is due, oldest first."""
        async with self._db.read() as connection:
            rows = await connection.execute(
                select(outbox.c.message_id, outbox.c.payload, outbox.c.attempts)
                .where(
                    and_(outbox.c.status == "pending", outbox.c.next_attempt_at <= self._db.clock())
                )
                .order_by(outbox.c.next_attempt_at)
                .limit(limit)
            )
            return [
                OutboxItem(
                    message_id=row.message_id,
                    outbound=_outbound_decoder.decode(row.payload),
                    attempts=row.attempts,
                )
                for row in rows
            ]

    async def claim(self, holder: str, hold: float, limit: int = 100) -> list[OutboxItem]:
        """Take up to ``limit`` due replies nobody holds for ``hold`` seconds, oldest first.

        Rows another process holds (locked now, or claimed and not lapsed) are skipped, so
        processes claiming at once get disjoint rows; a lapsed claim is taken over.
        """

        async def run(connection: AsyncConnection) -> list[OutboxItem]:
            now = self._db.clock()
            rows = (
                await connection.execute(
                    select(outbox.c.message_id, outbox.c.payload, outbox.c.attempts)
                    .where(
                        outbox.c.status == "pending",
                        outbox.c.next_attempt_at <= now,
                        or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until <= now),
                    )
                    .order_by(outbox.c.next_attempt_at)
                    .limit(limit)
                    .with_for_update(skip_locked=True)  # SQLite: nothing (one writer)
                )
            ).all()
            if rows:
                await connection.execute(
                    update(outbox)
                    .where(outbox.c.message_id.in_([row.message_id for row in rows]))
                    .values(claimed_by=holder, claimed_until=now + hold)
                )
            return [
                OutboxItem(
                    message_id=row.message_id,
                    outbound=_outbound_decoder.decode(row.payload),
                    attempts=row.attempts,
                )
                for row in rows
            ]

        claimed: list[OutboxItem] = await self._db.writer.call(run)
        return claimed

    async def release_claims(self, holder: str | None = None) -> int:
        """Drop the claims of ``holder`` (None: everyone's); how many there were. A stopping
        process hands back what it did not begin; one process on SQLite drops its dead
        predecessor's claims at start, so nothing waits for them to lapse."""

        async def run(connection: AsyncConnection) -> int:
            statement = update(outbox).where(outbox.c.claimed_until.is_not(None))
            if holder is not None:
                statement = statement.where(outbox.c.claimed_by == holder)
            result = await connection.execute(statement.values(claimed_by=None, claimed_until=None))
            return int(result.rowcount)

        released: int = await self._db.writer.call(run)
        return released

    async def begin_attempt(
        self,
        message_id: str,
        after: int | None = None,
        *,
        holder: str | None = None,
        hold: float = 0.0,
    ) -> Attempt | None:
        """Claim and count a send attempt before it starts; its number (1 for the first) and
        when the reply's first attempt began.

        Written before the connector is called, so after a crash mid-send the next attempt knows
        an earlier one may have reached the provider, and from when its message can date. With
        ``after`` (the attempts the caller saw), it is a claim: None when the reply is no longer
        pending or another attempt was counted since, so a stale read never sends it twice.
        With ``holder``, the reply is claimed for ``hold`` seconds from now (the send's time).
        """

        async def run(connection: AsyncConnection) -> Attempt | None:
            now = self._db.clock()
            claim = update(outbox).where(outbox.c.message_id == message_id)
            if after is not None:
                claim = claim.where(outbox.c.status == "pending", outbox.c.attempts == after)
            values: dict[str, Any] = {
                "attempts": outbox.c.attempts + 1,
                "first_attempt_at": func.coalesce(outbox.c.first_attempt_at, now),
            }
            if holder is not None:
                values.update(claimed_by=holder, claimed_until=now + hold)
            counted = await connection.execute(claim.values(values))
            if after is not None and counted.rowcount != 1:
                return None
            row = (
                await connection.execute(
                    select(outbox.c.attempts, outbox.c.first_attempt_at).where(
                        outbox.c.message_id == message_id
                    )
                )
            ).first()
            if row is None:
                return Attempt(number=1, first_at=now)
            return Attempt(number=int(row.attempts), first_at=float(row.first_attempt_at))

        result: Attempt | None = await self._db.writer.call(run)
        return result

    async def record_delivery(
        self, message_id: str, delivery: Delivery, *, retry_at: float | None = None
    ) -> None:
        """Record a send's outcome; ``retry_at`` keeps the outbox entry pending for later.

        :class:`ProviderIdTaken` (nothing recorded) if another reply holds the provider id.
        """

        async def run(connection: AsyncConnection) -> None:
            now = self._db.clock()
            error = _error_text(delivery)
            pending = retry_at is not None
            if delivery.provider_id is not None:
                await _ensure_provider_id_free(connection, message_id, delivery.provider_id)
            await connection.execute(
                update(outbox)
                .where(outbox.c.message_id == message_id)
                .values(
                    status="pending"
                    if pending
                    else ("failed" if delivery.status in {"failed", "undelivered"} else "sent"),
                    next_attempt_at=retry_at if pending else now,
                    last_error=error,
                    sent_at=None if pending else now,
                    claimed_by=None,  # a retry is anyone's when it is due
                    claimed_until=None,
                )
            )
            await connection.execute(
                update(messages)
                .where(messages.c.id == message_id)
                .values(
                    delivery_status=str(delivery.status),
                    delivery_error=error,
                    provider_id=delivery.provider_id,
                )
            )
            data = {"status": str(delivery.status), "error": error}
            await record_event(connection, now, "delivery.updated", None, message_id, data=data)

        try:
            await self._db.writer.call(run)
        except StoreConflict as exc:  # another process recorded it first: the index said so
            raise ProviderIdTaken(
                f"provider id {delivery.provider_id} belongs to another reply"
            ) from exc

    async def update_delivery(
        self, inbox: str, provider_id: str, delivery: Delivery
    ) -> DeliveryChange | None:
        """Apply a provider's later report on a reply it accepted as ``provider_id``.

        None if no reply of ``inbox`` has that id; ``changed`` is False when the report would
        move it backwards (or repeats what is known).
        """

        async def run(connection: AsyncConnection) -> DeliveryChange | None:
            row = await _reply_by_provider_id(connection, inbox, provider_id)
            if row is None:
                return None
            try:
                current = _DELIVERY_RANK[DeliveryStatus(row.delivery_status)]
            except ValueError:
                current = -1
            if _DELIVERY_RANK[delivery.status] <= current:
                return DeliveryChange(
                    conversation_id=row.conversation_id,
                    message_id=row.id,
                    status=row.delivery_status,
                    error=None,
                    changed=False,
                )
            return await _apply_report(connection, row, delivery, self._db.clock())

        change: DeliveryChange | None = await self._db.writer.call(run)
        return change


async def _reply_by_provider_id(connection: AsyncConnection, inbox: str, provider_id: str) -> Any:
    """The reply of ``inbox`` a provider knows as ``provider_id`` (id, conversation, state)."""
    return (
        await connection.execute(
            select(messages.c.id, messages.c.conversation_id, messages.c.delivery_status).where(
                and_(
                    messages.c.inbox == inbox,
                    messages.c.provider_id == provider_id,
                    messages.c.direction == "outbound",
                )
            )
        )
    ).first()


async def _apply_report(
    connection: AsyncConnection, row: Any, delivery: Delivery, now: float
) -> DeliveryChange:
    """Move the reply ``row`` forward to what ``delivery`` reports (failed: its outbox too)."""
    message_id, conversation_id = row.id, row.conversation_id
    error = _error_text(delivery)
    await connection.execute(
        update(messages)
        .where(messages.c.id == message_id)
        .values(delivery_status=str(delivery.status), delivery_error=error)
    )
    if delivery.status in {DeliveryStatus.FAILED, DeliveryStatus.UNDELIVERED}:
        await connection.execute(
            update(outbox)
            .where(outbox.c.message_id == message_id)
            .values(status="failed", last_error=error)
        )
    await record_event(
        connection,
        now,
        "delivery.updated",
        conversation_id,
        message_id,
        data={"status": str(delivery.status), "error": error, "source": "provider"},
    )
    return DeliveryChange(
        conversation_id=conversation_id,
        message_id=message_id,
        status=str(delivery.status),
        error=error,
    )


async def _ensure_provider_id_free(
    connection: AsyncConnection, message_id: str, provider_id: str
) -> None:
    """Raise :class:`ProviderIdTaken` if a reply other than ``message_id`` of the same inbox
    holds ``provider_id`` (the unique index catches what concurrent processes race past)."""
    inbox = select(messages.c.inbox).where(messages.c.id == message_id).scalar_subquery()
    holder = (
        await connection.execute(
            select(messages.c.id).where(
                and_(
                    messages.c.inbox == inbox,
                    messages.c.provider_id == provider_id,
                    messages.c.direction == "outbound",
                    messages.c.id != message_id,
                )
            )
        )
    ).first()
    if holder is not None:
        raise ProviderIdTaken(f"provider id {provider_id} belongs to reply {holder.id}")
