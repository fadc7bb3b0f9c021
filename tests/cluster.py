"""A real cluster on loopback for the fault suite: a private ``redis-server``, a fresh PostgreSQL
database, N ``channelhub serve`` subprocesses sharing one generated hub.yaml, and HAProxy in
front with plain round robin (the settings of ``deploy/haproxy.cfg``). Every process is stopped
by its PID; a node can be killed with SIGKILL (a crash: nothing flushed, no lease given up) and
started again.

The dispatch owner is read where it is decided, the ``leases`` row in PostgreSQL: its holder
is the owner's node id (``host:pid:random``), which names the subprocess by its PID.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import yaml

from tests.conftest import _HASH, pg_database
from tests.dovecot import free_port
from tests.helpers import IN_CI
from tests.redis_server import RedisServer, require_redis_server

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
SECRET_KEY = "cluster-test-secret-key-0123456789abcdef"
AGENTS = ("alice", "bob", "carol", "dave")


def require_haproxy() -> None:
    """Skip without HAProxy on a laptop; under CI=true a missing haproxy is a failure."""
    if os.path.exists(HAPROXY):
        return
    reason = "haproxy is not installed (apt-get install -y haproxy)"
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


def haproxy_config(port: int, backends: list[int], check_interval: str = "500ms") -> str:
    """deploy/haproxy.cfg (its global and defaults sections: round robin, no stickiness, long
    tunnel timeout for websockets, a refused connection retried on another node) on loopback,
    with a faster health check."""
    template = (Path(__file__).parent.parent / "deploy" / "haproxy.cfg").read_text()
    head, _, _ = template.partition("frontend hub")
    servers = "".join(
        f"    server node{index} 127.0.0.1:{backend} check\n"
        for index, backend in enumerate(backends, 1)
    )
    return (
        f"{head}frontend hub\n    bind 127.0.0.1:{port}\n    default_backend nodes\n\n"
        "backend nodes\n    balance roundrobin\n    option httpchk GET /readyz\n"
        "    http-check expect status 200\n"
        f"    default-server inter {check_interval} fall 2 rise 1\n{servers}"
    )


def hub_config(
    root: Path, storage_url: str, redis_url: str, channels: list[dict[str, Any]]
) -> dict[str, Any]:
    """The one hub.yaml every node runs: PostgreSQL, Redis, short lease and claim times so a
    crash is taken over within seconds."""
    return {
        "server": {"secret_key": SECRET_KEY, "shutdown_timeout": "3s"},
        "storage": {"url": storage_url, "blobs": str(root / "blobs")},
        "bus": {"url": redis_url, "reclaim_idle": "3s", "block": "500ms"},
        "cluster": {
            "lease_ttl": "3s",
            "lease_margin": "300ms",
            "lease_poll": "200ms",
            "outbox_claim": "4s",
        },
        "logging": {"level": "info"},
        "channels": channels,
        "queues": [{"name": "general"}],
        "dispatch": {"offer_timeout": "10s", "disconnect_grace": "2s", "decline_cooldown": "5s"},
        "agents": [
            {"id": agent, "name": agent.title(), "password_hash": _HASH, "max_conversations": 4}
            for agent in AGENTS
        ],
    }


@dataclass
class HubNode:
    """One ``channelhub serve`` subprocess on its own port."""

    name: str
    config: Path
    root: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    killed: bool = False  # by the test: not started again by the supervisor

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        self.starts += 1
        log = open(self.root / f"{self.name}.log", "ab")  # noqa: SIM115 (the child keeps it)
        command = [sys.executable, "-m", "hub.cli", "serve", "--config", str(self.config)]
        self.process = subprocess.Popen(
            [*command, "--port", str(self.port)],
            cwd=self.root,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()

    def kill(self) -> None:
        """SIGKILL: a crash, the process gets no chance to flush, hand back or give up."""
        self.killed = True
        if self.alive:
            assert self.process is not None
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.alive:
            assert self.process is not None
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        path = self.root / f"{self.name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    async def ready(self, session: aiohttp.ClientSession, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive:
                raise RuntimeError(f"{self.name} exited:\n{self.log()[-3000:]}")
            try:
                async with session.get(f"{self.url}/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready in {timeout}s:\n{self.log()[-3000:]}")


@dataclass
class Balancer:
    """HAProxy in the foreground (``-db``), stopped by its PID."""

    root: Path
    backends: list[int]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> None:
        config = self.root / "haproxy.cfg"
        config.write_text(haproxy_config(self.port, self.backends))
        log = open(self.root / "haproxy.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [HAPROXY, "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                text = (self.root / "haproxy.log").read_text(errors="replace")
                raise RuntimeError(f"haproxy exited: {text[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("haproxy did not listen")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


@dataclass
class Cluster:
    nodes: list[HubNode]
    balancer: Balancer
    database: str  # a plain postgresql:// DSN, for asyncpg
    redis: RedisServer
    session: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return self.balancer.url

    @property
    def ws_url(self) -> str:
        return self.balancer.ws_url

    async def query(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        connection = await asyncpg.connect(self.database, timeout=5)
        try:
            return list(await connection.fetch(sql, *args))
        finally:
            await connection.close()

    async def owner(self) -> HubNode | None:
        """The live node holding an unexpired dispatch lease, if any."""
        rows = await self.query(
            "SELECT holder FROM leases WHERE name = 'dispatch' AND expires_at > $1", time.time()
        )
        if not rows or rows[0]["holder"] is None:
            return None
        pid = int(str(rows[0]["holder"]).split(":")[-2])
        return next((node for node in self.nodes if node.alive and node.pid == pid), None)

    async def wait_owner(self, timeout: float = 30, other_than: HubNode | None = None) -> HubNode:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            owner = await self.owner()
            if owner is not None and owner is not other_than:
                return owner
            await asyncio.sleep(0.05)
        raise AssertionError(f"no dispatch owner within {timeout}s{self.logs()}")

    async def agents_connected(self, node: HubNode) -> int:
        """The node's ``channelhub_agents_connected`` gauge: agents with a socket on it."""
        async with self.session.get(f"{node.url}/metrics") as response:
            text = await response.text()
        for line in text.splitlines():
            if line.startswith("channelhub_agents_connected "):
                return int(float(line.split()[1]))
        return 0

    async def restart(self, node: HubNode) -> None:
        node.kill()
        node.killed = False
        node.start()
        await node.ready(self.session)

    async def supervise(self) -> None:
        """Start again a node that exits by itself, as systemd or Docker would: an owner that
        stalled past its term (a loaded machine) shuts down to come back as a standby."""
        while True:
            await asyncio.sleep(0.5)
            for node in self.nodes:
                if node.process is not None and not node.alive and not node.killed:
                    node.start()

    def logs(self) -> str:
        return "".join(f"\n--- {node.name} ---\n{node.log()[-4000:]}" for node in self.nodes)


