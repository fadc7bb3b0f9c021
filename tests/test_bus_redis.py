"""The Redis Streams bus against a private ``redis-server`` it may kill: at-least-once delivery,
reclaim of a dead consumer's events, dead letters, bounded streams, outages, hostile entries.

Timings are small settings (``reclaim_idle`` 0.3 s); tests wait for outcomes with a deadline and
never assert how long something took.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from hub.bus import MESSAGES, OUTBOX, BusUnavailable, DeliveryUpdated, OutboxReady, encode_event
from hub.bus.redis_streams import RedisStreamsBus
from hub.metrics import Metrics
from tests.conftest import AGENT_PASSWORD, make_settings
from tests.dovecot import free_port
from tests.helpers import agent_client, chat_client, client_id, login, running_hub
from tests.redis_server import RedisServer
from tests.test_bus import TIMEOUT, Collector, redis_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def server(redis_server: RedisServer) -> RedisServer:
    """The private redis-server of tests.redis_server, under this module's shorter name."""
    return redis_server


@pytest.fixture
async def raw(server: RedisServer) -> AsyncIterator[Any]:
    """A plain client, to look at the streams and to write what the bus never would."""
    client = aioredis.Redis.from_url(server.url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def make_bus(server: RedisServer) -> AsyncIterator[Callable[..., RedisStreamsBus]]:
    buses: list[RedisStreamsBus] = []

    def make(**overrides: Any) -> RedisStreamsBus:
        bus = RedisStreamsBus(redis_settings(server.url, **overrides), Metrics())
        buses.append(bus)
        return bus

    try:
        yield make
    finally:
        for bus in buses:
            await bus.close()


def value(bus: RedisStreamsBus, name: str, **labels: str) -> float:
    sample = bus.metrics.registry.get_sample_value(name, labels)
    return sample or 0.0


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = TIMEOUT) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.02)


def ready(message_id: str) -> OutboxReady:
    return OutboxReady(message_id=message_id)


async def test_metrics_count_what_flows(make_bus: Callable[..., RedisStreamsBus]) -> None:
    bus = make_bus()
    subscription = bus.subscribe(OUTBOX, "outbox")
    await subscription.ready()
    collector = Collector(subscription)
    for i in range(5):
        await bus.publish(OUTBOX, ready(f"m{i}"))
    await collector.take(5)
    await collector.stop()
    await bus.close()  # the last acknowledgements are written
    labels = {"topic": OUTBOX, "group": "outbox"}
    assert value(bus, "channelhub_bus_published_total", topic=OUTBOX) == 5
    assert value(bus, "channelhub_bus_delivered_total", **labels) == 5
    assert value(bus, "channelhub_bus_acked_total", **labels) == 5


async def test_a_dead_consumers_events_are_taken_over(
    make_bus: Callable[..., RedisStreamsBus], raw: Any
) -> None:
    """A consumer reads events and dies before acknowledging them: after reclaim_idle the other
    member of the group gets them (and nothing is acknowledged twice)."""
    dying, survivor = make_bus(), make_bus()
    doomed = dying.subscribe(MESSAGES, "dispatch")
    await doomed.ready()
    reader = Collector(doomed, ack=False)
    publisher = make_bus()
    events = [
        DeliveryUpdated(conversation_id="c", message_id=f"m{i}", status="sent") for i in range(5)
    ]
    for event in events:
        await publisher.publish(MESSAGES, event)
    assert [r.event for r in await reader.take(5)] == events
    reader.task.cancel()  # "killed": no close, no acknowledgement, its connection dropped
    await dying.redis.aclose()

    other = Collector(survivor.subscribe(MESSAGES, "dispatch"))
    taken_over = await other.take(5)
    assert sorted(r.event.message_id for r in taken_over) == [f"m{i}" for i in range(5)]  # type: ignore[union-attr]
    await other.nothing_more(0.5)
    await other.stop()
    await survivor.close()
    assert value(survivor, "channelhub_bus_reclaimed_total", topic=MESSAGES, group="dispatch") == 5
    pending = await raw.xpending("channelhub:messages", "dispatch")
    assert pending["pending"] == 0


