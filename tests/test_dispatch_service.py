"""The dispatch service on a real store (SQLite and PostgreSQL) and the in-memory bus: start-up
with a backlog, writes that no lock orders, and frames in decision order. Agents are a
collecting notifier; nothing here sleeps or measures time."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from hub.bus import MESSAGES, MemoryBus, MessageStored
from hub.console.views import ConsoleFrames
from hub.customers import csvimport
from hub.customers.repository import Customers
from hub.dispatch import service as dispatch_service
from hub.dispatch.core import Presence
from hub.dispatch.service import DispatchService
from hub.envelope import Direction, Envelope, Identity, ThreadHints
from hub.errors import InvalidState
from hub.ingest.stages import Ingest
from hub.metrics import Metrics
from hub.store.records import ConversationSummary
from hub.store.schema import conversations, customer_stats, events
from hub.store.store import Store
from rules.decision import Decision, Priority
from tests.conftest import make_settings
from tests.helpers import hub_store


class Agents:
    """The notifier: every frame each agent got, in order; waiters for frames to come."""

    def __init__(self) -> None:
        self.frames: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._changed = asyncio.Condition()

    async def send(self, agent: str, data: bytes) -> int:
        async with self._changed:
            self.frames[agent].append(json.loads(data))
            self._changed.notify_all()
        return 1

    def of(self, agent: str, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.frames[agent] if f["type"] == kind]

    async def wait_for(self, agent: str, kind: str, count: int = 1) -> list[dict[str, Any]]:
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: len(self.of(agent, kind)) >= count), 10
            )
        return self.of(agent, kind)


PRIORITIES = (Priority.LOW, Priority.NORMAL, Priority.HIGH, Priority.URGENT)


async def backlog(store: Store, count: int) -> list[str]:
    """``count`` queued web chat conversations through the real ingest; every fourth urgent."""

    def decide(envelope: Envelope, customer: object) -> Decision:
        index = int(envelope.idempotency_key)
        return Decision(queue="general", priority=PRIORITIES[index % 4])

    ingest = Ingest(store, decide)
    stored = await asyncio.gather(
        *(
            ingest.ingest(
                Envelope(
                    channel="webchat",
                    inbox="web",
                    direction=Direction.INBOUND,
                    idempotency_key=str(index),
                    sender=Identity(kind="webchat", address=f"v{index}"),
                    received_at=1000.0 + index,
                    thread=ThreadHints(session=f"v{index}"),
                    text=f"question {index}",
                ),
            )
            for index in range(count)
        )
    )
    return [s.conversation_id for s in stored]


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    store = hub_store(store_url)
    await store.start()
    try:
        yield store
    finally:
        await store.close()


def service_on(store: Store, tmp_path: Path, agents: Agents, **overrides: Any) -> DispatchService:
    url = store.engine.url.render_as_string(hide_password=False)
    settings = make_settings(url, tmp_path, **overrides)
    return DispatchService(settings, store, MemoryBus(), ConsoleFrames(agents), Metrics())


class Gate:
    """Lets the backlog be read page by page: after ``opened`` pages it waits to be opened."""

    def __init__(self, store: Store, opened: int) -> None:
        self.pages = 0
        self.opened = opened
        self.open = asyncio.Event()
        self._read = store.queued_pages

    async def __call__(
        self, size: int, urgency: Mapping[str, int], *, default: int = 0
    ) -> AsyncIterator[list[ConversationSummary]]:
        async for page in self._read(size, urgency, default=default):
            if self.pages >= self.opened:
                await self.open.wait()
            self.pages += 1
            yield page


async def test_start_up_serves_the_backlog_before_all_of_it_is_read(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """start() returns before the backlog is read; the most urgent page is offered and can be
    accepted while the rest is still unread; in the end everything waits in memory once."""
    await backlog(store, 120)
    monkeypatch.setattr(dispatch_service, "BACKLOG_PAGE", 20)
    gate = Gate(store, opened=1)
    monkeypatch.setattr(store, "queued_pages", gate)
    agents = Agents()
    service = service_on(store, tmp_path, agents)
    await service.start()
    try:
        assert not service.backlog_loaded.is_set()
        await service.connected("alice")
        offers = await agents.wait_for("alice", "offer", 3)
        assert not service.backlog_loaded.is_set() and gate.pages == 1
        assert {offer["priority"] for offer in offers} == {"urgent"}  # most urgent first
        await service.accept("alice", offers[0]["conversation_id"])
        assert agents.of("alice", "conversation")[0]["conversation"]["status"] == "assigned"
        assert not service.backlog_loaded.is_set()
        gate.open.set()
        await asyncio.wait_for(service.backlog_loaded.wait(), 10)
        assert service.backlog_size == 120
        assert len(service.core.waiting) == 119  # one is held; nothing twice
        assert service.core.waiting_in("general") == 119
    finally:
        await service.stop()


async def test_work_settled_while_the_backlog_is_read_does_not_come_back(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A conversation in a page read before it was assigned and closed (it came in on the bus
    meanwhile) is not queued again when that page is taken in."""
    ids = await backlog(store, 40)
    monkeypatch.setattr(dispatch_service, "BACKLOG_PAGE", 40)
    gate = Gate(store, opened=0)  # the page is read, then held
    monkeypatch.setattr(store, "queued_pages", gate)
    agents = Agents()
    service = service_on(store, tmp_path, agents)
    await service.start()
    try:
        late = ids[-1]  # a low-priority one: in the page, but the bus brings it first
        await service.bus.publish(
            MESSAGES,
            MessageStored(
                conversation_id=late,
                message_id="m",
                direction="inbound",
                conversation_created=True,
                queue="general",
                priority="low",
                queued_at=1.0,
                channel="webchat",
            ),
        )
        await service.connected("alice")
        [offer] = await agents.wait_for("alice", "offer")
        assert offer["conversation_id"] == late
        await service.accept("alice", late)
        await service.close("alice", late, "resolved")
        gate.open.set()
        await asyncio.wait_for(service.backlog_loaded.wait(), 10)
        assert late not in service.core.waiting
        assert all(o["conversation_id"] != late for o in agents.of("alice", "offer")[1:])
    finally:
        await service.stop()


