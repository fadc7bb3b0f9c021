"""The bus alone: publish → consume on ``memory://`` and on Redis Streams, in one run.

Events are ``MessageStored`` as ingest publishes them (100 characters of text), published by P
concurrent publishers (as concurrent ingests do) to a work group of one consumer that
acknowledges each event after taking it (as dispatch does). Two figures per bus:

- throughput: N events as fast as the publishers go, msg/s from the first publish to the last
  event consumed (and p50/p99 latency under that load: mostly queueing);
- latency at a steady offered rate (default 2,000 msg/s, well below both maxima): p50/p99 from
  publish to the consumer, which is what a customer's message waits for in the bus.

Redis is a private ``redis-server`` on a free loopback port in a temp dir (no persistence,
like the test fixture), or ``--redis-url``. The ratio is Redis / memory.

Usage: python bench/bus.py [--quick] [--events 100000] [--publishers 8] [--rate 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis.asyncio as aioredis

from hub.bus import MESSAGES, Bus, MemoryBus, MessageStored, create_bus
from hub.settings import BusSettings

TEXT = "Hello, I ordered a blue kettle last week and it has still not arrived; order 4711." * 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def private_redis() -> AsyncIterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (or pass --redis-url)")
    port = free_port()
    with tempfile.TemporaryDirectory() as root:
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
             "no", "--dir", root, "--daemonize", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            for _ in range(500):
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        break
                except OSError:
                    await asyncio.sleep(0.01)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait(10)


LAST_CPU = [0.0]  # this process's CPU seconds per event in the last run (not Redis's)


def event(i: int) -> MessageStored:
    return MessageStored(
        conversation_id=f"c{i % 5000}",
        message_id=f"m{i}",
        direction="inbound",
        conversation_created=i % 5000 == i,
        queue="general",
        priority="normal",
        channel="webchat",
        text=TEXT,
        created_at=time.perf_counter(),  # the publish time, read back by the consumer
    )


async def run(
    bus: Bus, count: int, publishers: int, rate: float | None
) -> tuple[float, list[float]]:
    """msg/s from the first publish to the last event consumed, and each event's latency."""
    subscription = bus.subscribe(MESSAGES, "dispatch")
    await subscription.ready()
    latencies: list[float] = []
    done = asyncio.Event()

    async def consume() -> None:
        async for received in subscription:
            latencies.append(time.perf_counter() - received.event.created_at)  # type: ignore[union-attr]
            await received.ack()
            if len(latencies) == count:
                done.set()

    async def publish(start: int, step: int, began: float) -> None:
        for n, i in enumerate(range(start, count, step)):
            if rate is not None:  # paced: event i is due at began + i / rate
                delay = began + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            await bus.publish(MESSAGES, event(i))
            if rate is None and n % 64 == 63:
                await asyncio.sleep(0)  # the memory bus never yields while there is room

    consumer = asyncio.create_task(consume())
    cpu = time.process_time()
    began = time.perf_counter()
    await asyncio.gather(*(publish(p, publishers, began) for p in range(publishers)))
    await asyncio.wait_for(done.wait(), 120)
    elapsed = time.perf_counter() - began
    LAST_CPU[0] = (time.process_time() - cpu) / count
    subscription.close()
    consumer.cancel()
    await asyncio.gather(consumer, return_exceptions=True)
    return count / elapsed, latencies


def quantiles(latencies: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[98] * 1000


async def measure(url: str, args: argparse.Namespace) -> dict[str, float]:
    figures: dict[str, float] = {}
    for label, count, rate in (
        ("max", args.events, None),
        ("paced", int(args.rate * args.seconds), args.rate),
    ):
        settings = BusSettings(url=url) if url != "memory://" else None
        bus: Bus = create_bus(settings) if settings is not None else MemoryBus()
        try:
            await run(bus, min(2000, count), args.publishers, None)  # warm-up
            per_second, latencies = await run(bus, count, args.publishers, rate)
            figures[f"{label}_cpu"] = LAST_CPU[0] * 1e6
        finally:
            await bus.close()
        p50, p99 = quantiles(latencies)
        figures[f"{label}_rate"] = per_second
        figures[f"{label}_p50"] = p50
        figures[f"{label}_p99"] = p99
    return figures


async def round_trip_ms(url: str) -> float:
    """Median PING time: what every Redis round trip costs on this machine right now."""
    client = aioredis.Redis.from_url(url)
    try:
        times = []
        for _ in range(300):
            began = time.perf_counter()
            await client.ping()
            times.append(time.perf_counter() - began)
    finally:
        await client.aclose()
    return statistics.median(times) * 1000


async def main_async(args: argparse.Namespace) -> None:
    memory = await measure("memory://", args)
    if args.redis_url:
        redis = await measure(args.redis_url, args)
        ping = await round_trip_ms(args.redis_url)
    else:
        async with private_redis() as url:
            redis = await measure(url, args)
            ping = await round_trip_ms(url)
    print(
        f"# {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; {args.events:,} events, "
        f"{args.publishers} publishers, work group of one consumer acking each event; "
        f"Redis PING median {ping:.2f} ms"
    )
    print(f"{'':34}{'memory://':>12}{'redis':>12}{'ratio':>8}")
    rows = [
        ("throughput, msg/s", "max_rate"),
        ("  hub CPU µs per event at max load", "max_cpu"),
        ("  p50 / p99 ms under max load", None),
        (f"p50 ms at {args.rate:,.0f} msg/s offered", "paced_p50"),
        (f"p99 ms at {args.rate:,.0f} msg/s offered", "paced_p99"),
        ("  achieved msg/s at that rate", "paced_rate"),
    ]
    for label, key in rows:
        if key is None:
            mem = f"{memory['max_p50']:.1f} / {memory['max_p99']:.1f}"
            red = f"{redis['max_p50']:.1f} / {redis['max_p99']:.1f}"
            print(f"{label:34}{mem:>12}{red:>12}")
            continue
        ratio = redis[key] / memory[key] if memory[key] else float("nan")
        print(f"{label:34}{memory[key]:>12,.1f}{redis[key]:>12,.1f}{ratio:>8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--publishers", type=int, default=8)
    parser.add_argument("--rate", type=float, default=2000.0, help="offered msg/s, paced run")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the paced run")
    parser.add_argument("--redis-url", help="an existing Redis instead of a private one")
    parser.add_argument("--quick", action="store_true", help="20,000 events, 2 s paced")
    args = parser.parse_args()
    if args.quick:
        args.events, args.seconds = 20_000, 2.0
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
