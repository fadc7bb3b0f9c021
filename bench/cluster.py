"""The distributed mode end to end: customers' SMS webhooks -> hub node(s) -> agent consoles, in
three configurations measured in one run, plus the failover time of dispatch.

- (a) one node, ``memory://`` bus, PostgreSQL: the baseline;
- (b) one node, Redis Streams bus, PostgreSQL: what the bus on Redis costs end to end;
- (c) two nodes behind HAProxy (round robin), Redis, PostgreSQL: customers through the
  balancer, so half the messages are ingested by the node that does not dispatch.

Each message is a signed Twilio webhook from a new sender (a new conversation); the clock for
a message runs from sending it to the moment an agent's console receives its ``offer``
(customer -> agent latency: ingest, store, bus, dispatch, the offer frame). ``--window``
webhooks are kept in flight (maximum load); msg/s is messages over the time from the first
send to the last offer. Agents accept every offer and close at once, so capacity never runs
out. Agents connect to the dispatching node (found in the ``leases`` table): until agent frames
cross nodes only its agents get offers.

Failover: two nodes with the default lease settings (``lease_ttl 5s``, ``lease_poll 500ms``),
customers writing at ``--failover-rate`` msg/s through HAProxy, then ``kill -9`` of the
dispatch owner; the time from the kill to the first offer an agent gets from the new owner
(work that waited meanwhile). Repeated ``--failovers`` times (the killed node is started again
as a standby each time); the median is reported.

Every process runs from a fresh PostgreSQL database and a private ``redis-server``; all are
stopped by their PID. Usage:
    python bench/cluster.py [--quick] [--messages 2000] [--window 32] [--failovers 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import asyncpg
import yaml
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hub.auth import hash_password  # noqa: E402

PG_ADMIN = os.environ.get("CHANNELHUB_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
ACCOUNT_SID = "AC" + "1" * 32
AUTH_TOKEN = "bench-auth-token-0123456789abcdef"
PUBLIC = "https://hub.example.com"
PASSWORD = "correct horse battery"
AGENTS = 8
LOG_LEVEL = ["warning"]
STATUSES: Counter[int] = Counter()  # webhook answers other than 200 (0: no answer)
BODIES: dict[int, str] = {}  # the first body of each such answer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop(process: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    if process is not None and process.poll() is None:
        os.kill(process.pid, sig)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(5)


@asynccontextmanager
async def database() -> AsyncIterator[str]:
    name = f"chbench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    try:
        yield f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"
    finally:
        admin = await asyncpg.connect(PG_ADMIN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@asynccontextmanager
async def private_redis(root: Path) -> AsyncIterator[str]:
    port = free_port()
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
         "no", "--dir", str(root), "--daemonize", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(500):
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            await asyncio.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(process)


def hub_yaml(root: Path, storage: str, bus: str, lease_ttl: float = 5.0) -> Path:
    """One hub.yaml for every node of a configuration (its own stream prefix on Redis)."""
    agent_hash = hash_password(PASSWORD)
    config = {
        "server": {"secret_key": "bench-secret-key-0123456789abcdef", "shutdown_timeout": "3s"},
        "storage": {"url": storage.replace("postgresql://", "postgresql+asyncpg://")},
        "bus": {"url": bus, "prefix": f"bench-{uuid.uuid4().hex[:8]}"},
        "cluster": {"lease_ttl": lease_ttl, "lease_margin": min(1.0, lease_ttl / 5)},
        "logging": {"level": LOG_LEVEL[0]},
        "channels": [
            {
                "name": "sms",
                "type": "sms",
                "settings": {
                    "account_sid": ACCOUNT_SID,
                    "auth_token": AUTH_TOKEN,
                    "from": "+4930901820",
                    "public_url": PUBLIC,
                    "api_base_url": "http://127.0.0.1:9",
                    "status_callbacks": False,
                },
            }
        ],
        "queues": [{"name": "general"}],
        "dispatch": {"offer_timeout": "30s", "disconnect_grace": "60s"},
        "agents": [
            {
                "id": f"agent{i}",
                "name": f"Agent {i}",
                "password_hash": agent_hash,
                "max_conversations": 25,
            }
            for i in range(AGENTS)
        ],
    }
    path = root / "hub.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@dataclass
class Node:
    config: Path
    root: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.root / f"node-{self.port}.log", "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "hub.cli", "serve", "--config", str(self.config),
                 "--port", str(self.port)],
                cwd=self.root,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )  # fmt: skip

    async def ready(self, session: aiohttp.ClientSession) -> None:
        for _ in range(1200):
            if self.process is None or self.process.poll() is not None:
                log = (self.root / f"node-{self.port}.log").read_text()[-2000:]
                raise SystemExit(f"node exited:\n{log}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{self.url}/readyz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
        raise SystemExit("node not ready in 120 s")


def start_haproxy(root: Path, backends: list[int]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    head = (ROOT / "deploy" / "haproxy.cfg").read_text().partition("frontend hub")[0]
    servers = "".join(f"    server n{i} 127.0.0.1:{b} check\n" for i, b in enumerate(backends))
    config = root / "haproxy.cfg"
    config.write_text(
        f"{head}frontend hub\n    bind 127.0.0.1:{port}\n    default_backend nodes\n"
        "backend nodes\n    balance roundrobin\n    option httpchk GET /readyz\n"
        f"    default-server inter 500ms fall 2 rise 1\n{servers}"
    )
    process = subprocess.Popen(
        [shutil.which("haproxy") or "/usr/sbin/haproxy", "-db", "-f", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        time.sleep(0.02)
    return process, port


async def owner_port(storage: str, nodes: list[Node], other_than: int | None = None) -> int:
    """The port of the node holding the dispatch lease (by the PID in the holder's name)."""
    while True:
        connection = await asyncpg.connect(storage)
        try:
            holder = await connection.fetchval(
                "SELECT holder FROM leases WHERE name = 'dispatch' AND expires_at > $1",
                time.time(),
            )
        except asyncpg.UndefinedTableError:
            holder = None
        finally:
            await connection.close()
        if holder is not None:
            pid = int(str(holder).split(":")[-2])
            for node in nodes:
                alive = node.process is not None and node.process.poll() is None
                if alive and node.process.pid == pid and node.port != other_than:  # type: ignore[union-attr]
                    return node.port
        await asyncio.sleep(0.05)


class Agents:
    """AGENTS consoles: accept every offer, close the conversation at once; ``offered`` maps a
    message number (from the offer's preview) to when its offer arrived."""

    def __init__(self, tokens: list[str], target: Callable[[], Any]) -> None:
        self.tokens = tokens
        self.target = target
        self.offered: dict[int, float] = {}
        self.offers_at: list[tuple[float, float]] = []  # (socket connected, offer arrived)
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self._agent(token)) for token in self.tokens]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _agent(self, token: str) -> None:
        while True:
            with contextlib.suppress(Exception):
                port = await self.target()
                async with connect(f"ws://127.0.0.1:{port}/ws/agent", max_size=2**24) as ws:
                    connected = time.monotonic()
                    await ws.send(json.dumps({"type": "auth", "token": token}))
                    async for raw in ws:
                        frame = json.loads(raw)
                        offers = frame.get("offers", []) if frame["type"] == "snapshot" else []
                        for held in frame.get("conversations", []):  # held before a failover
                            await ws.send(
                                json.dumps({"type": "close", "conversation_id": held["id"]})
                            )
                        if frame["type"] == "offer":
                            offers = [frame]
                        for offer in offers:
                            now = time.monotonic()
                            self.offers_at.append((connected, now))
                            with contextlib.suppress(ValueError, IndexError):
                                self.offered.setdefault(int(offer["preview"].split()[1]), now)
                            await ws.send(json.dumps(
                                {"type": "accept", "conversation_id": offer["conversation_id"]}
                            ))  # fmt: skip
                        if frame["type"] == "conversation":
                            await ws.send(json.dumps(
                                {"type": "close", "conversation_id": frame["conversation"]["id"]}
                            ))  # fmt: skip
            await asyncio.sleep(0.1)


