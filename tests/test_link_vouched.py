"""Vouched senders linked a batch at a time: two reads whatever the batch's size (a chat
visitor is vouched for on every line), and what one line changes is seen by the next."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event, select

from hub.customers.linking import link_vouched
from hub.envelope import Direction, Envelope, Identity, ThreadHints
from hub.store.schema import customers, events, identities
from hub.store.store import Store
from tests.helpers import hub_store

NOW = 1_000.0


def line(address: str, number: str, key: str) -> Envelope:
    return Envelope(
        channel="webchat",
        inbox="web",
        direction=Direction.INBOUND,
        idempotency_key=key,
        sender=Identity(kind="webchat", address=address),
        received_at=NOW,
        thread=ThreadHints(session=address),
        text="hi",
        vouched_customer=number,
    )


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    store = hub_store(store_url, clock=lambda: NOW)
    await store.start()
    async with store.engine.begin() as connection:
        await connection.execute(
            customers.insert().values(created_at=NOW),
            [
                {"id": "c1", "kind": "customer", "name": "Anna", "external_id": "K1"},
                {"id": "c2", "kind": "customer", "name": "Ben", "external_id": "K2"},
                {"id": "p1", "kind": "prospect", "name": "visitor", "external_id": None},
            ],
        )
    try:
        yield store
    finally:
        await store.close()


async def _insert(store: Store, rows: list[dict[str, Any]]) -> None:
    async with store.engine.begin() as connection:
        await connection.execute(
            identities.insert(), [{"display_name": None, "created_at": NOW, **r} for r in rows]
        )


async def _owners(store: Store) -> dict[str, str]:
    async with store.read() as connection:
        rows = await connection.execute(select(identities.c.address, identities.c.customer_id))
        return {row.address: row.customer_id for row in rows}


async def _linked(store: Store, batch: list[Envelope]) -> list[str]:
    statements: list[str] = []

    def counted(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        statements.append(statement.lstrip().split()[0].upper())

    event.listen(store.engine.sync_engine, "before_cursor_execute", counted)
    try:
        async with store.engine.begin() as connection:
            await link_vouched(connection, batch, NOW)
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", counted)
    return [s for s in statements if s not in {"BEGIN", "COMMIT"}]


async def test_a_visitor_vouched_for_on_every_line_costs_two_reads(store: Store) -> None:
    batch = [line("v1", "K1", f"m{index}") for index in range(20)]
    assert await _linked(store, batch) == ["SELECT", "SELECT", "INSERT"]  # linked once
    assert (await _owners(store))["v1"] == "c1"
    assert await _linked(store, batch) == ["SELECT", "SELECT"]  # kept: no write at all


async def test_a_prospect_is_merged_once_and_a_later_line_sees_it(store: Store) -> None:
    await _insert(
        store,
        [
            {"id": "i1", "customer_id": "p1", "kind": "webchat", "address": "v2"},
            {"id": "i2", "customer_id": "p1", "kind": "webchat", "address": "v3"},
        ],
    )
    # v2 merges the prospect into K1 (v3 with it); v3 vouched for K1 then is kept, and a line
    # vouching v2 for K2 afterwards is a clash with K1, not a second merge
    await _linked(store, [line("v2", "K1", "a"), line("v3", "K1", "b"), line("v2", "K2", "c")])
    assert await _owners(store) == {"v2": "c1", "v3": "c1"}
    async with store.read() as connection:
        clashes = [
            row.data
            for row in await connection.execute(
                select(events.c.data).where(events.c.kind == "identity.clash")
            )
        ]
    assert clashes == [{"kind": "webchat", "address": "v2", "vouched": "K2", "owner": "c1"}]


async def test_unknown_numbers_link_nothing(store: Store) -> None:
    assert await _linked(store, [line("v4", "K404", "x")]) == ["SELECT"]
    assert "v4" not in await _owners(store)