async def test_two_hubs_accepting_the_same_conversation_assign_it_once(
    store: Store, tmp_path: Path
) -> None:
    """Two processes on one store offer the same conversation to their agent; both accept at
    the same moment. The store's conditional update lets exactly one have it; the other
    process forgets it without a frame."""
    [conversation_id] = await backlog(store, 1)
    other = hub_store(store.engine.url.render_as_string(hide_password=False))
    await other.start(run_migrations=False)
    agents_a, agents_b = Agents(), Agents()
    one = service_on(store, tmp_path, agents_a)
    two = service_on(other, tmp_path, agents_b)
    await one.start()
    await two.start()
    try:
        await one.backlog_loaded.wait()
        await two.backlog_loaded.wait()
        await one.connected("alice")
        await two.connected("bob")
        await agents_a.wait_for("alice", "offer")
        await agents_b.wait_for("bob", "offer")
        await asyncio.gather(
            one.accept("alice", conversation_id), two.accept("bob", conversation_id)
        )
        given = agents_a.of("alice", "conversation") + agents_b.of("bob", "conversation")
        assert len(given) == 1
        holder = given[0]["conversation"]["assignee"]
        assert [one.owner(conversation_id), two.owner(conversation_id)].count(holder) == 1
        assert [one.owner(conversation_id), two.owner(conversation_id)].count(None) == 1
        async with store.engine.connect() as connection:
            row = (
                await connection.execute(
                    select(conversations.c.status, conversations.c.assignee).where(
                        conversations.c.id == conversation_id
                    )
                )
            ).one()
            assigned = (
                await connection.execute(
                    select(func.count())
                    .select_from(events)
                    .where(events.c.kind == "conversation.assigned")
                )
            ).scalar_one()
        assert (row.status, row.assignee, assigned) == ("assigned", holder, 1)
    finally:
        await one.stop()
        await two.stop()
        await other.close()


