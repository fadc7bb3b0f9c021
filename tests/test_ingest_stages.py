"""The ingest stages on a real SQLite store: the rules decide before the transaction, arrivals
share reads and transactions and keep their order, one failing decision or a caller that gives
up costs no one else. No sleeps: ``asyncio.sleep(0)`` only lets the loop take one turn."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import event, func, select

from hub.customers.context import CustomerRef
from hub.envelope import Envelope
from hub.ingest.stages import Ingest
from hub.store.schema import conversations, messages
from hub.store.store import Store
from rules.decision import Decision
from tests.helpers import chat_envelope, hub_store

GENERAL = Decision(queue="general")


@pytest.fixture
async def store(sqlite_url: str) -> AsyncIterator[Store]:
    store = hub_store(sqlite_url)
    await store.start()
    try:
        yield store
    finally:
        await store.close()


async def count(store: Store, table: object) -> int:
    async with store.read() as connection:
        return int((await connection.execute(select(func.count()).select_from(table))).scalar_one())


async def test_rules_decide_before_the_transaction_on_one_shared_read(store: Store) -> None:
    seen: list[str] = []

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        seen.append(statement.split()[0])

    def decide(envelope: Envelope, customer: CustomerRef) -> Decision:
        seen.append("decide")
        return GENERAL

    ingest = Ingest(store, decide)
    event.listen(store.engine.sync_engine, "before_cursor_execute", record)
    try:
        await asyncio.gather(
            *(ingest.ingest(chat_envelope(f"k{i}", f"v{i % 3}", text_=f"k{i}")) for i in range(9))
        )
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", record)
    # one read, nine decisions, then the transaction's statements: none while rules run
    assert seen[:10] == ["SELECT"] + ["decide"] * 9
    assert "decide" not in seen[10:]
    assert store.writer.batches == 1


async def test_a_failing_decision_costs_only_its_own_message(store: Store) -> None:
    def decide(envelope: Envelope, customer: CustomerRef) -> Decision:
        if envelope.idempotency_key == "bad":
            raise RuntimeError("a broken rules hook")
        return GENERAL

    ingest = Ingest(store, decide)
    outcomes = await asyncio.gather(
        ingest.ingest(chat_envelope("a", text_="a")),
        ingest.ingest(chat_envelope("bad", text_="bad")),
        ingest.ingest(chat_envelope("b", text_="b")),
        return_exceptions=True,
    )
    assert isinstance(outcomes[1], RuntimeError)
    assert not isinstance(outcomes[0], BaseException)
    assert not isinstance(outcomes[2], BaseException)
    assert await count(store, messages) == 2


async def test_arrivals_during_a_read_come_after_it(store: Store) -> None:
    """The second message of a session arrives while the first one's read runs: it waits for
    the next read and joins the conversation the first one started."""
    ingest = Ingest(store, lambda envelope, customer: GENERAL)
    first = asyncio.create_task(ingest.ingest(chat_envelope("first", text_="first")))
    await asyncio.sleep(0)  # the read starts with the first message alone
    second = asyncio.create_task(ingest.ingest(chat_envelope("second", text_="second")))
    one, two = await asyncio.gather(first, second)
    assert one.conversation_id == two.conversation_id
    created = [p.event.conversation_created for p in one.publish + two.publish]  # type: ignore[union-attr]
    assert created == [True, False]


async def test_a_caller_that_gives_up_before_its_decision_stores_nothing(store: Store) -> None:
    ingest = Ingest(store, lambda envelope, customer: GENERAL)
    kept = asyncio.create_task(ingest.ingest(chat_envelope("kept", "v1", text_="kept")))
    dropped = asyncio.create_task(ingest.ingest(chat_envelope("dropped", "v2", text_="dropped")))
    await asyncio.sleep(0)  # both wait on the read
    dropped.cancel()
    await kept
    with pytest.raises(asyncio.CancelledError):
        await dropped
    assert await count(store, messages) == 1
    assert await count(store, conversations) == 1


async def test_a_redelivery_writes_nothing_and_names_the_first_copy(store: Store) -> None:
    ingest = Ingest(store, lambda envelope, customer: GENERAL)
    first, again = await asyncio.gather(
        ingest.ingest(chat_envelope("k", text_="k")), ingest.ingest(chat_envelope("k", text_="k"))
    )
    later = await ingest.ingest(chat_envelope("k", text_="k"))
    assert not first.duplicate and again.duplicate and later.duplicate
    assert again.publish == later.publish == ()
    assert {again.message_id, later.message_id} == {first.message_id}
    assert await count(store, messages) == 1
