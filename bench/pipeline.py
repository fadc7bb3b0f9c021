"""End-to-end pipeline benchmark: chat customers -> hub (durable SQLite) -> agent consoles.

Starts the hub with `channelhub serve` pinned to one core, and in the same run a bare aiohttp
websocket relay as the baseline (same frames, no storage or routing), then drives both with the
same clients from this process (pinned to the other core):

1. throughput: every customer keeps a window of unacknowledged messages in flight; messages/s
   counted from the first send to the last message the agents received;
2. latency at a fixed offered rate (default 1,000 msg/s): p50/p99 of customer send -> agent
   receive.

Usage: python bench/pipeline.py [--customers 100] [--agents 10] [--messages 20000] [--rate 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench-password"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def pin(pid: int, cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > 1:  # type: ignore[operator]
        os.sched_setaffinity(pid, {cpu})


def hub_config(directory: Path, port: int, agents: int, customers: int) -> Path:
    sys.path.insert(0, str(ROOT))
    from hub.auth import hash_password

    hashed = hash_password(PASSWORD)
    capacity = customers // agents + 1
    agent_lines = "\n".join(
        f"  - {{id: agent{i}, name: Agent {i}, password_hash: '{hashed}', "
        f"max_conversations: {capacity}}}"
        for i in range(agents)
    )
    config = directory / "hub.yaml"
    config.write_text(
        f"""server: {{port: {port}, secret_key: bench-secret-0123456789abcdef}}
storage: {{url: "sqlite+aiosqlite:///{directory}/hub.db", blobs: "{directory}/blobs",
          sqlite_synchronous: full}}
logging: {{level: warning}}
channels:
  - name: webchat
    type: webchat
    settings: {{rate_per_second: 100000, burst: 100000}}