async def test_writes_queued_together_keep_their_order(store: Store) -> None:
    """Dispatch writes are queued without waiting; one commit applies them in order: the second
    assignment of a conversation finds it taken, a close by someone else is refused."""
    [first, second] = await backlog(store, 2)
    results = await asyncio.gather(
        store.assign(first, "alice"),
        store.assign(first, "bob"),
        store.assign(second, "bob"),
        store.close_conversation(first, agent="bob", disposition="x"),
        store.close_conversation(second, agent="bob", disposition="done"),
        store.requeue(first, reason="no_reply", agent="alice"),
        return_exceptions=True,
    )
    assert results[0] is None and results[2] is None and results[4] is None
    assert isinstance(results[1], InvalidState)
    assert type(results[3]).__name__ == "Forbidden"
    assert isinstance(results[5], ConversationSummary)
    assert results[5].queue == "general" and results[5].id == first
    assert await store.requeue(second, reason="no_reply", agent="bob") is None  # closed


async def test_frames_reach_each_agent_in_decision_order(store: Store, tmp_path: Path) -> None:
    """Offers decided and withdrawn at once: every offer_revoked comes after its offer, though
    the offer frame waits for its load and commit and the revocation for nothing."""
    await backlog(store, 3)
    agents = Agents()
    service = service_on(store, tmp_path, agents)
    await service.start()
    try:
        await service.backlog_loaded.wait()
        await asyncio.gather(
            service.connected("alice"), service.set_presence("alice", Presence.AWAY)
        )
        revoked = await agents.wait_for("alice", "offer_revoked", 3)
        kinds = [(f["type"], f["conversation_id"]) for f in agents.frames["alice"]]
        for item in revoked:
            assert kinds.index(("offer", item["conversation_id"])) < kinds.index(
                ("offer_revoked", item["conversation_id"])
            )
    finally:
        await service.stop()


