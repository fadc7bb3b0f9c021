"""The outbox: replies reach the channel once stored, failures retry with backoff, permanent
failures stop, and a crash between send and record resends under the same idempotency key."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from alembic import command
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from connectors.base import Connector, SendError
from hub.bus import DELIVERIES, MemoryBus
from hub.envelope import Delivery, DeliveryStatus, Outbound
from hub.errors import ProviderIdTaken
from hub.metrics import Metrics
from hub.outbox import OutboxWorker, backoff
from hub.pipeline import PassthroughDecider, Pipeline
from hub.store import migrate
from hub.store.schema import events, messages, outbox
from hub.store.store import Store
from tests.helpers import Clock, chat_envelope, hub_store


class FlakyConnector(Connector):
    channel = "webchat"

    def __init__(self, failures: list[SendError | None]) -> None:
        super().__init__("web", None)
        self.failures = failures
        self.sent: list[Outbound] = []

    async def start(self, ctx: Any) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send(self, outbound: Outbound) -> Delivery:
        self.sent.append(outbound)
        failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            raise failure
        return Delivery(status=DeliveryStatus.DELIVERED, provider_id="p-1")


@pytest.fixture
async def world(store_url: str) -> AsyncIterator[tuple[Store, MemoryBus, Clock, str]]:
    clock = Clock(1_000.0)
    store = hub_store(store_url, clock=clock)
    await store.start()
    bus = MemoryBus()
    pipeline = Pipeline(store, bus, PassthroughDecider("general"), Metrics())
    accepted = await pipeline.ingest(chat_envelope("in-1"))
    await store.assign(accepted.conversation_id, "alice")
    try:
        yield store, bus, clock, accepted.conversation_id
    finally:
        await store.close()


async def _status(store: Store, message_id: str) -> tuple[str, int, str | None]:
    async with store.engine.connect() as connection:
        row = (
            await connection.execute(
                select(outbox.c.status, outbox.c.attempts, messages.c.delivery_status)
                .join(messages, messages.c.id == outbox.c.message_id)
                .where(outbox.c.message_id == message_id)
            )
        ).one()
    return row.status, row.attempts, row.delivery_status


async def _drain(worker: OutboxWorker) -> None:
    """Until the worker is idle: nothing in flight and nothing due at the test clock's time
    (a send is due until its outcome is recorded, so this does not depend on timing)."""
    for _ in range(1000):
        await asyncio.sleep(0.01)
        if not worker._in_flight and not worker._tasks and not await worker.store.due_outbox():
            return
    raise AssertionError("the outbox did not settle")


async def test_retryable_failure_is_retried_with_the_same_key(world: Any) -> None:
    store, bus, clock, conversation_id = world
    reply = await store.add_reply(conversation_id, agent="alice", client_id="c1", text="hello")
    connector = FlakyConnector([SendError("provider down", code="http_503")])
    deliveries = bus.subscribe(DELIVERIES)
    worker = OutboxWorker(store, bus, {"web": connector}, Metrics(), clock)
    worker.start()
    try:
        await _drain(worker)
        assert await _status(store, reply.message.id) == ("pending", 1, "failed")
        first = deliveries.queue.get_nowait()
        assert first.status == "queued"  # type: ignore[union-attr]
        clock.now += backoff(0)  # the retry is due
        worker._wake.set()
        await _drain(worker)
        assert await _status(store, reply.message.id) == ("sent", 2, "delivered")
    finally:
        await worker.stop()
    assert len(connector.sent) == 2
    assert connector.sent[0].idempotency_key == connector.sent[1].idempotency_key
    assert connector.sent[0].recipient.address == "v1"
    assert connector.sent[0].text == "hello"


async def test_permanent_failure_stops(world: Any) -> None:
    store, bus, clock, conversation_id = world
    reply = await store.add_reply(conversation_id, agent="alice", client_id="c2", text="x")
    connector = FlakyConnector([SendError("no such number", code="21211", retryable=False)])
    worker = OutboxWorker(store, bus, {"web": connector}, Metrics(), clock)
    worker.start()
    try:
        await _drain(worker)
        clock.now += 3600
        worker._wake.set()
        await _drain(worker)
    finally:
        await worker.stop()
    assert await _status(store, reply.message.id) == ("failed", 1, "failed")
    assert len(connector.sent) == 1


async def test_pending_reply_is_sent_after_a_restart(world: Any) -> None:
    """A reply stored before a crash (outbox pending) goes out when the next worker starts."""
    store, bus, clock, conversation_id = world
    reply = await store.add_reply(conversation_id, agent="alice", client_id="c3", text="late")
    connector = FlakyConnector([])
    worker = OutboxWorker(store, bus, {"web": connector}, Metrics(), clock)
    worker.start()
    try:
        await _drain(worker)
    finally:
        await worker.stop()
    assert [o.message_id for o in connector.sent] == [reply.message.id]
    assert await _status(store, reply.message.id) == ("sent", 1, "delivered")


def test_backoff_grows_and_is_capped() -> None:
    assert [backoff(n) for n in range(4)] == [2, 4, 8, 16]
    assert backoff(30) == 600


class AdoptingConnector(FlakyConnector):
    """Fails first sends as told; a retry "finds" ``candidate`` (as a provider lookup by
    recipient and text would) unless the hub says it belongs to another reply."""

    def __init__(self, failures: list[SendError | None], candidate: str) -> None:
        super().__init__(failures)
        self.candidate = candidate
        self.created = 0

    async def send(self, outbound: Outbound) -> Delivery:
        self.sent.append(outbound)
        failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            raise failure
        if outbound.attempt > 1 and self.candidate not in outbound.foreign_provider_ids:
            return Delivery(status=DeliveryStatus.SENT, provider_id=self.candidate)
        self.created += 1
        return Delivery(status=DeliveryStatus.SENT, provider_id=f"new-{self.created}")


async def test_another_replys_message_is_never_adopted(world: Any) -> None:
    """Issue 14, item 1: a retry that finds another reply's message (same text) is refused by
    the store and sent anew, with that provider id excluded."""
    store, bus, clock, conversation_id = world
    first = await store.add_reply(conversation_id, agent="alice", client_id="a", text="Thanks")
    second = await store.add_reply(conversation_id, agent="alice", client_id="b", text="Thanks")
    await store.begin_attempt(first.message.id)
    await store.record_delivery(
        first.message.id, Delivery(status=DeliveryStatus.SENT, provider_id="first-sid")
    )
    connector = AdoptingConnector([SendError("503", code="http_503")], candidate="first-sid")
    worker = OutboxWorker(store, bus, {"web": connector}, Metrics(), clock)
    worker.start()
    try:
        await _drain(worker)
        clock.now += backoff(0)
        worker._wake.set()
        await _drain(worker)
    finally:
        await worker.stop()
    assert await _status(store, second.message.id) == ("sent", 3, "sent")
    assert [(o.attempt, o.foreign_provider_ids) for o in connector.sent] == [
        (1, ()),
        (2, ()),
        (3, ("first-sid",)),
    ]
    assert {o.first_attempt_at for o in connector.sent} == {1_000.0}
    async with store.engine.connect() as connection:
        ids = dict((await connection.execute(select(messages.c.id, messages.c.provider_id))).all())
    assert ids[first.message.id] == "first-sid"
    assert ids[second.message.id] == "new-1"


async def test_the_store_binds_a_provider_id_to_one_reply(world: Any) -> None:
    store, _bus, _clock, conversation_id = world
    one = await store.add_reply(conversation_id, agent="alice", client_id="a", text="Thanks")
    two = await store.add_reply(conversation_id, agent="alice", client_id="b", text="Thanks")
    sent = Delivery(status=DeliveryStatus.SENT, provider_id="SM1")
    await store.record_delivery(one.message.id, sent)
    await store.record_delivery(one.message.id, sent)  # the same reply again: fine
    with pytest.raises(ProviderIdTaken):
        await store.record_delivery(two.message.id, sent)
    async with store.engine.begin() as connection:  # the index holds without the check, too
        with pytest.raises(IntegrityError):
            await connection.execute(
                update(messages).where(messages.c.id == two.message.id).values(provider_id="SM1")
            )


async def test_upgrading_unbinds_replies_recorded_under_anothers_provider_id(world: Any) -> None:
    """Migration 0007: where the old lookup recorded a later reply under an earlier reply's
    provider id, the later one loses it (and says so) so the unique index can be built."""
    store, _bus, clock, conversation_id = world
    one = await store.add_reply(conversation_id, agent="alice", client_id="a", text="Thanks")
    clock.now += 60
    two = await store.add_reply(conversation_id, agent="alice", client_id="b", text="Thanks")
    async with store.engine.begin() as connection:
        await connection.run_sync(lambda sync: command.downgrade(migrate._config(sync), "0006"))
        await connection.execute(
            update(messages).where(messages.c.direction == "outbound").values(provider_id="SM1")
        )
    await migrate.upgrade(store.engine)
    async with store.engine.connect() as connection:
        rows = {
            row.id: (row.provider_id, row.delivery_error)
            for row in await connection.execute(
                select(messages.c.id, messages.c.provider_id, messages.c.delivery_error)
            )
        }
    assert rows[one.message.id] == ("SM1", None)
    assert rows[two.message.id][0] is None
    assert "may never have been sent" in str(rows[two.message.id][1])


@pytest.mark.parametrize("first_try", ["sent", "retried"])
async def test_a_stale_due_list_never_sends_a_reply_twice(world: Any, first_try: str) -> None:
    """bench/pipeline.py saw replies shown twice: the worker read its due list while a delivery
    of the same reply finished and left the in-flight set, then delivered the stale row again.
    An attempt is now a claim on the row as it was read."""
    store, bus, clock, conversation_id = world
    reply = await store.add_reply(conversation_id, agent="alice", client_id="a", text="Thanks")
    stale = await store.due_outbox()
    assert [item.message_id for item in stale] == [reply.message.id]
    failures = [SendError("503", code="http_503")] if first_try == "retried" else []
    connector = FlakyConnector(failures)
    worker = OutboxWorker(store, bus, {"web": connector}, Metrics(), clock)
    await worker._deliver(stale[0])
    await worker._deliver(stale[0])  # the list read before the first delivery finished
    assert len(connector.sent) == 1
    status, attempts, _ = await _status(store, reply.message.id)
    assert (status, attempts) == (("sent", 1) if first_try == "sent" else ("pending", 1))


async def test_attempts_begun_together_share_a_commit_and_claim_once(world: Any) -> None:
    """Attempts queued at once are counted in one writer batch (one read, one write); a claim
    on a row as it was read still succeeds only once, in the order the claims were made."""
    store, _bus, clock, conversation_id = world
    one = await store.add_reply(conversation_id, agent="alice", client_id="a", text="One")
    two = await store.add_reply(conversation_id, agent="alice", client_id="b", text="Two")
    batches = store.writer.batches
    results = await asyncio.gather(
        store.begin_attempt(one.message.id, after=0, holder="n1", hold=60.0),
        store.begin_attempt(one.message.id, after=0, holder="n2", hold=60.0),  # stale: refused
        store.begin_attempt(two.message.id, after=0, holder="n1", hold=60.0),
        store.begin_attempt(two.message.id),  # unconditional: counted after the claim
        store.begin_attempt("no-such-reply", after=0),
        store.begin_attempt("no-such-reply"),
    )
    assert store.writer.batches == batches + 1
    numbers = [None if attempt is None else attempt.number for attempt in results]
    assert numbers == [1, None, 1, 2, None, 1]
    assert {attempt.first_at for attempt in results if attempt is not None} == {clock.now}
    async with store.engine.connect() as connection:
        rows = {
            row.message_id: (row.attempts, row.claimed_by, row.claimed_until)
            for row in await connection.execute(
                select(
                    outbox.c.message_id,
                    outbox.c.attempts,
                    outbox.c.claimed_by,
                    outbox.c.claimed_until,
                )
            )
        }
    assert rows[one.message.id] == (1, "n1", clock.now + 60.0)
    assert rows[two.message.id] == (2, "n1", clock.now + 60.0)


async def test_outcomes_recorded_together_keep_a_provider_id_to_one_reply(world: Any) -> None:
    """Outcomes queued at once are recorded in one batch; of two replies reporting the same
    provider id in it, the first keeps it and the second is refused, nothing of it written."""
    store, _bus, _clock, conversation_id = world
    one = await store.add_reply(conversation_id, agent="alice", client_id="a", text="Thanks")
    two = await store.add_reply(conversation_id, agent="alice", client_id="b", text="Thanks")
    three = await store.add_reply(conversation_id, agent="alice", client_id="c", text="Bye")
    sent = Delivery(status=DeliveryStatus.SENT, provider_id="SM1")
    failed = Delivery(status=DeliveryStatus.FAILED, error_code="http_503", error_message="busy")
    results = await asyncio.gather(
        store.record_delivery(one.message.id, sent),
        store.record_delivery(two.message.id, sent),
        store.record_delivery(three.message.id, failed, retry_at=5_000.0),
        return_exceptions=True,
    )
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], ProviderIdTaken)
    assert await _status(store, one.message.id) == ("sent", 0, "sent")
    assert await _status(store, two.message.id) == ("pending", 0, "queued")
    assert await _status(store, three.message.id) == ("pending", 0, "failed")
    async with store.engine.connect() as connection:
        row = (
            await connection.execute(
                select(outbox.c.next_attempt_at, outbox.c.last_error).where(
                    outbox.c.message_id == three.message.id
                )
            )
        ).one()
        events_of_two = (
            await connection.execute(
                select(func.count())
                .select_from(events)
                .where(events.c.message_id == two.message.id)
                .where(events.c.kind == "delivery.updated")
            )
        ).scalar_one()
    assert (row.next_attempt_at, row.last_error) == (5_000.0, "http_503: busy")
    assert events_of_two == 0


async def test_a_provider_id_given_up_in_a_batch_is_free_for_the_next_outcome(world: Any) -> None:
    """As if recorded one after another: a reply that moves from SM1 to SM2 frees SM1 for a
    later outcome of the same commit."""
    store, _bus, _clock, conversation_id = world
    one = await store.add_reply(conversation_id, agent="alice", client_id="a", text="Thanks")
    two = await store.add_reply(conversation_id, agent="alice", client_id="b", text="Thanks")
    await store.record_delivery(
        one.message.id, Delivery(status=DeliveryStatus.SENT, provider_id="SM1")
    )
    await asyncio.gather(
        store.record_delivery(
            one.message.id, Delivery(status=DeliveryStatus.SENT, provider_id="SM2")
        ),
        store.record_delivery(
            two.message.id, Delivery(status=DeliveryStatus.SENT, provider_id="SM1")
        ),
    )
    async with store.engine.connect() as connection:
        ids = dict((await connection.execute(select(messages.c.id, messages.c.provider_id))).all())
    assert (ids[one.message.id], ids[two.message.id]) == ("SM2", "SM1")
