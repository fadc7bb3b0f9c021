"""Replies that share a commit: a constant number of statements per batch, each reply stored
once per client id (also twice in one batch), and a refused reply sinks none of its
neighbours."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event, func, select

from hub.bus import MemoryBus
from hub.errors import Forbidden, NotFound
from hub.metrics import Metrics
from hub.pipeline import PassthroughDecider, Pipeline
from hub.store.schema import events, messages, outbox
from hub.store.store import Store
from tests.helpers import chat_envelope, hub_store


@pytest.fixture
async def world(store_url: str) -> AsyncIterator[tuple[Store, list[str]]]:
    store = hub_store(store_url, clock=lambda: 1_000.0)
    await store.start()
    pipeline = Pipeline(store, MemoryBus(), PassthroughDecider("general"), Metrics())
    ids = []
    for index in range(3):
        accepted = await pipeline.ingest(chat_envelope(f"in-{index}", sender=f"visitor-{index}"))
        await store.assign(accepted.conversation_id, "alice")
        ids.append(accepted.conversation_id)
    try:
        yield store, ids
    finally:
        await store.close()


async def _count(store: Store, table: Any) -> int:
    async with store.read() as connection:
        return int((await connection.execute(select(func.count()).select_from(table))).scalar())


async def test_a_batch_of_replies_costs_a_constant_number_of_statements(world: Any) -> None:
    store, ids = world
    statements: list[str] = []

    def counted(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        statements.append(statement)

    event.listen(store.engine.sync_engine, "before_cursor_execute", counted)
    try:
        replies = await asyncio.gather(
            *(
                store.add_reply(ids[index % 3], agent="alice", client_id=str(index), text="hi")
                for index in range(30)
            )
        )
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", counted)
    assert not any(reply.duplicate for reply in replies)
    assert len({reply.message.id for reply in replies}) == 30
    assert await _count(store, outbox) == 30
    assert store.writer.batches  # they went through the group-commit writer
    # 3 reads and 3 writes (messages, outbox, events) per commit, whatever its size
    work = [s for s in statements if not s.lstrip().upper().startswith(("BEGIN", "COMMIT"))]
    assert len(work) <= 6 * 2, work


async def test_the_same_client_id_twice_in_one_batch_is_stored_once(world: Any) -> None:
    store, ids = world
    first, second = await asyncio.gather(
        store.add_reply(ids[0], agent="alice", client_id="same", text="hello"),
        store.add_reply(ids[0], agent="alice", client_id="same", text="hello"),
    )
    assert (first.duplicate, second.duplicate) == (False, True)
    assert first.message.id == second.message.id
    assert await _count(store, outbox) == 1
    again = await store.add_reply(ids[0], agent="alice", client_id="same", text="hello")
    assert again.duplicate and again.message.id == first.message.id
    assert await _count(store, outbox) == 1


async def test_a_refused_reply_does_not_sink_its_neighbours(world: Any) -> None:
    store, ids = world
    results = await asyncio.gather(
        store.add_reply(ids[0], agent="alice", client_id="a", text="fine"),
        store.add_reply(ids[1], agent="bob", client_id="b", text="not mine"),
        store.add_reply("no-such-conversation", agent="alice", client_id="c", text="?"),
        store.add_reply(ids[2], agent="alice", client_id="d", text="note", note=True),
        return_exceptions=True,
    )
    assert isinstance(results[1], Forbidden)
    assert isinstance(results[2], NotFound)
    assert not isinstance(results[0], BaseException) and not results[0].duplicate
    assert not isinstance(results[3], BaseException) and results[3].message.kind == "note"
    assert await _count(store, outbox) == 1
    assert await _count(store, messages) == 3 + 2
    async with store.read() as connection:
        kinds = sorted(
            row.kind
            for row in await connection.execute(
                select(events.c.kind).where(events.c.kind.in_(["reply.queued", "note.added"]))
            )
        )
    assert kinds == ["note.added", "reply.queued"]


async def test_the_reply_view_agrees_with_the_whole_conversation(world: Any) -> None:
    """What checking a reply reads (for_reply) is what the whole load says, opt-out too."""
    store, ids = world
    whole = await store.conversation(ids[0])
    assert whole.recipient is not None
    await store.set_opt_out("web", whole.recipient, True, "STOP")
    whole = await store.conversation(ids[0])
    light = await store.conversation_for_reply(ids[0])
    assert whole.opt_out is not None
    for name in ("id", "inbox", "channel", "status", "assignee", "recipient", "last_inbound_at"):
        assert getattr(light, name) == getattr(whole, name), name
    assert light.opt_out == whole.opt_out
    assert (await store.conversation_for_reply(ids[1])).opt_out is None
    with pytest.raises(NotFound):
        await store.conversation_for_reply("no-such-conversation")