async def test_customer_revaluation_writes_in_slices(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full recompute (run at start-up) writes 200 customers per writer job, so
    chat acknowledgements and dispatch writes wait for one slice at most; customers no longer
    valued lose their figures."""
    from hub.customers import recompute

    monkeypatch.setattr(recompute, "STATS_SLICE", 3)
    lines = "".join(f"K{i},Customer {i},,c{i}@example.com,,,\n" for i in range(10))
    customers = Customers(store)
    await customers.import_file(
        csvimport.parse(
            ("customer_id,name,company,email,phone,tags,tier\n" + lines).encode(), "c.csv"
        )
    )
    [conversation_id] = await backlog(store, 1)  # a chat visitor: a prospect, not valued
    async with store.engine.begin() as connection:
        prospect = (
            await connection.execute(
                select(conversations.c.customer_id).where(conversations.c.id == conversation_id)
            )
        ).scalar_one()
        await connection.execute(
            customer_stats.insert(),
            {
                "customer_id": prospect,
                "lifetime_value_cents": 0,
                "revenue_window_cents": 0,
                "orders_12m": 0,
                "orders_window": 0,
                "overdue_invoices": 0,
                "abc": "C",
                "rfm_r": 1,
                "rfm_f": 1,
                "rfm_m": 1,
                "computed_at": 0.0,
            },
        )
    jobs = store.writer.jobs
    assert await customers.recompute() == 10
    assert store.writer.jobs - jobs == 4 + 1  # ten customers in slices of three, one stale
    async with store.engine.connect() as connection:
        valued = {
            row.customer_id
            for row in await connection.execute(select(customer_stats.c.customer_id))
        }
    assert len(valued) == 10 and prospect not in valued


async def test_the_bus_slows_the_publisher_down_instead_of_growing() -> None:
    """A subscriber (dispatch) that is behind by the bound makes the publisher (ingest) wait
    for room instead of queueing without end; one that makes no room in time is skipped."""
    bus = MemoryBus(maxsize=2, patience=60)
    subscription = bus.subscribe(MESSAGES)
    events = [
        MessageStored(conversation_id=f"c{i}", message_id=f"m{i}", direction="inbound")
        for i in range(3)
    ]
    await bus.publish(MESSAGES, events[0])
    await bus.publish(MESSAGES, events[1])
    third = asyncio.create_task(bus.publish(MESSAGES, events[2]))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not third.done()  # waits for room
    assert subscription.queue.get_nowait() == events[0]
    await asyncio.wait_for(third, 10)
    assert [subscription.queue.get_nowait() for _ in range(2)] == events[1:]

    stuck = MemoryBus(maxsize=1, patience=0.01)
    stuck.subscribe(MESSAGES)
    await stuck.publish(MESSAGES, events[0])
    await stuck.publish(MESSAGES, events[1])  # dropped for the stuck subscriber, logged


async def test_closing_a_full_subscription_frees_a_waiting_publisher() -> None:
    bus = MemoryBus(maxsize=1, patience=60)
    subscription = bus.subscribe(MESSAGES)
    event = MessageStored(conversation_id="c", message_id="m", direction="inbound")
    await bus.publish(MESSAGES, event)
    waiting = asyncio.create_task(bus.publish(MESSAGES, event))
    await asyncio.sleep(0)
    subscription.close()
    await asyncio.wait_for(waiting, 10)
    assert [item async for item in subscription] == []


class SlowAgents(Agents):
    """Agents whose sockets stop taking frames while ``flowing`` is clear."""

    def __init__(self) -> None:
        super().__init__()
        self.flowing = asyncio.Event()
        self.flowing.set()

    async def send(self, agent: str, data: bytes) -> int:
        await self.flowing.wait()
        return await super().send(agent, data)


async def test_dispatch_falling_behind_slows_ingest_down(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Frames an agent's socket does not take pile up only to a bound; then dispatch stops
    taking events from the bus, and the bus (bounded) makes the publisher wait: memory does
    not grow, and nothing is lost once the socket takes frames again."""
    [conversation_id] = await backlog(store, 1)
    monkeypatch.setattr(dispatch_service, "MAX_IN_FLIGHT", 3)
    agents = SlowAgents()
    settings = make_settings(store.engine.url.render_as_string(hide_password=False), tmp_path)
    bus = MemoryBus(maxsize=2, patience=60)
    service = DispatchService(settings, store, bus, ConsoleFrames(agents), Metrics())
    await service.start()
    try:
        await service.backlog_loaded.wait()
        await service.connected("alice")
        await agents.wait_for("alice", "offer")
        await service.accept("alice", conversation_id)
        agents.flowing.clear()
        messages = [
            MessageStored(
                conversation_id=conversation_id,
                message_id=f"m{i}",
                direction="inbound",
                text=f"again {i}",
            )
            for i in range(8)
        ]
        publishing = asyncio.create_task(_publish_all(bus, messages))
        for _ in range(50):
            await asyncio.sleep(0)
        assert not publishing.done()  # 3 frames in flight, 2 events queued: ingest waits
        assert len(service.work) <= 3
        agents.flowing.set()
        await asyncio.wait_for(publishing, 10)
        shown = await agents.wait_for("alice", "message", 8)
        assert [m["message"]["id"] for m in shown] == [f"m{i}" for i in range(8)]
    finally:
        agents.flowing.set()
        await service.stop()


async def _publish_all(bus: MemoryBus, events: list[MessageStored]) -> None:
    for event in events:
        await bus.publish(MESSAGES, event)
