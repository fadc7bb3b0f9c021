"""The outbox: replies waiting to be sent, each attempt counted before it starts, and what
providers report about them afterwards.

Several hub processes may share one outbox: each *claims* due replies for a while
(:meth:`Outbox.claim`, ``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two processes
never take the same rows; SQLite has one writer and runs the same statements), and a claim
that lapses (its process died) lets another process take the reply over. The attempt counter
(:meth:`Outbox.begin_attempt` with ``after``) stays what guarantees one attempt at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import msgspec
from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.envelope import Delivery, DeliveryStatus, Outbound
from hub.errors import ProviderIdTaken, StoreConflict
from hub.store.audit import event_row, record_event
from hub.store.database import Database
from hub.store.records import Attempt, DeliveryChange, OutboxItem
from hub.store.schema import events, messages, outbox

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


@dataclass(frozen=True, slots=True)
class _AttemptRequest:
    """A send attempt to count: ``after`` the attempts its caller saw (None: unconditional)."""

    message_id: str
    after: int | None
    holder: str | None
    hold: float


@dataclass(slots=True)
class _AttemptState:
    """An outbox row's claim columns while a batch of attempts is counted."""

    status: str
    attempts: int
    first_attempt_at: float | None
    claimed_by: str | None
    claimed_until: float | None


class _Outcome(NamedTuple):
    """A send's outcome to record; ``retry_at`` keeps the reply pending."""

    message_id: str
    delivery: Delivery
    retry_at: float | None


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
        processes claiming at once get disjoint rows; a lapsed claim is taken over. Rows
        ``holder`` claimed itself come again: a claimed reply whose attempt could not begin
        (the database went away) is tried again at once rather than when its claim lapses;
        the worker skips what it is still sending, and beginning an attempt is checked
        against the attempt count, so this never starts a send twice.
        """

        async def run(connection: AsyncConnection) -> list[OutboxItem]:
            now = self._db.clock()
            rows = (
                await connection.execute(
                    select(outbox.c.message_id, outbox.c.payload, outbox.c.attempts)
                    .where(
                        outbox.c.status == "pending",
                        outbox.c.next_attempt_at <= now,
                        or_(
                            outbox.c.claimed_until.is_(None),
                            outbox.c.claimed_until <= now,
                            outbox.c.claimed_by == holder,
                        ),
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
        Attempts begun together share one read and one write (:meth:`_begin_batch`).
        """
        request = _AttemptRequest(message_id, after, holder, hold)
        result: Attempt | None = await self._db.writer.submit(self._begin_batch, request)
        return result

    async def _begin_batch(
        self, connection: AsyncConnection, requests: list[_AttemptRequest]
    ) -> list[Attempt | None]:
        """Count the attempts of one commit: their rows read (and locked on PostgreSQL, so
        another process's claim on them waits for this commit and then sees the new count),
        each checked in order against what the caller saw, then written with one statement."""
        now = self._db.clock()
        ids = list(dict.fromkeys(request.message_id for request in requests))
        rows = await connection.execute(
            select(
                outbox.c.message_id,
                outbox.c.status,
                outbox.c.attempts,
                outbox.c.first_attempt_at,
                outbox.c.claimed_by,
                outbox.c.claimed_until,
            )
            .where(outbox.c.message_id.in_(ids))
            .with_for_update()  # SQLite: nothing (one writer)
        )
        state = {row.message_id: _AttemptState(*row[1:]) for row in rows}
        counted: dict[str, _AttemptState] = {}
        results: list[Attempt | None] = []
        for request in requests:
            current = state.get(request.message_id)
            if current is None:  # no outbox row: nothing to claim, nothing to count
                results.append(
                    None if request.after is not None else Attempt(number=1, first_at=now)
                )
                continue
            if request.after is not None and (
                current.status != "pending" or current.attempts != request.after
            ):
                results.append(None)  # sent or counted since the caller's read
                continue
            current.attempts += 1
            if current.first_attempt_at is None:
                current.first_attempt_at = now
            if request.holder is not None:
                current.claimed_by = request.holder
                current.claimed_until = now + request.hold
            counted[request.message_id] = current
            results.append(Attempt(number=current.attempts, first_at=current.first_attempt_at))
        if counted:
            await connection.execute(
                update(outbox)
                .where(outbox.c.message_id == bindparam("b_id"))
                .values(
                    attempts=bindparam("b_attempts"),
                    first_attempt_at=bindparam("b_first"),
                    claimed_by=bindparam("b_by"),
                    claimed_until=bindparam("b_until"),
                ),
                [
                    {
                        "b_id": message_id,
                        "b_attempts": current.attempts,
                        "b_first": current.first_attempt_at,
                        "b_by": current.claimed_by,
                        "b_until": current.claimed_until,
                    }
                    for message_id, current in counted.items()
                ],
            )
        return results

    async def record_delivery(
        self, message_id: str, delivery: Delivery, *, retry_at: float | None = None
    ) -> None:
        """Record a send's outcome; ``retry_at`` keeps the outbox entry pending for later.

        :class:`ProviderIdTaken` (nothing recorded) if another reply holds the provider id.
        Outcomes recorded together share one read and one statement per table
        (:meth:`_record_batch`).
        """
        outcome = _Outcome(message_id, delivery, retry_at)
        try:
            refused: ProviderIdTaken | None = await self._db.writer.submit(
                self._record_batch, outcome
            )
        except StoreConflict as exc:  # another process recorded it first: the index said so
            raise ProviderIdTaken(
                f"provider id {delivery.provider_id} belongs to another reply"
            ) from exc
        if refused is not None:
            raise refused

    async def _record_batch(
        self, connection: AsyncConnection, outcomes: list[_Outcome]
    ) -> list[ProviderIdTaken | None]:
        """Record the outcomes of one commit; an outcome whose provider id another reply of
        the same inbox holds (stored, or earlier in this batch) is refused, the others kept."""
        now = self._db.clock()
        holders = await _provider_id_holders(connection, outcomes)
        results: list[ProviderIdTaken | None] = []
        outbox_rows: list[dict[str, Any]] = []
        message_rows: list[dict[str, Any]] = []
        event_rows: list[dict[str, object]] = []
        for outcome in outcomes:
            message_id, delivery, retry_at = outcome
            provider_id = delivery.provider_id
            if provider_id is not None:
                inbox = holders.inboxes.get(message_id)
                holder = holders.by_key.get((inbox, provider_id))
                if holder is not None and holder != message_id:
                    results.append(
                        ProviderIdTaken(f"provider id {provider_id} belongs to reply {holder}")
                    )
                    continue
            holders.take(message_id, provider_id)  # what it held before is free again
            error = _error_text(delivery)
            pending = retry_at is not None
            outbox_rows.append(
                {
                    "b_id": message_id,
                    "b_status": "pending"
                    if pending
                    else ("failed" if delivery.status in {"failed", "undelivered"} else "sent"),
                    "b_next": retry_at if pending else now,
                    "b_error": error,
                    "b_sent": None if pending else now,
                }
            )
            message_rows.append(
                {
                    "b_id": message_id,
                    "b_status": str(delivery.status),
                    "b_error": error,
                    "b_provider": provider_id,
                }
            )
            event_rows.append(
                event_row(
                    now,
                    "delivery.updated",
                    message_id=message_id,
                    data={"status": str(delivery.status), "error": error},
                )
            )
            results.append(None)
        if outbox_rows:
            await connection.execute(
                update(outbox)
                .where(outbox.c.message_id == bindparam("b_id"))
                .values(
                    status=bindparam("b_status"),
                    next_attempt_at=bindparam("b_next"),
                    last_error=bindparam("b_error"),
                    sent_at=bindparam("b_sent"),
                    claimed_by=None,  # a retry is anyone's when it is due
                    claimed_until=None,
                ),
                outbox_rows,
            )
            await connection.execute(
                update(messages)
                .where(messages.c.id == bindparam("b_id"))
                .values(
                    delivery_status=bindparam("b_status"),
                    delivery_error=bindparam("b_error"),
                    provider_id=bindparam("b_provider"),
                ),
                message_rows,
            )
            await connection.execute(events.insert(), event_rows)
        return results

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


