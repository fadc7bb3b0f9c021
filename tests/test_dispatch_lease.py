"""The dispatch lease: its pure decisions table-driven (take, renew, wait, give up, how a
holder's term runs on its own clock), then two holders on one PostgreSQL database: one holds
it, the other takes over once it lapses, and a write with a stale fencing token is refused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hub.bus import MemoryBus
from hub.dispatch.leadership import Leadership, dispatch_leadership
from hub.errors import ConfigError, LeaseLost, StoreUnavailable
from hub.keys import DISPATCH as DISPATCH_SERVICE
from hub.lease import (
    Change,
    Decision,
    Held,
    LeaseRow,
    Verdict,
    decide,
    next_claim_in,
    released,
    step,
)
from hub.metrics import Metrics
from hub.pipeline import PassthroughDecider, Pipeline
from hub.store.leases import DISPATCH
from hub.store.schema import QUEUED
from hub.store.store import Store
from tests.conftest import make_settings
from tests.helpers import Clock, chat_envelope, hub_store, running_hub
from tests.redis_server import RedisServer

TTL = 3.0
MARGIN = 0.5


@pytest.mark.parametrize(
    ("found", "me", "now", "verdict", "row"),
    [
        (None, "a", 100.0, Verdict.TAKE, LeaseRow("a", 1, 103.0)),
        (LeaseRow(None, 0, 0.0), "a", 100.0, Verdict.TAKE, LeaseRow("a", 1, 103.0)),
        (LeaseRow("a", 4, 101.0), "a", 100.0, Verdict.RENEW, LeaseRow("a", 4, 103.0)),
        (LeaseRow("b", 4, 101.0), "a", 100.0, Verdict.WAIT, LeaseRow("b", 4, 101.0)),
        # expired: taken over with the next token, exactly at the end too
        (LeaseRow("b", 4, 99.0), "a", 100.0, Verdict.TAKE, LeaseRow("a", 5, 103.0)),
        (LeaseRow("b", 4, 100.0), "a", 100.0, Verdict.TAKE, LeaseRow("a", 5, 103.0)),
        # its own expired lease: a new term, not a renewal
        (LeaseRow("a", 4, 99.0), "a", 100.0, Verdict.TAKE, LeaseRow("a", 5, 103.0)),
        # given up (ended at the moment of release): free for anyone at once
        (LeaseRow("b", 7, 100.0), "a", 100.0, Verdict.TAKE, LeaseRow("a", 8, 103.0)),
    ],
)
def test_decide(
    found: LeaseRow | None, me: str, now: float, verdict: Verdict, row: LeaseRow
) -> None:
    assert decide(found, me, now, TTL) == Decision(verdict, row)


@pytest.mark.parametrize(
    ("found", "expected"),
    [
        (LeaseRow("a", 3, 102.0), LeaseRow("a", 3, 100.0)),
        (LeaseRow("b", 3, 102.0), None),  # not ours
        (LeaseRow("a", 3, 99.0), None),  # over already
    ],
)
def test_released(found: LeaseRow, expected: LeaseRow | None) -> None:
    assert released(found, "a", 100.0) == expected


def _took(token: int) -> Decision:
    return Decision(Verdict.TAKE, LeaseRow("a", token, 0.0))


def _renewed(token: int) -> Decision:
    return Decision(Verdict.RENEW, LeaseRow("a", token, 0.0))


WAITING = Decision(Verdict.WAIT, LeaseRow("b", 9, 0.0))


@pytest.mark.parametrize(
    ("held", "outcome", "asked_at", "now", "after", "change"),
    [
        (None, _took(1), 10.0, 10.1, Held(1, 12.5), Change.GAINED),
        (None, WAITING, 10.0, 10.1, None, Change.NONE),
        (None, None, 10.0, 10.1, None, Change.NONE),
        # a claim answered after its would-be term ended: not acted on
        (None, _took(1), 10.0, 12.5, None, Change.NONE),
        (Held(1, 11.0), _renewed(1), 10.0, 10.1, Held(1, 12.5), Change.KEPT),
        (Held(1, 11.0), _renewed(1), 10.0, 13.0, None, Change.LOST),
        # the store did not answer: act until the term ends, then stop
        (Held(1, 11.0), None, 10.0, 10.9, Held(1, 11.0), Change.KEPT),
        (Held(1, 11.0), None, 10.0, 11.0, None, Change.LOST),
        # someone else holds it now (we were paused past the end)
        (Held(1, 11.0), WAITING, 10.0, 10.1, None, Change.LOST),
        # our lease had expired and we took it again: a new term
        (Held(1, 11.0), _took(2), 10.0, 10.1, Held(2, 12.5), Change.SWITCHED),
    ],
)
def test_step(
    held: Held | None,
    outcome: Decision | None,
    asked_at: float,
    now: float,
    after: Held | None,
    change: Change,
) -> None:
    result = step(held, outcome, "a", asked_at, now, TTL, MARGIN)
    assert (result.held, result.change) == (after, change)


@pytest.mark.parametrize(
    ("held", "now", "wait"),
    [
        (None, 10.0, 0.25),
        (Held(1, 12.5), 10.0, 1.0),  # a third of the lease
        (Held(1, 12.5), 12.0, 0.5),  # before the term ends
        (Held(1, 12.5), 13.0, 0.0),
    ],
)
def test_next_claim_in(held: Held | None, now: float, wait: float) -> None:
    assert next_claim_in(held, now, TTL, 0.25) == wait


# -- on PostgreSQL: two hub processes (two stores on one database) ------------------------


@pytest.fixture
async def two_nodes(pg_url: str) -> AsyncIterator[tuple[Store, Store, Clock, str]]:
    clock = Clock(1_000.0)  # the stores' wall clock and the lease holders' monotonic one
    first, second = hub_store(pg_url, clock=clock), hub_store(pg_url, clock=clock)
    await first.start()
    await second.start()
    pipeline = Pipeline(first, MemoryBus(), PassthroughDecider("general"), Metrics())
    accepted = await pipeline.ingest(chat_envelope("in-1"))
    try:
        yield first, second, clock, accepted.conversation_id
    finally:
        await first.close()
        await second.close()


def _leadership(store: Store, name: str, clock: Clock, log: list[str]) -> Leadership:
    async def gained(token: int) -> None:
        store.fence_dispatch(token)
        log.append(f"{name}+{token}")

    async def lost() -> None:
        log.append(f"{name}-")

    async def no_sleep(_seconds: float) -> None:
        await asyncio.sleep(0)

    return Leadership(
        store,
        DISPATCH,
        name,
        ttl=TTL,
        margin=MARGIN,
        poll=0.25,
        on_gain=gained,
        on_loss=lost,
        monotonic=clock,
        sleep=no_sleep,
    )


async def test_one_holder_takeover_and_a_stale_token_refused(two_nodes: Any) -> None:
    first, second, clock, conversation_id = two_nodes
    log: list[str] = []
    a, b = _leadership(first, "a", clock, log), _leadership(second, "b", clock, log)
    # both claim at once: the row lock lets one take it
    changes = await asyncio.gather(a.tick(), b.tick())
    assert sorted(changes) == sorted([Change.GAINED, Change.NONE])
    holder, standby = (a, b) if a.held is not None else (b, a)
    assert holder.token == 1 and standby.token is None
    for _ in range(5):  # renewing: the standby keeps waiting
        clock.now += 1.0
        assert await holder.tick() is Change.KEPT
        assert await standby.tick() is Change.NONE
    # the holder is paused (stops renewing): the standby takes over within the lease time
    clock.now += TTL - 0.01
    assert await standby.tick() is Change.NONE
    clock.now += 0.01
    assert await standby.tick() is Change.GAINED
    assert standby.token == 2
    # the paused former holder wakes up and writes with its old token: refused
    old_store = first if holder is a else second
    new_store = second if holder is a else first
    with pytest.raises(LeaseLost):
        await old_store.assign(conversation_id, "alice")
    assert (await new_store.conversation(conversation_id)).status == QUEUED
    # and learns at its next claim that its term is over
    assert await holder.tick() is Change.LOST
    assert holder.token is None
    await new_store.assign(conversation_id, "bob")  # the owner's write goes in
    assert (await new_store.conversation(conversation_id)).assignee == "bob"
    assert log == [f"{holder.holder}+1", f"{standby.holder}+2", f"{holder.holder}-"]


async def test_a_holder_stops_acting_when_the_store_is_away(two_nodes: Any) -> None:
    """Renewals that fail leave the holder acting only until its term ends, before any
    other process can see the lease expired."""
    first, _second, clock, _conversation_id = two_nodes
    log: list[str] = []
    a = _leadership(first, "a", clock, log)
    assert await a.tick() is Change.GAINED

    async def unreachable(name: str, holder: str, ttl: float) -> Decision:
        raise StoreUnavailable("connection refused")

    a.store = type("Away", (), {"claim_lease": staticmethod(unreachable)})()  # type: ignore[assignment]
    clock.now += TTL - MARGIN - 0.01
    assert await a.tick() is Change.KEPT
    clock.now += 0.01
    assert await a.tick() is Change.LOST
    assert log == ["a+1", "a-"]


async def test_giving_up_lets_the_standby_take_over_at_once(two_nodes: Any) -> None:
    first, second, clock, _conversation_id = two_nodes
    log: list[str] = []
    a, b = _leadership(first, "a", clock, log), _leadership(second, "b", clock, log)
    assert await a.tick() is Change.GAINED
    assert await b.tick() is Change.NONE
    await a.stop()
    assert await b.tick() is Change.GAINED
    assert b.token == 2
    assert log == ["a+1", "a-", "b+2"]


async def test_the_loop_takes_over_within_one_poll_of_the_lapse(two_nodes: Any) -> None:
    """The running loop (not single ticks): b polls, and time passes only by b's sleeps,
    so when b took over says how long after a's last renewal that was."""
    first, second, clock, _conversation_id = two_nodes
    log: list[str] = []
    a, b = _leadership(first, "a", clock, log), _leadership(second, "b", clock, log)
    assert await a.tick() is Change.GAINED
    taken: list[float] = []

    async def gained(token: int) -> None:
        taken.append(clock.now)

    async def passing(seconds: float) -> None:
        clock.now += seconds
        await asyncio.sleep(0)

    b.on_gain, b.sleep = gained, passing
    b.start()
    try:
        for _ in range(1000):
            await asyncio.sleep(0.01)
            if taken:
                break
    finally:
        await b.stop()
    assert taken and TTL <= taken[0] - 1_000.0 <= TTL + b.poll


