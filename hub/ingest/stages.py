"""Storing inbound envelopes, in three stages around the pure planner.

1. **Foresee** (a read, no transaction): who each sender is and what rules may know of them
   (``hub.ingest.customer``). Envelopes that arrive together share one read.
2. **Decide**: the rules hook, a pure function of the envelope and that customer, outside any
   transaction: however many rules there are, no database lock waits on them.
3. **Write** (one transaction of the store's group-committing writer, shared with whatever else
   is queued): dedupe by idempotency key, make each sender the customer foreseen, read the
   conversations the batch may join, :func:`~hub.ingest.plan.plan_batch`, write the rows, among
   them what the rules saw and decided (``routing_records``, for ``rules diff``).

Nothing is acknowledged before the transaction commits, and a redelivered envelope (its key is
stored, or it came twice in one batch) writes nothing. The bus events a plan publishes are
written in the same transaction (``hub.store.event_outbox``), claimed by this process for
``hold`` seconds: it publishes them after the commit, and a relay does if it cannot.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from sqlalchemy.ext.asyncio import AsyncConnection

from hub.customers.context import CustomerRef
from hub.customers.providers import Lookup
from hub.envelope import Envelope
from hub.ids import new_id
from hub.ingest.customer import Arrival, foresee, link
from hub.ingest.plan import Seen, plan_batch
from hub.ingest.record import seen_customer
from hub.ingest.rows import batch_rows
from hub.store.event_outbox import PendingEvent, event_rows, write_events
from hub.store.ingest import find_duplicates, linked_threads, open_threads, write_rows
from hub.store.store import Store
from rules.decision import Decision

#: the rules hook: a pure function of the message and its customer
Decide = Callable[[Envelope, CustomerRef], Decision]


@dataclass(frozen=True, slots=True)
class Stored:
    """What became of one envelope: where it is, and what to publish now that it is durable
    (nothing for a duplicate, which names the message stored first), as the event outbox rows
    committed with it."""

    message_id: str
    conversation_id: str
    duplicate: bool
    publish: tuple[PendingEvent, ...] = ()


_Job = tuple[Arrival, Decision, Seen]
_Waiting = tuple[Arrival, "asyncio.Future[Stored]"]


class Ingest:
    """The stages over one store and one rules hook.

    One read runs at a time, like the writer's one transaction: envelopes that arrive while a
    read runs wait for the next one, together, and reach the writer in the order they came.
    """

    def __init__(
        self, store: Store, decide: Decide, *, holder: str = "", hold: float = 5.0
    ) -> None:
        """``holder`` names this process on the event rows it commits, which are its own to
        publish for ``hold`` seconds (then any relay's)."""
        self.store = store
        self.decide = decide
        self.holder = holder
        self.hold = hold
        self._waiting: list[_Waiting] = []  # arrivals for the next read
        self._reader: asyncio.Task[None] | None = None

    async def ingest(self, envelope: Envelope, external: Lookup | None = None) -> Stored:
        """Store one inbound envelope; durable on return.

        ``external`` is what an external CRM said about the sender, laid over the stored facts.
        """
        arrival = Arrival(envelope, external, new_id(self.store.clock()))
        stored: asyncio.Future[Stored] = asyncio.get_running_loop().create_future()
        self._waiting.append((arrival, stored))
        if self._reader is None:
            self._reader = asyncio.create_task(self._read_all(), name="ingest-foresee")
        return await stored

    async def _read_all(self) -> None:
        """Stages 1 and 2 for whatever waits, batch after batch, until nothing does."""
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                await self._foresee(batch)
        except BaseException:  # cancelled: so is everything still waiting
            for _, stored in self._waiting:
                stored.cancel()
            self._waiting = []
            raise
        finally:
            self._reader = None

    async def _foresee(self, batch: list[_Waiting]) -> None:
        """Read the batch's customers, have the rules decide on each and queue every job for
        the writer at once (so that they commit together), in the order they came."""
        try:
            async with self.store.read() as connection:
                arrivals = [arrival for arrival, _ in batch]
                customers = await foresee(connection, arrivals, self.store.clock())
        except BaseException as exc:
            for _, stored in batch:
                if stored.done():
                    continue
                if isinstance(exc, Exception):
                    stored.set_exception(exc)
                else:
                    stored.cancel()
            if not isinstance(exc, Exception):
                raise
            return
        for (arrival, stored), customer in zip(batch, customers, strict=True):
            if stored.done():  # its caller stopped waiting: not acknowledged, so not stored
                continue
            try:
                decided_at = self.store.clock()
                decision = self.decide(arrival.envelope, customer)
                seen = Seen(seen_customer(customer), decided_at)
                written = self.store.writer.enqueue(self._write, (arrival, decision, seen))
            except Exception as exc:
                stored.set_exception(exc)
            else:
                written.add_done_callback(partial(_relay, stored))

    async def _write(self, connection: AsyncConnection, jobs: list[_Job]) -> list[Stored]:
        """Stage 3 for a batch of jobs, in one transaction."""
        now = self.store.clock()
        await self.store.delete_published_events(connection)  # earlier batches' events
        envelopes = [arrival.envelope for arrival, _, _ in jobs]
        stored = await find_duplicates(connection, envelopes)
        first: dict[str, int] = {}
        for index, envelope in enumerate(envelopes):
            if envelope.idempotency_key not in stored:
                first.setdefault(envelope.idempotency_key, index)
        fresh = list(first.values())
        results: dict[int, Stored] = {}
        if fresh:
            arrivals = [jobs[index][0] for index in fresh]
            customer_ids = await link(connection, arrivals, now)
            chosen = [arrival.envelope for arrival in arrivals]
            items = [
                (arrival.envelope, customer_id, jobs[index][1])
                for index, arrival, customer_id in zip(fresh, arrivals, customer_ids, strict=True)
            ]
            plans = plan_batch(
                items,
                await linked_threads(connection, chosen),
                await open_threads(connection, chosen),
                now=now,
                new_id=partial(new_id, now),
                seen=[jobs[index][2] for index in fresh],
            )
            await write_rows(connection, batch_rows(plans, now))
            base = new_id(now)  # then a counter: the rows' ids keep the batch's order
            pending: list[PendingEvent] = []
            for index, planned in zip(fresh, plans, strict=True):
                events = tuple(
                    PendingEvent(f"{base}{len(pending) + number:05d}", topic, event)
                    for number, (topic, event) in enumerate(planned.publish)
                )
                pending.extend(events)
                results[index] = Stored(planned.message_id, planned.conversation.id, False, events)
            await write_events(connection, event_rows(pending, now, self.holder, self.hold))
        for index, envelope in enumerate(envelopes):
            if index not in results:
                key = envelope.idempotency_key
                original = results.get(first[key]) if key in first else None
                message_id, conversation_id = (
                    (original.message_id, original.conversation_id) if original else stored[key]
                )
                results[index] = Stored(message_id, conversation_id, duplicate=True)
        return [results[index] for index in range(len(jobs))]


def _relay(stored: asyncio.Future[Stored], written: asyncio.Future[Stored]) -> None:
    """Hand the writer's outcome to the caller (who may have stopped waiting: the write is
    committed all the same, as any write the writer took)."""
    if written.cancelled():
        if not stored.done():
            stored.cancel()
        return
    error = written.exception()  # retrieved even when nobody waits any more
    if stored.done():
        return
    if error is not None:
        stored.set_exception(error)
    else:
        stored.set_result(written.result())
