"""The bus contract, run against ``memory://`` and a private Redis alike; and the pure pieces of
the Redis bus (ids, entries, errors, reconnect delays, settings)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from pydantic import ValidationError
from redis.exceptions import (
    BusyLoadingError,
    ReadOnlyError,
    ResponseError,
)
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
)
from redis.exceptions import (
    TimeoutError as RedisTimeoutError,
)

from hub.bus import (
    DELIVERIES,
    MESSAGES,
    OUTBOX,
    AttachmentListed,
    Bus,
    BusEvent,
    CustomerPresence,
    DeliveryUpdated,
    MemoryBus,
    MessageStored,
    OutboxReady,
    Received,
    Subscription,
    create_bus,
    decode_event,
    encode_event,
)
from hub.bus.redis_streams import RedisStreamsBus
from hub.bus.streams import (
    Undecodable,
    dead_letter_fields,
    decode_entry,
    is_missing_group,
    is_unavailable,
    parse_id,
    reconnect_delay,
    redacted,
)
from hub.settings import BusSettings
from tests.redis_server import RedisServer, require_redis_server

TIMEOUT = 10.0

EVERY_EVENT: list[tuple[str, BusEvent]] = [
    (
        MESSAGES,
        MessageStored(
            conversation_id="c1",
            message_id="m1",
            direction="inbound",
            conversation_created=True,
            queue="general",
            skills=("de", "billing"),
            sla=60.0,
            text="Grüße \u2603 <script>",
            attachments=(
                AttachmentListed(
                    id="a1", name="x.pdf", content_type="application/pdf", size=3, sha256="ab"
                ),
            ),
            notes=("looks like spam",),
        ),
    ),
    (MESSAGES, CustomerPresence(inbox="webchat", session="s1", present=False, at=1.5)),
    (DELIVERIES, DeliveryUpdated(conversation_id="c1", message_id="m2", status="failed")),
    (OUTBOX, OutboxReady(message_id="m2")),
]


def redis_settings(url: str, **overrides: Any) -> BusSettings:
    """Small timings, so reclaims and reconnects happen within a test."""
    values: dict[str, Any] = {
        "url": url,
        "block": 0.05,
        "timeout": 1.0,
        "reclaim_idle": 0.3,
        "max_deliveries": 3,
        "reconnect_initial": 0.02,
        "reconnect_max": 0.2,
        "batch": 10,
    }
    values.update(overrides)
    return BusSettings(**values)


class Collector:
    """Reads a subscription in the background into a queue, acknowledging (or not)."""

    def __init__(self, subscription: Subscription, *, ack: bool = True) -> None:
        self.subscription = subscription
        self.ack = ack
        self.received: asyncio.Queue[Received] = asyncio.Queue()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for received in self.subscription:
            await self.received.put(received)
            if self.ack:
                await received.ack()

    async def take(self, count: int, timeout: float = TIMEOUT) -> list[Received]:
        async with asyncio.timeout(timeout):
            return [await self.received.get() for _ in range(count)]

    async def nothing_more(self, wait: float = 0.3) -> None:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(wait):
                await self.received.get()

    async def stop(self) -> None:
        self.subscription.close()
        async with asyncio.timeout(TIMEOUT):
            await asyncio.gather(self.task, return_exceptions=True)


Nodes = Callable[[], Bus]


@pytest.fixture(params=["memory", "redis"])
async def nodes(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Nodes]:
    """Makes "nodes": each call a bus as another hub process would have it. Memory: the one
    process's bus, whatever the call. Redis: a bus of its own on one shared private server."""
    buses: list[Bus] = []
    if request.param == "memory":
        memory = MemoryBus()
        buses.append(memory)
        yield lambda: memory
    else:
        require_redis_server()
        server = RedisServer(tmp_path)
        server.start()

        def node() -> Bus:
            bus = RedisStreamsBus(redis_settings(server.url))
            buses.append(bus)
            return bus

        try:
            yield node
        finally:
            for bus in buses:
                await bus.close()
            server.stop()
        return
    for bus in buses:
        await bus.close()


async def subscribed(bus: Bus, topic: str, group: str | None = None, **kw: Any) -> Collector:
    subscription = bus.subscribe(topic, group)
    await subscription.ready()
    return Collector(subscription, **kw)


