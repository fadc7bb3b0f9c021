"""The outbox across hub processes: two workers on one PostgreSQL database (as two nodes would
run) send every reply exactly once, and a dead worker's claims are taken over after they lapse,
the retry adopting what the provider already has instead of sending it again."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select

from connectors.base import Connector
from hub.bus import MemoryBus
from hub.envelope import Delivery, DeliveryStatus, Outbound
from hub.metrics import Metrics
from hub.outbox import OutboxWorker
from hub.pipeline import PassthroughDecider, Pipeline
from hub.store.records import OutboxItem
from hub.store.schema import outbox
from hub.store.store import Store
from tests.helpers import Clock, chat_envelope, hub_store


class FakeProvider:
    """A provider shared by every node: it creates a message per send and finds an earlier
    one by the reply's idempotency key (as the SMS connector looks one up before a retry)."""

    def __init__(self) -> None:
        self.created: Counter[str] = Counter()
        self.ids: dict[str, str] = {}

    def send(self, outbound: Outbound) -> Delivery:
        key = outbound.idempotency_key
        if outbound.attempt > 1 and key in self.ids:
            return Delivery(status=DeliveryStatus.SENT, provider_id=self.ids[key])
        self.created[key] += 1
        self.ids[key] = f"p-{len(self.ids) + 1}"
        return Delivery(status=DeliveryStatus.SENT, provider_id=self.ids[key])


class ProviderConnector(Connector):
    channel = "webchat"

    def __init__(self, provider: FakeProvider, *, hang: bool = False) -> None:
        super().__init__("web", None)
        self.provider = provider
        self.hang = hang  # the node "dies" after the provider took the message
        self.sent: list[Outbound] = []

    async def start(self, ctx: Any) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send(self, outbound: Outbound) -> Delivery:
        self.sent.append(outbound)
        await asyncio.sleep(0)  # another node's worker runs in between
        delivery = self.provider.send(outbound)
        if self.hang:
            await asyncio.Event().wait()
        return delivery


@pytest.fixture
async def nodes(pg_url: str) -> AsyncIterator[tuple[Store, Store, Clock, list[str]]]:
    """Two stores on one database, and the ids of 200 pending replies."""
    clock = Clock(1_000.0)
    first, second = hub_store(pg_url, clock=clock), hub_store(pg_url, clock=clock)
    await first.start()
    await second.start()
    pipeline = Pipeline(first, MemoryBus(), PassthroughDecider("general"), Metrics())
    accepted = await pipeline.ingest(chat_envelope("in-1"))
    await first.assign(accepted.conversation_id, "alice")
    replies = [
        await first.add_reply(accepted.conversation_id, agent="alice", client_id=f"c{n}", text="x")
        for n in range(200)
    ]
    try:
        yield first, second, clock, [reply.message.id for reply in replies]
    finally:
        await first.close()
        await second.close()


def _recording(store: Store, claimed: list[str]) -> None:
    take = store.claim_outbox

    async def claim(holder: str, hold: float, limit: int = 100) -> list[OutboxItem]:
        items = await take(holder, hold, limit)
        claimed.extend(item.message_id for item in items)
        return items

    store.claim_outbox = claim  # type: ignore[method-assign]


async def _pending(store: Store) -> int:
    async with store.engine.connect() as connection:
        count = await connection.scalar(
            select(func.count()).select_from(outbox).where(outbox.c.status == "pending")
        )
    return int(count or 0)


async def _settle(store: Store, *workers: OutboxWorker) -> None:
    """Until nothing is pending and no worker has a send in flight (polled, not timed)."""
    for _ in range(2000):
        await asyncio.sleep(0.01)
        if not any(w._tasks for w in workers) and await _pending(store) == 0:
            return
    raise AssertionError("the outbox did not settle")