async def test_an_event_never_acknowledged_goes_to_the_dead_letter_stream(
    make_bus: Callable[..., RedisStreamsBus], raw: Any
) -> None:
    bus = make_bus(max_deliveries=3)
    collector = Collector(bus.subscribe(OUTBOX, "outbox"), ack=False)
    await collector.subscription.ready()
    await bus.publish(OUTBOX, ready("poison"))
    deliveries = await collector.take(3)  # the first delivery and two retries
    assert {r.id for r in deliveries} == {deliveries[0].id}
    await eventually(lambda: raw.xlen("channelhub:outbox:dead"))
    await collector.nothing_more(1.0)  # not a fourth time
    [(_id, dead)] = await raw.xrange("channelhub:outbox:dead")
    assert dead[b"reason"] == b"max_deliveries"
    assert dead[b"deliveries"] == b"4"
    assert dead[b"source_id"] == deliveries[0].id.encode()
    assert dead[b"field:event"] == encode_event(ready("poison"))
    assert (await raw.xpending("channelhub:outbox", "outbox"))["pending"] == 0
    labels = {"topic": OUTBOX, "group": "outbox", "reason": "max_deliveries"}
    assert value(bus, "channelhub_bus_dead_lettered_total", **labels) == 1
    # and the consumer goes on with the next event
    collector.ack = True
    await bus.publish(OUTBOX, ready("next"))
    [received] = await collector.take(1)
    assert received.event == ready("next")
    await collector.stop()


async def test_garbage_in_the_stream_is_dead_lettered_and_never_stops_a_consumer(
    make_bus: Callable[..., RedisStreamsBus], raw: Any, caplog: pytest.LogCaptureFixture
) -> None:
    bus = make_bus()
    work = Collector(bus.subscribe(OUTBOX, "outbox"))
    broadcast = Collector(bus.subscribe(OUTBOX))
    for collector in (work, broadcast):
        await collector.subscription.ready()
    garbage = [
        {b"event": b"\xff\x00 not json"},
        {b"something": b"else"},
        {b"event": b'{"type": "Unknown"}'},
        {b"event": b'{"type": "OutboxReady", "message_id": ["x"]}'},
        {b"event": b"[" * 100_000},
        {b"event": b"x" * 1_000_000},
    ]
    with caplog.at_level(logging.WARNING):
        await bus.publish(OUTBOX, ready("before"))
        for fields in garbage:
            await raw.xadd("channelhub:outbox", fields)
        await bus.publish(OUTBOX, ready("after"))
        for collector in (work, broadcast):
            got = await collector.take(2)
            assert [r.event for r in got] == [ready("before"), ready("after")]
    dead = await raw.xrange("channelhub:outbox:dead")
    assert len(dead) == len(garbage)
    assert {entry[b"reason"] for _id, entry in dead} == {b"undecodable"}
    assert dead[1][1][b"field:something"] == b"else"
    assert "is not an event" in caplog.text
    assert value(bus, "channelhub_bus_undecodable_total", topic=OUTBOX, group="broadcast") == 6
    for collector in (work, broadcast):
        await collector.stop()