async def login(session: aiohttp.ClientSession, url: str) -> list[str]:
    tokens = []
    for i in range(AGENTS):
        body = {"username": f"agent{i}", "password": PASSWORD}
        async with session.post(f"{url}/api/login", json=body) as response:
            tokens.append(str((await response.json())["token"]))
    return tokens


async def webhook(session: aiohttp.ClientSession, url: str, number: int) -> None:
    sid = "SM" + uuid.uuid4().hex
    fields = {
        "MessageSid": sid, "SmsSid": sid, "SmsMessageSid": sid, "AccountSid": ACCOUNT_SID,
        "From": f"+49152{number:08d}", "To": "+4930901820", "Body": f"bench {number} where is it",
        "NumMedia": "0", "NumSegments": "1", "SmsStatus": "received", "ApiVersion": "2010-04-01",
    }  # fmt: skip
    signature = RequestValidator(AUTH_TOKEN).compute_signature(
        f"{PUBLIC}/channels/sms/inbound", fields
    )
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": str(signature),
    }
    for _ in range(100):  # as Twilio does: again until a 2xx
        status = 0
        with contextlib.suppress(aiohttp.ClientError):
            async with session.post(
                f"{url}/channels/sms/inbound", data=urlencode(fields), headers=headers
            ) as response:
                body = await response.text()
                status = response.status
                BODIES.setdefault(status, body[:160])
        if status == 200:
            return
        STATUSES[status] += 1
        await asyncio.sleep(0.1)
    raise RuntimeError(f"message {number} never accepted")


