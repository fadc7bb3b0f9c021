"""The event outbox and its relay, on SQLite and PostgreSQL, with a real Redis that is gone.

A publish the bus refuses after the commit leaves the events in the store; a provider's retry
is still a duplicate, and the relay publishes them (in commit order) once a bus takes them.
On PostgreSQL, relays of several processes claim disjoint rows.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from hub.bus import MESSAGES, MemoryBus, MessageStored, create_bus
from hub.metrics import Metrics
from hub.pipeline import PassthroughDecider, Pipeline
from hub.relay import EventRelay
from hub.settings import BusSettings
from hub.store.event_outbox import FLUSH_AFTER, PendingEvent
from hub.store.schema import event_outbox
from hub.store.store import Store
from tests.helpers import chat_envelope as envelope
from tests.redis_server import RedisServer, require_redis_server


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = Store(store_url)
    await opened.start()
    try:
        yield opened
    finally:
        await opened.close()


async def _rows(store: Store) -> list[tuple[str, str | None, float | None]]:
    async with store.read() as connection:
        return [
            (row.id, row.claimed_by, row.claimed_until)
            for row in await connection.execute(
                select(
                    event_outbox.c.id, event_outbox.c.claimed_by, event_outbox.c.claimed_until
                ).order_by(event_outbox.c.id)
            )
        ]


async def _settled(store: Store, expected: list[str]) -> list[str]:
    """The rows' ids once they are ``expected``: published rows are deleted with the next
    transaction, or in one of their own after ``FLUSH_AFTER``."""
    for _ in range(100):
        ids = [row[0] for row in await _rows(store)]
        if ids == expected:
            break
        await asyncio.sleep(FLUSH_AFTER / 5)
    return ids


@pytest.mark.integration
async def test_events_the_bus_refused_are_relayed_in_order_and_a_retry_stays_a_duplicate(
    store: Store, tmp_path: Path
) -> None:
    require_redis_server()
    root = tmp_path / "redis"
    root.mkdir()
    redis = RedisServer(root)
    redis.start()
    redis.kill()  # gone: every publish is refused (BusUnavailable), as in an outage
    gone = create_bus(BusSettings(url=redis.url, timeout=1.0, block=0.5))
    metrics = Metrics()
    relay = EventRelay(store, gone, metrics, holder="this", hold=30.0)
    pipeline = Pipeline(store, gone, PassthroughDecider("general"), metrics, relay=relay)
    try:
        first = await pipeline.ingest(envelope("k1", sender="anna"))
        second = await pipeline.ingest(envelope("k2", sender="bert"))
        again = await pipeline.ingest(envelope("k1", sender="anna"))  # the provider retries
    finally:
        await gone.close()
    assert not first.duplicate and not second.duplicate
    assert again.duplicate and again.message_id == first.message_id
    rows = await _rows(store)
    assert len(rows) == 2
    # the first publish failed: its row is released (anyone's); the bus known down, the second
    # was acknowledged without waiting for it: its row stays this process's for its relay
    assert [(claimed_by, until is None) for _, claimed_by, until in rows] == [
        (None, True),
        ("this", False),
    ]
    assert relay.bus_down
    deferred = metrics.registry.get_sample_value(
        "channelhub_event_outbox_deferred_total", {"topic": MESSAGES}
    )
    assert deferred == 2

    bus = MemoryBus()  # the bus is back (another process's relay, with its own bus)
    subscription = bus.subscribe(MESSAGES, "dispatch")
    await subscription.ready()
    other = EventRelay(store, bus, Metrics(), holder="other", hold=30.0)
    assert await other.relay_once() == 1  # the released row; the other one is held
    relay.bus = bus  # this process's relay, the bus back: it takes its own rows at once
    assert await relay.relay_once() == 1
    assert not relay.bus_down
    received = []
    async for item in subscription:
        received.append(item.event)
        if len(received) == 2:
            break
    assert all(isinstance(event, MessageStored) for event in received)
    assert [event.message_id for event in received] == [first.message_id, second.message_id]  # type: ignore[union-attr]
    assert await _settled(store, []) == []
    assert await other.relay_once() == 0


async def test_a_relay_takes_only_rows_whose_claim_lapsed(store: Store) -> None:
    """The committing process's claim keeps others' relays off its rows until it lapses."""
    event = MessageStored(conversation_id="c", message_id="m", direction="inbound")
    await store.add_events([PendingEvent("01held", MESSAGES, event)], "alive", 60.0)
    await store.add_events([PendingEvent("02free", MESSAGES, event)], "dead", 0.0)
    bus = MemoryBus()
    relay = EventRelay(store, bus, Metrics(), holder="relay", hold=30.0)
    claimed = await store.claim_events("relay", 30.0)
    assert [pending.id for pending in claimed] == ["02free"]
    await store.release_events([pending.id for pending in claimed])
    assert await relay.relay_once() == 1
    assert await _settled(store, ["01held"]) == ["01held"]


@pytest.mark.integration
async def test_relays_of_two_processes_claim_disjoint_rows(pg_url: str) -> None:
    first, second = Store(pg_url), Store(pg_url)
    await first.start()
    await second.start(run_migrations=False)
    try:
        event = MessageStored(conversation_id="c", message_id="m", direction="inbound")
        await first.add_events(
            [PendingEvent(f"row{n:03d}", MESSAGES, event) for n in range(50)], "dead", 0.0
        )
        one, two = await asyncio.gather(
            first.claim_events("one", 30.0, 30), second.claim_events("two", 30.0, 30)
        )
        ids_one = {pending.id for pending in one}
        ids_two = {pending.id for pending in two}
        assert not ids_one & ids_two
        assert len(ids_one | ids_two) == 50
    finally:
        await first.close()
        await second.close()
