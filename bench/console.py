"""The agent console's read path: hello, opening a conversation, search, at N conversations.

Seeds a store with N conversations of M messages each (synthetic German/English text with a
Zipf-like word frequency, so some words are everywhere and some are rare), starts
``channelhub serve`` on it (pinned to cpu 0) and, from one supervisor client, measures:

- ``ping`` (baseline): a ``ping``/``pong`` round trip on the authenticated agent socket — the
  socket's own cost, which every other figure includes;
- ``hello``: a new socket's connect, ``auth`` and the ``hello`` + ``snapshot`` frames;
- ``open``: ``open`` of a random conversation (read-only, with its timeline events);
- ``search``: ``GET /api/search`` for a common word, a rare word, two words and a customer
  number prefix; baseline: the bare full-text query (the same MATCH / ``@@`` on the same
  database, newest 21 message ids) run directly, no HTTP, no join, no scope.

Each figure is sequential requests from one client: frames/s (= 1 / mean), p50 and p99 in ms.
Usage: python bench/console.py [--conversations 20000] [--messages 5] [--store sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.pipeline import PASSWORD, create_pg_database, free_port, login, start, stop
from hub.search.query import parse
from hub.search.sql import message_hits, parameters
from hub.store.schema import conversations, customers, messages
from hub.store.store import Store

_VOCABULARY = (
    "rechnung paket lieferung bestellung rückruf kündigung adresse zahlung mahnung gutschrift "
    "invoice parcel delivery order callback refund address payment reminder credit late "
    "broken damaged missing wrong twice again please thanks urgent today tomorrow week"
)
WORDS = _VOCABULARY.split()
RARE = [f"zz{n:05d}" for n in range(5000)]  # each in about one message in 5,000


def sentence(rng: random.Random) -> str:
    # Zipf-like: word k of WORDS with weight 1/(k+1); one rare word in a fifth of the texts
    words = rng.choices(WORDS, weights=[1 / (k + 1) for k in range(len(WORDS))], k=12)
    if rng.random() < 0.2:
        words.insert(rng.randrange(len(words)), rng.choice(RARE))
    return " ".join(words).capitalize() + "."


async def seed(url: str, count: int, per: int) -> list[str]:
    """``count`` conversations of ``per`` messages; returns the conversation ids."""
    rng = random.Random(18)
    store = Store(url, sqlite_synchronous="normal")
    await store.start()
    now = time.time() - count * per
    ids = [f"cv{n:08d}" for n in range(count)]
    try:
        for first in range(0, count, 2000):
            chunk = range(first, min(count, first + 2000))

            async def write(connection: Any, chunk: range = chunk) -> None:
                await connection.execute(
                    customers.insert(),
                    [
                        {
                            "id": f"cu{n:08d}",
                            "kind": "customer",
                            "name": f"Kunde {n}",
                            "external_id": f"K{n:07d}",
                            "created_at": now,
                        }
                        for n in chunk
                    ],
                )
                await connection.execute(
                    conversations.insert(),
                    [
                        {
                            "id": ids[n],
                            "customer_id": f"cu{n:08d}",
                            "channel": "webchat",
                            "inbox": "webchat",
                            "status": "closed",
                            "queue": "general",
                            "priority": "normal",
                            "created_at": now + n * per,
                            "updated_at": now + n * per + per,
                        }
                        for n in chunk
                    ],
                )
                await connection.execute(
                    messages.insert(),
                    [
                        {
                            "id": f"m{n:08d}{k:03d}",
                            "conversation_id": ids[n],
                            "kind": "message",
                            "direction": "inbound" if k % 2 == 0 else "outbound",
                            "channel": "webchat",
                            "inbox": "webchat",
                            "idempotency_key": f"m{n}-{k}",
                            "text": sentence(rng),
                            "created_at": now + n * per + k,
                        }
                        for n in chunk
                        for k in range(per)
                    ],
                )

            await store.writer.call(write)
    finally:
        await store.close()
    return ids


def hub_config(directory: Path, port: int, url: str) -> Path:
    from hub.auth import hash_password

    config = directory / "hub.yaml"
    config.write_text(
        f"""server: {{port: {port}, secret_key: bench-secret-0123456789abcdef}}
storage: {{url: "{url}", blobs: "{directory}/blobs"}}
logging: {{level: warning}}
channels: [{{name: webchat, type: webchat}}]
queues: [{{name: general}}]
agents:
  - {{id: sue, name: Sue, role: supervisor, password_hash: '{hash_password(PASSWORD)}'}}
