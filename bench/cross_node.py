"""Offer latency across nodes: customer message -> offer frame, agent on the dispatch owner's
node vs agent on a standby's node (issue 17).

Two `channelhub serve` processes on PostgreSQL (a fresh database on 127.0.0.1:5432, dropped
afterwards) and a private redis-server on a free port; the first one started holds the
dispatch lease. The customer (web chat) is always on the owner's node, so the two cases
differ only in where the agent's socket is: on the owner (the offer frame goes from dispatch
straight to the socket) or on the standby (it goes through the standby's stream on Redis).
Each sample is a new visitor's first message; the agent accepts and closes the conversation
before the next one, so every offer is a fresh match. The cases alternate sample by sample
(the machine's load affects both alike); the ratio standby/owner is the figure to read.

Usage: python bench/cross_node.py [--samples 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from websockets.asyncio.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = os.environ.get("CHANNELHUB_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
PASSWORD = "bench-password-1"
REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def create_pg_database() -> tuple[str, Callable[[], Any]]:
    import asyncpg

    name = f"bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_ADMIN, timeout=5)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()

    async def drop() -> None:
        admin = await asyncpg.connect(PG_ADMIN, timeout=5)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return f"{base}/{name}", drop


def hub_yaml(root: Path, pg_url: str, redis_url: str) -> Path:
    from hub.auth import hash_password

    hashed = hash_password(PASSWORD)
    path = root / "hub.yaml"
    path.write_text(
        f"""server: {{secret_key: bench-secret-key-0123456789abcdef}}
storage: {{url: "{pg_url}", blobs: "{root / "blobs"}"}}
bus: {{url: "{redis_url}"}}
logging: {{level: warning}}
channels:
  - {{name: webchat, type: webchat, settings: {{rate_per_second: 1000, burst: 1000}}}}
queues: [{{name: general}}]
dispatch: {{offer_timeout: 60s, wrap_up: 0s}}
agents:
  - {{id: owner-agent, name: On the owner, password_hash: '{hashed}', max_conversations: 1}}
  - {{id: standby-agent, name: On a standby, password_hash: '{hashed}', max_conversations: 1}}
"""
    )
    return path


def start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(5)


async def wait_role(session: aiohttp.ClientSession, url: str, role: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            async with session.get(f"{url}/readyz") as answer:
                if (await answer.json()).get("role") == role:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise SystemExit(f"{url} never became {role}")


async def agent_socket(session: aiohttp.ClientSession, url: str, agent: str) -> ClientConnection:
    async with session.post(
        f"{url}/api/login", json={"username": agent, "password": PASSWORD}
    ) as answer:
        token = (await answer.json())["token"]
    socket_ = await connect(url.replace("http", "ws") + "/ws/agent", max_size=2**22)
    await socket_.send(json.dumps({"type": "auth", "token": token}))
    await expect(socket_, "snapshot")
    return socket_


async def expect(socket_: ClientConnection, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(30):
        while True:
            frame = json.loads(await socket_.recv())
            if frame["type"] == kind:
                return dict(frame)


async def presence(socket_: ClientConnection, status: str) -> None:
    await socket_.send(json.dumps({"type": "presence", "status": status}))
    await expect(socket_, "presence")


async def one_offer(owner_url: str, agent: ClientConnection) -> float:
    """A new visitor's first message on the owner's node -> the offer at ``agent``; then the
    agent accepts and closes, so the next sample starts from an idle agent."""
    async with connect(owner_url.replace("http", "ws") + "/ws/chat") as chat:
        await chat.send(json.dumps({"type": "hello"}))
        await expect(chat, "welcome")
        sent = time.perf_counter()
        await chat.send(json.dumps({"type": "message", "client_id": "1", "text": "hello"}))
        offer = await expect(agent, "offer")
        took = time.perf_counter() - sent
    conversation_id = offer["conversation_id"]
    await agent.send(json.dumps({"type": "accept", "conversation_id": conversation_id}))
    await expect(agent, "conversation")
    await agent.send(json.dumps({"type": "close", "conversation_id": conversation_id}))
    await expect(agent, "conversation_closed")
    return took


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"median {statistics.median(values) * 1000:6.1f} ms   p95 {p95 * 1000:6.1f} ms"


async def main(samples: int) -> None:
    pg_url, drop = await create_pg_database()
    root = Path(tempfile.mkdtemp(prefix="cross-node-"))
    redis_port = free_port()
    redis = start(
        [REDIS, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--dir", str(root)],
        root / "redis.log",
    )
    config = hub_yaml(root, pg_url, f"redis://127.0.0.1:{redis_port}/0")
    ports = [free_port(), free_port()]
    hubs: list[subprocess.Popen[bytes]] = []
    try:
        async with aiohttp.ClientSession() as session:
            urls = [f"http://127.0.0.1:{port}" for port in ports]
            for index, port in enumerate(ports):
                cli = [sys.executable, "-m", "hub.cli", "serve", "--config", str(config)]
                hubs.append(start([*cli, "--port", str(port)], root / f"hub{index}.log"))
                await wait_role(session, urls[index], "dispatch owner" if index == 0 else "standby")
            owner_url, standby_url = urls
            on_owner = await agent_socket(session, owner_url, "owner-agent")
            on_standby = await agent_socket(session, standby_url, "standby-agent")
            cases = {"owner": on_owner, "standby": on_standby}
            results: dict[str, list[float]] = {"owner": [], "standby": []}
            for round_ in range(samples + 5):  # the first 5 rounds warm up
                for name, agent in cases.items():
                    other = on_standby if agent is on_owner else on_owner
                    await presence(other, "away")  # only this agent can be offered
                    took = await one_offer(owner_url, agent)
                    await presence(other, "available")
                    if round_ >= 5:
                        results[name].append(took)
            for socket_ in cases.values():
                await socket_.close()
        owner, standby = results["owner"], results["standby"]
        print(f"offer latency, customer message -> offer frame, {samples} samples each")
        print(f"  agent on the owner's node:  {summary(owner)}")
        print(f"  agent on a standby's node:  {summary(standby)}")
        ratio = statistics.median(standby) / statistics.median(owner)
        print(f"  ratio standby/owner (median): {ratio:.2f}x")
    finally:
        for hub in reversed(hubs):
            stop(hub)
        stop(redis)
        await drop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=60)
    asyncio.run(main(parser.parse_args().samples))