async def test_every_event_type_round_trips(nodes: Nodes) -> None:
    bus = nodes()
    work = {topic: await subscribed(bus, topic, "g") for topic in (MESSAGES, DELIVERIES, OUTBOX)}
    broadcast = {topic: await subscribed(bus, topic) for topic in (MESSAGES, DELIVERIES, OUTBOX)}
    for topic, event in EVERY_EVENT:
        await bus.publish(topic, event)
    for collectors in (work, broadcast):
        for topic in (MESSAGES, DELIVERIES, OUTBOX):
            expected = [event for t, event in EVERY_EVENT if t == topic]
            got = await collectors[topic].take(len(expected))
            assert [r.event for r in got] == expected
            assert not any(r.missed for r in got)
    for collector in [*work.values(), *broadcast.values()]:
        await collector.nothing_more(0.1)
        await collector.stop()


async def test_a_work_group_hands_each_event_to_one_member(nodes: Nodes) -> None:
    first = await subscribed(nodes(), OUTBOX, "outbox")
    second = await subscribed(nodes(), OUTBOX, "outbox")
    publisher = nodes()
    for i in range(60):
        await publisher.publish(OUTBOX, OutboxReady(message_id=f"m{i}"))
    seen: list[str] = []
    async with asyncio.timeout(TIMEOUT):
        while len(seen) < 60:
            for collector in (first, second):
                while not collector.received.empty():
                    seen.append(collector.received.get_nowait().event.message_id)  # type: ignore[union-attr]
            await asyncio.sleep(0.01)
    assert sorted(seen) == sorted(f"m{i}" for i in range(60))  # each once, none twice
    await first.nothing_more(0.2)
    await second.nothing_more(0.01)
    await first.stop()
    await second.stop()


async def test_broadcast_reaches_every_subscriber_and_groups_once(nodes: Nodes) -> None:
    one, two = await subscribed(nodes(), DELIVERIES), await subscribed(nodes(), DELIVERIES)
    group = await subscribed(nodes(), DELIVERIES, "dispatch")
    events = [
        DeliveryUpdated(conversation_id="c", message_id=f"m{i}", status="sent") for i in range(25)
    ]
    publisher = nodes()
    for event in events:
        await publisher.publish(DELIVERIES, event)
    for collector in (one, two, group):
        assert [r.event for r in await collector.take(25)] == events  # in order
        await collector.nothing_more(0.1)
        await collector.stop()


async def test_closing_ends_iteration_promptly(nodes: Nodes) -> None:
    bus = nodes()
    for group in (None, "g"):
        collector = await subscribed(bus, MESSAGES, group)
        await asyncio.sleep(0.05)  # blocked in its read
        collector.subscription.close()
        async with asyncio.timeout(2):
            await collector.task
        assert collector.task.exception() is None


async def test_a_subscriber_sees_what_is_published_after_it_is_ready(nodes: Nodes) -> None:
    bus = nodes()
    await bus.publish(OUTBOX, OutboxReady(message_id="before"))
    collectors = [await subscribed(bus, OUTBOX), await subscribed(bus, OUTBOX, "late")]
    await bus.publish(OUTBOX, OutboxReady(message_id="after"))
    for collector in collectors:
        [received] = await collector.take(1)
        assert received.event == OutboxReady(message_id="after")
        await collector.stop()


async def test_create_bus_picks_the_implementation(tmp_path: Path) -> None:
    assert isinstance(create_bus("memory://"), MemoryBus)
    bus = create_bus(BusSettings(url="redis://:secret@127.0.0.1:1/0"))
    assert isinstance(bus, RedisStreamsBus)
    assert "secret" not in repr(bus)
    await bus.close()


# -- pure pieces ---------------------------------------------------------------------------


@pytest.mark.parametrize("topic_event", EVERY_EVENT)
def test_events_encode_and_decode(topic_event: tuple[str, BusEvent]) -> None:
    _topic, event = topic_event
    assert decode_event(encode_event(event)) == event
    assert decode_entry({b"event": encode_event(event)}) == event


@pytest.mark.parametrize(
    "fields",
    [
        None,
        {},
        {b"other": b"x"},
        {b"event": b""},
        {b"event": b"\xff\xfe not json"},
        {b"event": b'{"type": "Unknown", "x": 1}'},
        {b"event": b'{"type": "OutboxReady"}'},  # a required field missing
        {b"event": b'{"type": "OutboxReady", "message_id": 7}'},
        {b"event": b"[" * 10_000},
        {b"event": b'"just a string"'},
    ],
)
def test_entries_that_are_not_events_are_undecodable(fields: dict[bytes, bytes] | None) -> None:
    with pytest.raises(Undecodable):
        decode_entry(fields)


