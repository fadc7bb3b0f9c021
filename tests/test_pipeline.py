"""Component tests: pipeline + store + in-memory bus, no HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import event, func, select, text

from hub.bus import MESSAGES, CustomerPresence, MemoryBus, MessageStored
from hub.envelope import Delivery, DeliveryStatus, Direction, Envelope, Identity
from hub.errors import StoreError
from hub.metrics import Metrics
from hub.pipeline import InvalidEnvelope, PassthroughDecider, Pipeline
from hub.store.schema import conversations, customers, identities, messages
from hub.store.schema import events as audit
from hub.store.store import Store
from tests.helpers import chat_envelope, hub_store


@pytest.fixture
async def pipeline(store_url: str) -> AsyncIterator[Pipeline]:
    store = hub_store(store_url)
    await store.start()
    bus = MemoryBus()
    try:
        yield Pipeline(store, bus, PassthroughDecider("general"), Metrics())
    finally:
        await store.close()


async def test_the_pipeline_keeps_time_by_its_injected_clock(store_url: str) -> None:
    """Presence events and the early status reports' time to live read the pipeline's clock,
    like every other service's (issue 16): a test moves it instead of sleeping."""
    now = [5_000.0]
    store = hub_store(store_url)
    await store.start()
    bus = MemoryBus()
    pipeline = Pipeline(store, bus, PassthroughDecider("general"), Metrics(), clock=lambda: now[0])
    try:
        presence = bus.subscribe(MESSAGES)
        await pipeline.customer_presence("web", "v1", True)
        came = presence.queue.get_nowait()
        assert isinstance(came, CustomerPresence) and came.at == 5_000.0
        ttl = pipeline.early_reports.ttl
        report = Delivery(status=DeliveryStatus.DELIVERED, provider_id="p-1")
        # no send has this provider id yet: both reports are parked, at 5,000
        assert not await pipeline.delivery_update("web", "p-1", report)
        assert not await pipeline.delivery_update("web", "p-2", report)
        now[0] += ttl  # still within the time to live: applied (and parked again, still unknown)
        await pipeline.apply_early_reports("web", "p-1")
        assert pipeline.early_reports.take("web", "p-1", now[0]) == [report]
        now[0] += 1  # past it: dropped
        await pipeline.apply_early_reports("web", "p-2")
        assert pipeline.early_reports.take("web", "p-2", now[0]) == []
    finally:
        await store.close()


async def count(store: Store, table: object) -> int:
    async with store.engine.connect() as connection:
        return int((await connection.execute(select(func.count()).select_from(table))).scalar_one())


async def test_ingest_threads_by_session_and_publishes_after_commit(pipeline: Pipeline) -> None:
    events = pipeline.bus.subscribe(MESSAGES)
    first = await pipeline.ingest(chat_envelope("k1"))
    second = await pipeline.ingest(chat_envelope("k2", text_="again"))
    other = await pipeline.ingest(chat_envelope("k3", sender="v2"))
    assert first.conversation_id == second.conversation_id != other.conversation_id
    published = [events.queue.get_nowait() for _ in range(3)]
    assert all(isinstance(event, MessageStored) for event in published)
    assert [e.conversation_created for e in published] == [True, False, True]  # type: ignore[union-attr]
    assert await count(pipeline.store, customers) == 2
    assert await count(pipeline.store, identities) == 2


async def test_redelivery_and_concurrent_duplicates_store_once(pipeline: Pipeline) -> None:
    results = await asyncio.gather(*(pipeline.ingest(chat_envelope("same")) for _ in range(20)))
    assert len({r.message_id for r in results}) == 1
    assert sum(not r.duplicate for r in results) == 1
    later = await pipeline.ingest(chat_envelope("same"))
    assert later.duplicate and later.message_id == results[0].message_id
    assert await count(pipeline.store, messages) == 1


async def test_concurrent_first_messages_from_one_address_make_one_customer(
    pipeline: Pipeline,
) -> None:
    await asyncio.gather(
        *(pipeline.ingest(chat_envelope(f"k{i}", sender="new")) for i in range(10))
    )
    assert await count(pipeline.store, customers) == 1
    assert await count(pipeline.store, conversations) == 1


async def test_html_is_sanitized_whatever_the_connector_did(pipeline: Pipeline) -> None:
    accepted = await pipeline.ingest(
        chat_envelope("x", html='<p onclick="steal()">Hi<script>alert(1)</script></p>')
    )
    async with pipeline.store.engine.connect() as connection:
        html = (
            await connection.execute(
                select(messages.c.html).where(messages.c.id == accepted.message_id)
            )
        ).scalar_one()
    assert html == "<p>Hi</p>"