async def throughput(
    label: str, bus: str, nodes_count: int, messages: int, window: int, root: Path
) -> dict[str, float]:
    async with database() as storage, aiohttp.ClientSession() as session:
        config = hub_yaml(root, storage, bus)
        nodes = [Node(config, root) for _ in range(nodes_count)]
        balancer = None
        try:
            nodes[0].start()
            await nodes[0].ready(session)
            for node in nodes[1:]:
                node.start()
                await node.ready(session)
            url = nodes[0].url
            if nodes_count > 1:
                balancer, port = start_haproxy(root, [node.port for node in nodes])
                url = f"http://127.0.0.1:{port}"

            async def target() -> int:  # one node: it dispatches (memory:// has no lease)
                return nodes[0].port if nodes_count == 1 else await owner_port(storage, nodes)

            agents = Agents(await login(session, url), target)
            agents.start()
            await asyncio.sleep(1.0)  # consoles connected
            sent: dict[int, float] = {}
            queue: asyncio.Queue[int] = asyncio.Queue()
            for number in range(messages):
                queue.put_nowait(number)

            async def sender() -> None:
                while not queue.empty():
                    number = queue.get_nowait()
                    sent[number] = time.monotonic()
                    await webhook(session, url, number)

            began = time.monotonic()
            await asyncio.gather(*(sender() for _ in range(window)))
            while len(agents.offered) < messages:
                await asyncio.sleep(0.01)
            ended = max(agents.offered.values())
            await agents.stop()
        finally:
            stop(balancer)
            for node in nodes:
                stop(node.process)
    latencies = sorted((agents.offered[n] - sent[n]) * 1000 for n in range(messages))
    result = {
        "msg/s": messages / (ended - began),
        "p50 ms": statistics.median(latencies),
        "p99 ms": latencies[int(len(latencies) * 0.99) - 1],
    }
    print(f"{label:<46} {result['msg/s']:>8.1f} {result['p50 ms']:>8.1f} {result['p99 ms']:>8.1f}")
    return result