@dataclass(slots=True)
class _Holders:
    """The inbox of each reply of a batch that has a provider id, and which outbound message
    of an inbox holds a provider id now."""

    inboxes: dict[str, str]
    by_key: dict[tuple[str | None, str], str]

    def take(self, message_id: str, provider_id: str | None) -> None:
        """``message_id`` holds ``provider_id`` (None: nothing) from now on in this batch."""
        for key in [key for key, holder in self.by_key.items() if holder == message_id]:
            del self.by_key[key]
        inbox = self.inboxes.get(message_id)
        if provider_id is not None and inbox is not None:
            self.by_key[(inbox, provider_id)] = message_id


async def _provider_id_holders(connection: AsyncConnection, outcomes: list[_Outcome]) -> _Holders:
    """Two indexed reads for the provider-id check of a batch: the replies' inboxes, then the
    outbound messages of those inboxes holding any of their provider ids (the unique index
    catches what concurrent processes race past)."""
    with_id = [outcome for outcome in outcomes if outcome.delivery.provider_id is not None]
    if not with_id:
        return _Holders({}, {})
    ids = list({outcome.message_id for outcome in with_id})
    provider_ids = list({outcome.delivery.provider_id for outcome in with_id})
    rows = await connection.execute(
        select(messages.c.id, messages.c.inbox).where(messages.c.id.in_(ids))
    )
    holders = _Holders({row.id: row.inbox for row in rows}, {})
    if not holders.inboxes:
        return holders
    rows = await connection.execute(
        select(messages.c.id, messages.c.inbox, messages.c.provider_id).where(
            messages.c.inbox.in_(set(holders.inboxes.values())),
            messages.c.provider_id.in_(provider_ids),
            messages.c.direction == "outbound",
        )
    )
    for row in rows:
        holders.by_key.setdefault((row.inbox, row.provider_id), row.id)
    return holders