"""
    )
    return config


def summary(samples: list[float]) -> tuple[float, float, float]:
    """frames (or requests) per second, p50 ms, p99 ms"""
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return 1 / statistics.fmean(samples), statistics.median(samples) * 1000, p99 * 1000


async def timed(rounds: int, step: Callable[[int], Awaitable[None]]) -> list[float]:
    samples = []
    for n in range(rounds):
        began = time.perf_counter()
        await step(n)
        samples.append(time.perf_counter() - began)
    return samples


async def measure(
    base: str, token: str, ids: list[str], rounds: int, queries: list[str], url: str
) -> dict[str, list[float]]:
    ws = base.replace("http://", "ws://") + "/ws/agent"
    results: dict[str, list[float]] = {}
    rng = random.Random(7)

    async def recv_type(socket: Any, kind: str) -> dict[str, Any]:
        while True:
            frame = json.loads(await socket.recv())
            if frame["type"] == kind:
                return frame
            if frame["type"] == "error":
                raise SystemExit(f"hub refused: {frame}")

    async with connect(ws, max_size=2**24) as socket:
        await socket.send(json.dumps({"type": "auth", "token": token}))
        await recv_type(socket, "snapshot")

        async def ping(n: int) -> None:
            await socket.send(json.dumps({"type": "ping", "ref": str(n)}))
            await recv_type(socket, "pong")

        async def open_one(n: int) -> None:
            await socket.send(json.dumps({"type": "open", "conversation_id": rng.choice(ids)}))
            await recv_type(socket, "conversation")

        await timed(50, ping)  # warm-up
        results["ping (baseline)"] = await timed(rounds, ping)
        await timed(20, open_one)
        results["open"] = await timed(rounds, open_one)

    async def hello(n: int) -> None:
        async with connect(ws, max_size=2**24) as socket:
            await socket.send(json.dumps({"type": "auth", "token": token}))
            await recv_type(socket, "snapshot")

    results["hello + snapshot"] = await timed(max(20, rounds // 5), hello)

    def http_search(q: str) -> None:
        request = urllib.request.Request(
            f"{base}/api/search?{urllib.parse.urlencode({'q': q})}",
            headers={"Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            json.load(response)

    def http_me() -> None:
        request = urllib.request.Request(
            f"{base}/api/me", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            json.load(response)

    async def me(n: int) -> None:
        await asyncio.to_thread(http_me)

    await timed(5, me)
    results["GET /api/me (HTTP baseline)"] = await timed(rounds // 4, me)

    store = Store(url)  # the bare query, on its own pool, against the same database
    try:
        for q in queries:
            query = parse(q)
            async with store.read() as connection:
                dialect = connection.dialect.name
                bare_stmt = message_hits(dialect).order_by(messages.c.created_at.desc()).limit(21)
                params = parameters(dialect, query)

                async def bare(
                    n: int, stmt: Any = bare_stmt, values: dict[str, str] = params
                ) -> None:
                    (await connection.execute(stmt, values)).all()

                await timed(5, bare)
                results[f"bare FTS {q!r}"] = await timed(rounds // 4, bare)

            async def hub_search(n: int, q: str = q) -> None:
                await asyncio.to_thread(http_search, q)

            await timed(5, hub_search)
            results[f"search {q!r}"] = await timed(rounds // 4, hub_search)
    finally:
        await store.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=20000)
    parser.add_argument("--messages", type=int, default=5, help="per conversation")
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        drop = None
        if args.store == "postgresql":
            url, drop = asyncio.run(create_pg_database())
        else:
            url = f"sqlite+aiosqlite:///{workdir}/hub.db"
        try:
            began = time.perf_counter()
            ids = asyncio.run(seed(url, args.conversations, args.messages))
            seeded = time.perf_counter() - began
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            hub = start(
                [
                    sys.executable,
                    "-m",
                    "hub.cli",
                    "serve",
                    "--config",
                    str(hub_config(workdir, port, url)),
                ],
                workdir,
                f"{base}/readyz",
                workdir / "hub.log",
            )
            try:
                token = login(base, "sue")
                queries = [WORDS[0], RARE[17], f"{WORDS[1]} {WORDS[5]}", "K00001"]
                results = asyncio.run(measure(base, token, ids, args.rounds, queries, url))
            except BaseException:
                print((workdir / "hub.log").read_text()[-4000:], file=sys.stderr)  # the hub's say
                raise
            finally:
                stop(hub)
        finally:
            if drop is not None:
                asyncio.run(drop())
    total = args.conversations * args.messages
    print(
        f"# bench/console.py  {time.strftime('%Y-%m-%d')}  {platform.node()}  "
        f"{os.cpu_count()} cpus  python {platform.python_version()}  store {args.store}"
    )
    print(f"# {args.conversations:,} conversations, {total:,} messages (seeded in {seeded:.0f} s)")
    print(f"{'figure':34}{'per s':>10}{'p50 ms':>10}{'p99 ms':>10}{'p50 ratio':>11}")
    ping = summary(results["ping (baseline)"])[1]
    for name, samples in results.items():
        rate, p50, p99 = summary(samples)
        if name.startswith("search "):
            reference = summary(results["bare FTS " + name.split(" ", 1)[1]])[1]
        elif name.startswith("bare FTS"):
            reference = p50
        else:
            reference = ping
        print(f"{name:34}{rate:>10,.0f}{p50:>10.2f}{p99:>10.2f}{p50 / reference:>11.1f}")
    print("# ratio: against ping (socket figures) or the bare FTS query (search); aim search <= 2x")


if __name__ == "__main__":
    main()