@asynccontextmanager
async def running_cluster(
    root: Path, channels: list[dict[str, Any]], size: int = 3
) -> AsyncIterator[Cluster]:
    """Redis, a fresh database, ``size`` hub processes and HAProxy; all stopped afterwards."""
    require_redis_server()
    require_haproxy()
    storage_url, drop = await pg_database()  # skips on a laptop without it, fails in CI
    (root / "redis").mkdir(parents=True, exist_ok=True)
    redis = RedisServer(root / "redis")
    redis.start()
    config = root / "hub.yaml"
    config.write_text(yaml.safe_dump(hub_config(root, storage_url, redis.url, channels)))
    nodes = [HubNode(f"node{index}", config, root) for index in range(1, size + 1)]
    balancer = Balancer(root, [node.port for node in nodes])
    session = aiohttp.ClientSession()
    database = storage_url.replace("postgresql+asyncpg://", "postgresql://")
    try:
        # the first node migrates the fresh database alone; the others start together after it
        nodes[0].start()
        await nodes[0].ready(session)
        for node in nodes[1:]:
            node.start()
        for node in nodes[1:]:
            await node.ready(session)
        balancer.start()
        cluster = Cluster(nodes, balancer, database, redis, session)
        supervisor = asyncio.create_task(cluster.supervise())
        try:
            yield cluster
        finally:
            supervisor.cancel()
    finally:
        for node in nodes:
            node.killed = True  # nothing starts them again now
        balancer.stop()
        for node in nodes:
            node.stop()
        await session.close()
        redis.stop()
        await drop()