def test_dead_letter_entries_keep_the_original_under_a_prefix() -> None:
    entry = dead_letter_fields(
        {b"event": b"x", b"reason": b"forged"},
        source_id=b"1-2",
        group="dispatch",
        consumer="node-1",
        reason="undecodable",
        deliveries=1,
    )
    assert entry[b"reason"] == b"undecodable"
    assert entry[b"field:reason"] == b"forged"
    assert entry[b"field:event"] == b"x"
    assert entry[b"source_id"] == b"1-2" and entry[b"deliveries"] == b"1"


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [(b"0-0", (0, 0)), ("1700000000000-12", (1700000000000, 12)), (b"5", (5, 0))],
)
def test_parse_id(raw: bytes | str, parsed: tuple[int, int]) -> None:
    assert parse_id(raw) == parsed


@pytest.mark.parametrize(
    ("exc", "unavailable"),
    [
        (RedisConnectionError("refused"), True),
        (RedisTimeoutError("timed out"), True),
        (BusyLoadingError("LOADING Redis is loading the dataset in memory"), True),
        (ConnectionRefusedError(), True),
        (ReadOnlyError("READONLY You can't write against a read only replica."), True),
        (ResponseError("MISCONF Redis is configured to save RDB snapshots"), True),
        (ResponseError("OOM command not allowed when used memory > 'maxmemory'."), True),
        (ResponseError("BUSY Redis is busy running a script."), True),
        (ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"), False),
        (ResponseError("NOGROUP No such key 'x' or consumer group 'g'"), False),
        (ValueError("bug"), False),
    ],
)
def test_which_errors_mean_redis_cannot_serve_now(exc: Exception, unavailable: bool) -> None:
    assert is_unavailable(exc) is unavailable


def test_missing_group_is_recognized() -> None:
    assert is_missing_group(ResponseError("NOGROUP No such key 'k' or consumer group 'g'"))
    assert not is_missing_group(ResponseError("BUSYGROUP Consumer Group name already exists"))


def test_reconnect_delays_grow_to_the_cap_with_jitter() -> None:
    rng = random.Random(7)
    delays = [reconnect_delay(attempt, 0.1, 5.0, rng) for attempt in range(12)]
    for attempt, delay in enumerate(delays):
        full = min(5.0, 0.1 * 2**attempt)
        assert full / 2 <= delay <= full
    assert max(delays) <= 5.0
    assert len({round(d, 6) for d in delays[8:]}) > 1  # capped, but not in lockstep
    assert reconnect_delay(10_000, 0.1, 5.0, rng) <= 5.0  # no overflow on a long outage


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:s3cret@redis:6379/1", "redis://:***@redis:6379/1"),
        ("rediss://hub:s3cret@redis.example/2", "rediss://hub:***@redis.example/2"),
    ],
)
def test_urls_are_logged_without_their_password(url: str, shown: str) -> None:
    assert redacted(url) == shown


@pytest.mark.parametrize(
    "values",
    [
        {"url": "kafka://x"},
        {"url": "redis://x", "block": "5s", "timeout": "5s"},
        {"url": "redis://x", "block": 0},
        {"url": "redis://x", "reclaim_idle": 0},
        {"url": "redis://x", "reconnect_initial": "2s", "reconnect_max": "1s"},
        {"url": "redis://x", "maxlen": 10},
        {"url": "redis://x", "prefix": "has space"},
        {"url": "redis://x", "max_deliveries": 0},
    ],
)
def test_bus_settings_refuse_nonsense(values: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        BusSettings(**values)


def test_bus_settings_accept_redis_urls_and_durations() -> None:
    settings = BusSettings(url="redis://127.0.0.1:6379/2", reclaim_idle="2m", block="500ms")
    assert settings.reclaim_idle == 120 and settings.block == 0.5
    assert BusSettings().url == "memory://"


def test_memory_bus_marks_the_event_after_a_drop_as_missed() -> None:
    async def run() -> list[Received]:
        bus = MemoryBus(maxsize=1, patience=0.01)
        subscription = bus.subscribe(MESSAGES, "dispatch")
        for i in range(3):
            await bus.publish(MESSAGES, OutboxReady(message_id=f"m{i}"))  # m1 dropped
        got = []
        async for received in subscription:
            got.append(received)
            await received.ack()  # a no-op
            if len(got) == 1:
                await bus.publish(MESSAGES, OutboxReady(message_id="m3"))
            else:
                break
        return got

    got = asyncio.run(run())
    assert [r.event.message_id for r in got] == ["m0", "m3"]  # type: ignore[union-attr]
    assert [r.missed for r in got] == [False, True]


def test_msgspec_union_decoding_is_strict() -> None:
    with pytest.raises(msgspec.ValidationError):
        decode_event(b'{"type": "MessageStored"}')