class FakeDispatch:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def start(self) -> None:
        self.log.append("start")

    async def stop(self) -> None:
        self.log.append("stop")


async def test_dispatch_runs_only_in_the_term_and_a_standby_never_writes(two_nodes: Any) -> None:
    first, second, clock, conversation_id = two_nodes
    log: list[str] = []
    retired: list[str] = []
    owner, standby = (
        dispatch_leadership(
            store,
            FakeDispatch(log if name == "a" else []),
            name,
            ttl=TTL,
            margin=MARGIN,
            poll=0.25,
            on_retired=lambda name=name: retired.append(name),  # type: ignore[misc]
        )
        for store, name in ((first, "a"), (second, "b"))
    )
    owner.monotonic = standby.monotonic = clock
    # before any term, neither may write dispatch state (token 0 is always refused)
    with pytest.raises(LeaseLost):
        await first.assign(conversation_id, "alice")
    assert await owner.tick() is Change.GAINED
    assert await standby.tick() is Change.NONE
    assert log == ["start"]
    with pytest.raises(LeaseLost):
        await second.assign(conversation_id, "bob")
    await first.assign(conversation_id, "alice")
    # paused past its lease: the standby takes over; the old owner stops, bids no more and
    # restarts (to come back as a standby with nothing in memory)
    clock.now += TTL
    assert await standby.tick() is Change.GAINED
    assert retired == []
    assert await owner.tick() is Change.LOST
    assert log == ["start", "stop"]
    assert retired == ["a"]
    clock.now += TTL  # the new owner's lease lapses too: the retired process does not bid
    assert await owner.tick() is Change.NONE
    assert owner.token is None
    # the new owner, paused past its own term, does not carry on with a new token either
    assert await standby.tick() is Change.LOST
    assert retired == ["a", "b"]
    assert standby.token is None