async def failover(
    redis: str, repeats: int, rate: float, root: Path, lease_ttl: float
) -> list[float]:
    """kill -9 of the owner -> first offer from its successor, ``repeats`` times."""
    times: list[float] = []
    async with database() as storage, aiohttp.ClientSession() as session:
        config = hub_yaml(root, storage, redis, lease_ttl)
        nodes = [Node(config, root) for _ in range(2)]
        balancer = None
        try:
            nodes[0].start()
            await nodes[0].ready(session)
            nodes[1].start()
            await nodes[1].ready(session)
            balancer, port = start_haproxy(root, [node.port for node in nodes])
            url = f"http://127.0.0.1:{port}"
            dead: list[int] = []

            found_at: list[float] = []  # when a console found the new owner

            async def target() -> int:
                port = await owner_port(storage, nodes, dead[-1] if dead else None)
                found_at.append(time.monotonic())
                return port

            agents = Agents(await login(session, url), target)
            agents.start()
            counter = iter(range(10**9))
            stopping = asyncio.Event()
            pending: set[asyncio.Task[None]] = set()

            async def customers() -> None:
                while not stopping.is_set():
                    task = asyncio.create_task(webhook(session, url, next(counter)))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                    await asyncio.sleep(1 / rate)

            restarts: list[int] = []

            async def supervise() -> None:
                """Start again a node that exits by itself (an owner that stalled past its
                term shuts down for its supervisor to restart it), as systemd would."""
                while True:
                    await asyncio.sleep(0.5)
                    for node in nodes:
                        exited = node.process is not None and node.process.poll() is not None
                        if exited and node.port not in dead:
                            restarts.append(node.port)
                            node.start()

            traffic = asyncio.create_task(customers())
            supervisor = asyncio.create_task(supervise())
            try:
                for _ in range(repeats):
                    await asyncio.sleep(2.0)  # work flows
                    owner = await owner_port(storage, nodes)
                    victim = next(n for n in nodes if n.port == owner)
                    killed_at = time.monotonic()
                    stop(victim.process, signal.SIGKILL)
                    dead.append(victim.port)
                    # the first offer on a console connected after the kill (the new owner's)
                    while not (fresh := [at for c, at in agents.offers_at if c > killed_at]):
                        await asyncio.sleep(0.005)
                    took = min(fresh) - killed_at
                    times.append(took)
                    found = min(at for at in found_at if at > killed_at) - killed_at
                    connected = min(c for c, _ in agents.offers_at if c > killed_at) - killed_at
                    print(
                        f"  failover {len(times)}: next offer {took:.2f} s after kill -9 "
                        f"(new owner's lease seen {found:.2f} s, its console with the first "
                        f"offer connected {connected:.2f} s)"
                    )
                    victim.start()  # back as a standby
                    await victim.ready(session)
                    dead.clear()
            finally:
                supervisor.cancel()
                stopping.set()
                await traffic
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                await asyncio.sleep(5)  # the agents take what is left
                await agents.stop()
            connection = await asyncpg.connect(storage)
            rows = await connection.fetch("SELECT status, count(*) FROM conversations GROUP BY 1")
            await connection.close()
            print(f"  conversations at the end: {dict((r[0], r[1]) for r in rows)}")
            if restarts:
                print(f"  nodes that ended their term by themselves (restarted): {len(restarts)}")
        finally:
            stop(balancer)
            for node in nodes:
                stop(node.process)
    return times


async def configurations(args: argparse.Namespace, redis: str, root: Path) -> None:
    a = await throughput(
        "(a) 1 node, memory://, PostgreSQL", "memory://", 1, args.messages, args.window, root
    )
    b = await throughput(
        "(b) 1 node, Redis, PostgreSQL", redis, 1, args.messages, args.window, root
    )
    c = await throughput(
        "(c) 2 nodes + HAProxy, Redis, PostgreSQL", redis, 2, args.messages, args.window, root
    )
    print(
        f"ratio (b)/(a) {b['msg/s'] / a['msg/s']:.2f}  (c)/(a) {c['msg/s'] / a['msg/s']:.2f}"
        "  (aim: (b) >= 0.7 (a))"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="sizes for make bench (~2 min)")
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--failovers", type=int, default=5)
    parser.add_argument("--failover-rate", type=float, default=5.0)
    parser.add_argument("--lease-ttl", type=float, default=5.0, help="cluster.lease_ttl, s")
    parser.add_argument("--failover-only", action="store_true")
    parser.add_argument("--keep", help="keep the nodes' logs (level info) in this directory")
    args = parser.parse_args()
    if args.quick:
        args.messages, args.failovers = 200, 3
    print(
        f"# bench/cluster.py  {time.strftime('%Y-%m-%d')}  {platform.node()}  "
        f"{os.cpu_count()} cpus  load {os.getloadavg()[0]:.1f}  messages {args.messages}  "
        f"window {args.window}"
    )
    print(f"{'configuration':<46} {'msg/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        root.mkdir(parents=True, exist_ok=True)
        LOG_LEVEL[0] = "info" if args.keep else "warning"
        async with private_redis(root) as redis:
            if not args.failover_only:
                await configurations(args, redis, root)
            times = await failover(redis, args.failovers, args.failover_rate, root, args.lease_ttl)
    print(
        f"failover (kill -9 of the dispatch owner -> next offer; lease_ttl {args.lease_ttl:g} s), "
        f"{len(times)} runs: median "
        f"{statistics.median(times):.2f} s, min {min(times):.2f}, max {max(times):.2f} "
        "(aim: < 5 s)"
    )
    if STATUSES:
        print(f"webhooks answered other than 200 (sent again): {dict(STATUSES)}")
        for status in STATUSES:
            print(f"  {status}: {BODIES.get(status, '(no answer)')!r}")


if __name__ == "__main__":
    asyncio.run(main())