async def test_invalid_envelopes_are_refused(pipeline: Pipeline) -> None:
    with pytest.raises(InvalidEnvelope):
        await pipeline.ingest(chat_envelope(""))
    outbound = Envelope(
        channel="webchat",
        inbox="web",
        direction=Direction.OUTBOUND,
        idempotency_key="o",
        sender=Identity(kind="webchat", address="x"),
        received_at=0.0,
    )
    with pytest.raises(InvalidEnvelope):
        await pipeline.ingest(outbound)
    assert await count(pipeline.store, messages) == 0


async def test_a_failing_write_does_not_sink_its_batch(pipeline: Pipeline) -> None:
    store = pipeline.store

    async def broken(connection: object) -> None:
        await connection.execute(text("INSERT INTO no_such_table VALUES (1)"))  # type: ignore[attr-defined]

    outcomes = await asyncio.gather(
        pipeline.ingest(chat_envelope("a")),
        store.writer.call(broken),
        pipeline.ingest(chat_envelope("b")),
        return_exceptions=True,
    )
    assert isinstance(outcomes[1], StoreError)
    assert not isinstance(outcomes[0], BaseException)
    assert not isinstance(outcomes[2], BaseException)
    assert await count(store, messages) == 2


async def test_history_is_per_thread_and_oldest_first(pipeline: Pipeline) -> None:
    for index in range(3):
        await pipeline.ingest(chat_envelope(f"a{index}", text_=f"a{index}"))
    await pipeline.ingest(chat_envelope("b0", sender="someone-else", text_="b0"))
    items = await pipeline.history("web", "v1")
    assert [item.text for item in items] == ["a0", "a1", "a2"]
    assert [item.text for item in await pipeline.history("web", "v1", limit=2)] == ["a1", "a2"]
    assert await pipeline.history("other-inbox", "v1") == []


async def test_concurrent_ingests_share_one_transaction(pipeline: Pipeline) -> None:
    """Group commit: a burst costs a handful of statements, not a handful per message."""
    statements: list[str] = []

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement.split("(")[0].strip())

    event.listen(pipeline.store.engine.sync_engine, "before_cursor_execute", record)
    try:
        await asyncio.gather(
            *(pipeline.ingest(chat_envelope(f"burst{i}", sender=f"s{i % 7}")) for i in range(50))
        )
    finally:
        event.remove(pipeline.store.engine.sync_engine, "before_cursor_execute", record)
    assert statements.count("INSERT INTO messages") == 1
    # reads (duplicates, senders, threads), customers and identities foreseen, then one INSERT
    # per table: conversations, messages, routing_records, events, event_outbox (and updates)
    assert all(statements.count(s) == 1 for s in statements if s.startswith("INSERT")), statements
    assert len(statements) <= 14, statements
    assert await count(pipeline.store, messages) == 50


@pytest.mark.parametrize("order", ["created_first", "joined_first"])
async def test_a_batch_that_creates_and_joins_conversations_audits_every_message(
    pipeline: Pipeline, order: str
) -> None:
    """Issue 14 item 5: one write batch holding a new conversation and a message on an existing
    one. Created first, the audit rows lost their message ids; joined first, the batch failed on
    a missing bind parameter and was retried write by write."""
    store = pipeline.store
    await pipeline.ingest(chat_envelope("existing-0", sender="known"))
    joining = chat_envelope("existing-1", sender="known")
    creating = chat_envelope("new-0", sender="newcomer")
    pair = (creating, joining) if order == "created_first" else (joining, creating)
    batches = store.writer.batches
    accepted = await asyncio.gather(*(pipeline.ingest(item) for item in pair))
    assert store.writer.batches == batches + 1  # one transaction, no write-by-write retry
    async with store.engine.connect() as connection:
        rows = (
            await connection.execute(
                select(audit.c.kind, audit.c.conversation_id, audit.c.message_id).order_by(
                    audit.c.seq
                )
            )
        ).all()
    received = [
        (row.conversation_id, row.message_id) for row in rows if row.kind == "message.received"
    ]
    assert len(received) == 3
    for result in accepted:
        assert (result.conversation_id, result.message_id) in received
    created = [row for row in rows if row.kind == "conversation.created"]
    assert all(row.message_id is None for row in created)
    assert len(created) == 2