def test_distributed_means_redis_and_postgresql(tmp_path: Path) -> None:
    pg = "postgresql+asyncpg://u@127.0.0.1/db"
    cases = [
        ("memory://", pg, False),
        ("redis://127.0.0.1:6379/0", f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", False),
        ("redis://127.0.0.1:6379/0", pg, True),
    ]
    for bus, storage, distributed in cases:
        settings = make_settings(storage, tmp_path, bus={"url": bus})
        assert settings.distributed is distributed


@pytest.mark.parametrize(
    "cluster",
    [
        {"lease_ttl": "3s", "lease_margin": "1s"},  # a third of the lease or more
        {"lease_poll": "0s"},
        {"lease_ttl": "2s", "lease_poll": "3s"},
        {"outbox_claim": "0.5s"},
    ],
)
def test_inconsistent_cluster_settings_are_refused(tmp_path: Path, cluster: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        make_settings(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", tmp_path, cluster=cluster)


# -- two hubs in the distributed mode (PostgreSQL, a private redis-server) ----------------


async def _until(condition: Any, what: str) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never: {what}")


@pytest.mark.integration
async def test_two_hubs_one_dispatches_and_the_other_takes_over(
    pg_url: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    cluster = {"lease_ttl": "1.5s", "lease_margin": "0.2s", "lease_poll": "0.1s"}
    settings = make_settings(pg_url, tmp_path, bus={"url": redis_server.url}, cluster=cluster)
    assert settings.distributed
    async with running_hub(settings) as first:
        first_dispatch = first.app[DISPATCH_SERVICE]
        await _until(first_dispatch.backlog_loaded.is_set, "the first hub dispatches")
        async with running_hub(settings) as second:
            second_dispatch = second.app[DISPATCH_SERVICE]
            for _ in range(20):  # the standby keeps polling and stays a standby
                await asyncio.sleep(0.02)
                assert not second_dispatch.backlog_loaded.is_set()
            await first.runner.cleanup()  # a graceful stop gives the lease up
            await _until(second_dispatch.backlog_loaded.is_set, "the second hub takes over")