async def test_a_key_that_is_not_a_stream_is_survived(
    make_bus: Callable[..., RedisStreamsBus], raw: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Someone SETs the stream's key to a string: readers log and retry, publish fails (not
    as unavailable: it is a bug to fix), and all recover once the key is a stream again."""
    await raw.set("channelhub:messages", "not a stream")
    bus = make_bus()
    work = Collector(bus.subscribe(MESSAGES, "dispatch"))
    broadcast = Collector(bus.subscribe(MESSAGES))
    with caplog.at_level(logging.ERROR):
        await eventually(lambda: asyncio.sleep(0, "failed; retrying" in caplog.text))
        with pytest.raises(Exception, match="WRONGTYPE"):
            await bus.publish(MESSAGES, ready("x"))
    await raw.delete("channelhub:messages")
    event = DeliveryUpdated(conversation_id="c", message_id="m", status="sent")

    async def delivered() -> bool:
        await bus.publish(MESSAGES, event)
        return not work.received.empty() and not broadcast.received.empty()

    await eventually(delivered)
    for collector in (work, broadcast):
        assert (await collector.take(1))[0].event == event
        await collector.stop()


async def test_concurrent_publishes_fail_or_succeed_each_on_their_own(
    make_bus: Callable[..., RedisStreamsBus], raw: Any
) -> None:
    """Publishes that go out together in one command: a broken stream fails only its own."""
    await raw.set("channelhub:messages", "not a stream")
    bus = make_bus()
    outcomes = await asyncio.gather(
        *(bus.publish(OUTBOX, ready(f"m{i}")) for i in range(5)),
        bus.publish(MESSAGES, ready("broken")),
        return_exceptions=True,
    )
    assert outcomes[:5] == [None] * 5
    assert "WRONGTYPE" in str(outcomes[5])
    assert await raw.xlen("channelhub:outbox") == 5
    assert value(bus, "channelhub_bus_published_total", topic=OUTBOX) == 5


async def test_streams_stay_bounded_and_a_lagging_broadcast_reader_learns_it_missed(
    make_bus: Callable[..., RedisStreamsBus], raw: Any
) -> None:
    bus = make_bus(maxlen=100)
    lagging = bus.subscribe(OUTBOX)
    await lagging.ready()  # positioned, but reads nothing while 1,000 events go by
    for i in range(1000):
        await bus.publish(OUTBOX, ready(f"m{i}"))
    length = await raw.xlen("channelhub:outbox")
    assert 100 <= length < 300  # "~": trimmed by whole nodes of 100 entries
    collector = Collector(lagging)
    first = (await collector.take(1))[0]
    assert first.missed
    assert first.event != ready("m0")
    assert value(bus, "channelhub_bus_gaps_total", topic=OUTBOX) == 1
    rest = await collector.take(length - 1)
    assert not any(r.missed for r in rest)
    assert rest[-1].event == ready("m999")
    await collector.stop()


async def test_trimmed_pending_events_are_counted_as_lost(
    make_bus: Callable[..., RedisStreamsBus], raw: Any
) -> None:
    """A group that lags beyond maxlen loses entries: the bus says so (metric, log), it cannot
    bring them back."""
    bus = make_bus(maxlen=100)
    reader = Collector(bus.subscribe(OUTBOX, "outbox"), ack=False)
    await reader.subscription.ready()
    await bus.publish(OUTBOX, ready("m0"))
    await reader.take(1)  # pending, never acknowledged
    for i in range(1, 400):
        await bus.publish(OUTBOX, ready(f"m{i}"))
    await eventually(
        lambda: asyncio.sleep(
            0, value(bus, "channelhub_bus_lost_total", topic=OUTBOX, group="outbox") >= 1
        )
    )
    await reader.stop()


async def test_publish_raises_bus_unavailable_when_nothing_listens(tmp_path: Path) -> None:
    bus = RedisStreamsBus(redis_settings(f"redis://127.0.0.1:{free_port()}/0"))
    with pytest.raises(BusUnavailable, match="cannot take events now"):
        await bus.publish(OUTBOX, ready("m"))
    assert value(bus, "channelhub_bus_publish_failed_total", topic=OUTBOX) == 1
    subscription = bus.subscribe(OUTBOX, "outbox")
    with pytest.raises(BusUnavailable):
        await subscription.ready()
    await bus.close()


async def test_redis_killed_and_restarted(
    server: RedisServer, make_bus: Callable[..., RedisStreamsBus]
) -> None:
    """kill -9 of a Redis without persistence: publish raises BusUnavailable during the
    outage; subscribers reconnect by themselves, the work group is recreated, the broadcast
    reader says it missed what Redis lost; traffic flows again."""
    bus = make_bus()
    work = Collector(bus.subscribe(OUTBOX, "outbox"))
    broadcast = Collector(bus.subscribe(OUTBOX))
    for collector in (work, broadcast):
        await collector.subscription.ready()
    await bus.publish(OUTBOX, ready("before"))
    for collector in (work, broadcast):
        assert (await collector.take(1))[0].event == ready("before")

    server.kill()
    with pytest.raises(BusUnavailable):
        await bus.publish(OUTBOX, ready("during"))
    await asyncio.sleep(0.3)  # the readers notice and back off (not an assertion on time)
    server.start()

    async def flowing() -> bool:
        try:
            await bus.publish(OUTBOX, ready("after"))
        except BusUnavailable:
            return False
        return not work.received.empty() and not broadcast.received.empty()

    await eventually(flowing)
    for collector in (work, broadcast):
        first = (await collector.take(1))[0]
        assert first.event == ready("after")
    labels = {"topic": OUTBOX, "group": "outbox"}
    assert value(bus, "channelhub_bus_reconnects_total", **labels) >= 1
    assert value(bus, "channelhub_bus_gaps_total", topic=OUTBOX) >= 1
    for collector in (work, broadcast):
        await collector.stop()


async def test_nothing_published_is_lost_while_redis_stays_up(
    make_bus: Callable[..., RedisStreamsBus], raw: Any
) -> None:
    """Every client connection is cut (CLIENT KILL) again and again during traffic, Redis stays
    up: every event publish returned for reaches the work group and every broadcast reader,
    in order. At least once: a publish whose reply was cut is sent again, so an event may
    come twice (handlers are idempotent)."""
    consumers = [make_bus(), make_bus()]
    work = [Collector(node.subscribe(MESSAGES, "dispatch")) for node in consumers]
    broadcast = [Collector(node.subscribe(MESSAGES)) for node in consumers]
    for collector in (*work, *broadcast):
        await collector.subscription.ready()
    publisher = make_bus()
    published: list[str] = []

    async def publish_all() -> None:
        for i in range(300):
            event = DeliveryUpdated(conversation_id="c", message_id=f"m{i}", status="sent")
            while True:
                try:
                    await publisher.publish(MESSAGES, event)
                    break
                except BusUnavailable:
                    await asyncio.sleep(0.01)
            published.append(f"m{i}")
            if i % 20 == 0:
                await asyncio.sleep(0.01)

    async def cut_connections() -> None:
        while len(published) < 300:
            await raw.client_kill_filter(_type="normal", skipme=True)
            await asyncio.sleep(0.05)

    await asyncio.gather(publish_all(), cut_connections())
    seen: set[str] = set()
    async with asyncio.timeout(TIMEOUT * 2):
        while seen != set(published):
            for collector in work:
                while not collector.received.empty():
                    seen.add(collector.received.get_nowait().event.message_id)  # type: ignore[union-attr]
            await asyncio.sleep(0.02)
    for collector in broadcast:
        got: list[str] = []
        async with asyncio.timeout(TIMEOUT * 2):
            while set(got) != set(published):
                got.append((await collector.received.get()).event.message_id)  # type: ignore[union-attr]
        assert list(dict.fromkeys(got)) == published
    for collector in (*work, *broadcast):
        await collector.stop()


async def test_long_gone_consumers_are_forgotten(
    make_bus: Callable[..., RedisStreamsBus], raw: Any
) -> None:
    gone, staying = make_bus(consumer_expiry=0.2), make_bus(consumer_expiry=0.2)
    first = Collector(gone.subscribe(OUTBOX, "outbox"))
    await first.subscription.ready()
    await gone.publish(OUTBOX, ready("m"))
    await first.take(1)
    await first.stop()
    await gone.close()
    second = Collector(staying.subscribe(OUTBOX, "outbox"))

    async def forgotten() -> bool:
        consumers = await raw.xinfo_consumers("channelhub:outbox", "outbox")
        return [c["name"].decode() for c in consumers] == [second.subscription.consumer]  # type: ignore[attr-defined]

    await eventually(forgotten)
    await second.stop()


async def test_a_pending_consumer_is_never_forgotten(
    make_bus: Callable[..., RedisStreamsBus], raw: Any
) -> None:
    """Forgetting a consumer would drop what it has pending: one with pending entries stays
    (its entries are reclaimed instead)."""
    holder = make_bus(consumer_expiry=0.1, reclaim_idle=60)
    reader = Collector(holder.subscribe(OUTBOX, "outbox"), ack=False)
    await reader.subscription.ready()
    await holder.publish(OUTBOX, ready("held"))
    await reader.take(1)
    reader.task.cancel()
    await holder.redis.aclose()
    watcher = make_bus(consumer_expiry=0.1, reclaim_idle=60)
    other = Collector(watcher.subscribe(OUTBOX, "outbox"))
    await asyncio.sleep(0.5)  # several passes of the watcher
    consumers = {
        c["name"].decode(): c["pending"]
        for c in await raw.xinfo_consumers("channelhub:outbox", "outbox")
    }
    assert consumers[reader.subscription.consumer] == 1  # type: ignore[attr-defined]
    await other.stop()


async def test_the_hub_runs_on_the_redis_bus(server: RedisServer, tmp_path: Path) -> None:
    """One hub process on the Redis bus: ingest → dispatch (work group) → offer; reply →
    outbox (work group) → delivery frame (broadcast); all acknowledged."""
    bus = {"url": server.url, "block": "50ms", "timeout": "2s", "reclaim_idle": "2s"}
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}", tmp_path, bus=bus)
    async with running_hub(settings) as hub:
        token = await login(hub, "alice", AGENT_PASSWORD)
        async with (
            agent_client(hub, token) as (agent, _snapshot),
            chat_client(hub, name="Carla") as (customer, _welcome),
        ):
            first = client_id()
            await customer.send(type="message", client_id=first, text="Where is my order?")
            await customer.expect("ack", client_id=first)
            offer = await agent.expect("offer")
            await agent.send(type="accept", conversation_id=offer["conversation_id"])
            await agent.expect("conversation")
            reply_id = client_id()
            await agent.send(
                type="reply",
                conversation_id=offer["conversation_id"],
                client_id=reply_id,
                text="It ships today.",
            )
            reply_ack = await agent.expect("reply_ack", client_id=reply_id)
            assert (await customer.expect("message"))["text"] == "It ships today."
            delivery = await agent.expect("delivery", message_id=reply_ack["message"]["id"])
            assert delivery["status"] == "delivered"
            second = client_id()
            await customer.send(type="message", client_id=second, text="Thanks!")
            await agent.expect("message", where=lambda f: f["message"]["text"] == "Thanks!")
        client = aioredis.Redis.from_url(server.url)

        async def all_acknowledged() -> bool:
            for topic, group in (("messages", "dispatch"), ("outbox", "outbox")):
                info = await client.xinfo_groups(f"channelhub:{topic}")
                [mine] = [g for g in info if g["name"].decode() == group]
                if mine["pending"]:
                    return False
            return True

        try:
            await eventually(all_acknowledged)
        finally:
            await client.aclose()