async def test_two_nodes_send_each_reply_exactly_once(nodes: Any) -> None:
    first, second, clock, ids = nodes
    provider = FakeProvider()
    claims: dict[str, list[str]] = {"a": [], "b": []}
    _recording(first, claims["a"])
    _recording(second, claims["b"])
    workers = [
        OutboxWorker(store, MemoryBus(), {"web": ProviderConnector(provider)}, Metrics(), clock)
        for store in (first, second)
    ]
    for worker in workers:
        worker.start()
    try:
        await _settle(first, *workers)
    finally:
        for worker in workers:
            await worker.stop()
    assert sorted(claims["a"] + claims["b"]) == sorted(ids)  # no reply claimed twice
    assert len(provider.created) == 200
    assert set(provider.created.values()) == {1}
    sends = [o.message_id for w in workers for o in w.connectors["web"].sent]  # type: ignore[attr-defined]
    assert sorted(sends) == sorted(ids)


async def test_a_dead_nodes_claims_are_taken_over_after_they_lapse(nodes: Any) -> None:
    first, second, clock, ids = nodes
    provider = FakeProvider()
    hold = 60.0
    held: list[str] = []
    _recording(first, held)
    dying = OutboxWorker(
        first,
        MemoryBus(),
        {"web": ProviderConnector(provider, hang=True)},
        Metrics(),
        clock,
        holder="node-a",
        claim_hold=hold,
    )
    dying.start()
    for _ in range(2000):  # until its sends in flight have reached the provider
        await asyncio.sleep(0.01)
        if sum(provider.created.values()) >= 16:
            break
    assert sum(provider.created.values()) == 16  # CONCURRENCY: the rest wait, claimed
    # kill -9: nothing more happens on that node, nothing is recorded or released
    for task in [dying._loop_task, dying._wake_task, *dying._tasks]:
        assert task is not None
        task.cancel()
    await asyncio.gather(
        *[t for t in [dying._loop_task, dying._wake_task, *dying._tasks] if t],
        return_exceptions=True,
    )
    survivor_connector = ProviderConnector(provider)
    survivor = OutboxWorker(
        second,
        MemoryBus(),
        {"web": survivor_connector},
        Metrics(),
        clock,
        holder="node-b",
        claim_hold=hold,
    )
    survivor.start()
    try:
        assert len(held) == 100  # one claim's worth; the other replies are anyone's
        for _ in range(2000):  # while node-a's claims are valid, only the others go out
            survivor._wake.set()
            await asyncio.sleep(0.01)
            if await _pending(second) == 100 and not survivor._tasks:
                break
        assert not {o.message_id for o in survivor_connector.sent} & set(held)
        assert await _pending(second) == 100
        clock.now += hold + 1  # node-a's claims lapse
        survivor._wake.set()
        await _settle(second, survivor)
    finally:
        await survivor.stop()
    assert sorted(o.message_id for o in survivor_connector.sent) == sorted(ids)
    assert len(provider.created) == 200
    assert set(provider.created.values()) == {1}  # the 16 in flight were adopted, not resent
    retried = [o for o in survivor_connector.sent if o.attempt == 2]
    assert len(retried) == 16


async def test_one_process_on_sqlite_frees_a_dead_predecessors_claims(sqlite_url: str) -> None:
    """The embedded mode stays as it was: after a crash, the next start sends at once."""
    clock = Clock(1_000.0)
    store = hub_store(sqlite_url, clock=clock)
    await store.start()
    try:
        pipeline = Pipeline(store, MemoryBus(), PassthroughDecider("general"), Metrics())
        accepted = await pipeline.ingest(chat_envelope("in-1"))
        await store.assign(accepted.conversation_id, "alice")
        reply = await store.add_reply(
            accepted.conversation_id, agent="alice", client_id="c", text="x"
        )
        assert [i.message_id for i in await store.claim_outbox("dead", 600.0)] == [reply.message.id]
        assert await store.claim_outbox("other", 600.0) == []  # held
        connector = ProviderConnector(FakeProvider())
        worker = OutboxWorker(store, MemoryBus(), {"web": connector}, Metrics(), clock)
        worker.start()
        try:
            await _settle(store, worker)
        finally:
            await worker.stop()
        assert [o.message_id for o in connector.sent] == [reply.message.id]
    finally:
        await store.close()