dispatch: {{offer_timeout: 60s}}
agents:
{agent_lines}
"""
    )
    return config


def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the server exited during start-up")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not become ready")


@dataclass
class Run:
    received: int = 0
    expected: int = 0
    latencies: list[float] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    first_send: float = 0.0
    last_receive: float = 0.0

    def on_text(self, text: str) -> None:
        now = time.perf_counter()
        try:
            sent = float(text.rsplit(" ", 1)[1])
        except (IndexError, ValueError):
            return  # the conversation-opening message
        self.latencies.append(now - sent)
        self.received += 1
        self.last_receive = now
        if self.received >= self.expected:
            self.done.set()


class Customer:
    def __init__(self, socket: ClientConnection, index: int) -> None:
        self.socket = socket
        self.index = index
        self.acked = asyncio.Event()
        self.in_flight = 0
        self.counter = 0

    async def send(self, text: str) -> None:
        self.counter += 1
        self.in_flight += 1
        await self.socket.send(
            json.dumps(
                {"type": "message", "client_id": f"{self.index}-{self.counter}", "text": text}
            )
        )

    async def read_acks(self) -> None:
        async for raw in self.socket:
            frame = json.loads(raw)
            if frame["type"] == "ack":
                self.in_flight -= 1
                self.acked.set()
            elif frame["type"] == "error":
                raise SystemExit(f"customer {self.index} got {frame}")


async def agent_reader(socket: ClientConnection, run_ref: list[Run], assigned: list[int]) -> None:
    async for raw in socket:
        frame = json.loads(raw)
        kind = frame["type"]
        if kind == "offer":
            await socket.send(
                json.dumps({"type": "accept", "conversation_id": frame["conversation_id"]})
            )
        elif kind == "conversation":
            assigned[0] += 1
        elif kind == "message" and frame["message"].get("direction", "inbound") == "inbound":
            run_ref[0].on_text(frame["message"]["text"])


async def drive(
    customers: list[Customer], run_ref: list[Run], total: int, window: int, rate: float | None
) -> Run:
    run = Run(expected=total)
    run_ref[0] = run
    per_customer = total // len(customers)
    run.expected = per_customer * len(customers)
    run.first_send = time.perf_counter()

    async def pump(customer: Customer) -> None:
        interval = len(customers) / rate if rate else 0.0
        start = time.perf_counter() + (customer.index / len(customers)) * interval
        for n in range(per_customer):
            if rate:
                delay = start + n * interval - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            while customer.in_flight >= window:
                customer.acked.clear()
                await customer.acked.wait()
            await customer.send(f"c{customer.index} {time.perf_counter()!r}")

    await asyncio.gather(*(pump(c) for c in customers))
    await asyncio.wait_for(run.done.wait(), timeout=300)
    return run


def summarize(run: Run) -> dict[str, float]:
    latencies = sorted(run.latencies)
    elapsed = run.last_receive - run.first_send
    return {
        "messages": run.received,
        "msg_per_s": run.received / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


async def measure(
    customer_url: str,
    agent_url: str,
    agent_tokens: list[str | None],
    customers_count: int,
    messages: int,
    rate: float,
    window: int,
    hello: bool,
) -> tuple[dict[str, float], dict[str, float]]:
    run_ref = [Run()]
    assigned = [0]
    async with contextlib.AsyncExitStack() as stack:
        agent_sockets = []
        for token in agent_tokens:
            agent_socket = await stack.enter_async_context(connect(agent_url, max_size=2**24))
            if token is not None:
                await agent_socket.send(json.dumps({"type": "auth", "token": token}))
            agent_sockets.append(agent_socket)
        readers = [asyncio.create_task(agent_reader(s, run_ref, assigned)) for s in agent_sockets]
        customers = []
        for index in range(customers_count):
            url = customer_url.format(index=index)
            customer_socket = await stack.enter_async_context(connect(url))
            if hello:
                await customer_socket.send(json.dumps({"type": "hello"}))
                await customer_socket.recv()  # welcome
            customers.append(Customer(customer_socket, index))
        ack_readers = [asyncio.create_task(c.read_acks()) for c in customers]
        # open the conversations and wait until every one is accepted by an agent
        for customer in customers:
            await customer.send("open")
        if hello:
            deadline = time.monotonic() + 60
            while assigned[0] < customers_count and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        throughput = summarize(await drive(customers, run_ref, messages, window, None))
        paced_total = int(rate * 5)
        latency = summarize(await drive(customers, run_ref, paced_total, window, rate))
        for task in readers + ack_readers:
            task.cancel()
    return throughput, latency


def start(command: list[str], cwd: Path, ready_url: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    pin(process.pid, 0)
    wait_ready(ready_url, process)
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def login(url: str, agent: str) -> str:
    request = urllib.request.Request(
        f"{url}/api/login",
        data=json.dumps({"username": agent, "password": PASSWORD}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(json.load(response)["token"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=100)
    parser.add_argument("--agents", type=int, default=10)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--window", type=int, default=8, help="unacked messages per customer")
    args = parser.parse_args()
    pin(0, 1)
    results = {}
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        port = free_port()
        relay = start(
            [sys.executable, str(ROOT / "bench" / "relay_server.py"), str(port)],
            workdir,
            f"http://127.0.0.1:{port}/healthz",
        )
        try:
            results["baseline"] = asyncio.run(
                measure(
                    f"ws://127.0.0.1:{port}/c?i={{index}}",
                    f"ws://127.0.0.1:{port}/a",
                    [None] * args.agents,
                    args.customers,
                    args.messages,
                    args.rate,
                    args.window,
                    hello=False,
                )
            )
        finally:
            stop(relay)
        port = free_port()
        config = hub_config(workdir, port, args.agents, args.customers)
        hub = start(
            [sys.executable, "-m", "hub.cli", "serve", "--config", str(config)],
            workdir,
            f"http://127.0.0.1:{port}/readyz",
        )
        try:
            tokens: list[str | None] = [
                login(f"http://127.0.0.1:{port}", f"agent{i}") for i in range(args.agents)
            ]
            results["hub"] = asyncio.run(
                measure(
                    f"ws://127.0.0.1:{port}/ws/chat",
                    f"ws://127.0.0.1:{port}/ws/agent",
                    tokens,
                    args.customers,
                    args.messages,
                    args.rate,
                    args.window,
                    hello=True,
                )
            )
        finally:
            stop(hub)
    print(
        f"# bench/pipeline.py  {time.strftime('%Y-%m-%d')}  {platform.node()}  "
        f"{os.cpu_count()} cpus  python {platform.python_version()}"
    )
    print(
        f"# {args.customers} customers, {args.agents} agents, window {args.window}; "
        "server pinned to cpu 0, clients to cpu 1; hub on SQLite synchronous=FULL"
    )
    print(f"{'':28}{'baseline relay':>16}{'channelhub':>14}{'ratio':>8}")
    base_t, base_l = results["baseline"]
    hub_t, hub_l = results["hub"]
    rows = [
        ("throughput msg/s", base_t["msg_per_s"], hub_t["msg_per_s"]),
        ("  p50 ms under max load", base_t["p50_ms"], hub_t["p50_ms"]),
        ("  p99 ms under max load", base_t["p99_ms"], hub_t["p99_ms"]),
        (f"at {args.rate:.0f} msg/s: achieved", base_l["msg_per_s"], hub_l["msg_per_s"]),
        ("  p50 ms", base_l["p50_ms"], hub_l["p50_ms"]),
        ("  p99 ms", base_l["p99_ms"], hub_l["p99_ms"]),
    ]
    for label, base, mine in rows:
        print(f"{label:28}{base:>16.1f}{mine:>14.1f}{mine / base:>8.2f}")


if __name__ == "__main__":
    main()
