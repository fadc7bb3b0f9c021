"""End-to-end benchmark: the path a user gets, chat customers -> hub -> agent consoles and back.

The hub runs as `channelhub serve` pinned to cpu 0, the clients in this process on cpu 1:

- rules: the example file config/rules.yaml (its business hours made always open, so the
  after-hours auto-reply never fires) and a generated 1,000-rule file (bench/pipeline_rules.py:
  keyword, channel, tier and value rules, most of which never match a line);
- customers with context: the demo CRM (config/demo/*.csv) imported with `channelhub customers
  import`; every bench customer says hello with a signed customer number (web chat
  identity_secret), so every message carries its customer's context through the rules;
- dispatch in the timed path: agents accept offers as they arrive, answer every Nth message
  (agent -> customer latency measured at the customer) and close a conversation after the
  customer's last line in it (`--conversation` lines); the customer's next line opens a new
  conversation, which is offered and accepted inside the timed loop. A customer writes again
  only after the agent closed (a conversation ends when the customer is done);
- stores: SQLite (synchronous=full) and PostgreSQL (a fresh database on 127.0.0.1:5432, dropped
  afterwards).

Each configuration is measured at maximum load (every customer keeps `--window` messages
unacknowledged in flight) and at a fixed offered rate (`--rate`). The clock stops only when every
message sent has reached an agent and every reply its customer; the hub's /metrics gauges are
sampled during the run (peak) and read at the end. The baseline, in the same run: a bare aiohttp
relay (bench/relay_server.py) carrying the same frame traffic (ack, forward, offer/accept,
conversation, reply, close) with no store, rules, context or dispatch.

`BENCH_PROFILE=cprofile` (or `pyinstrument`, if installed) runs each hub under that profiler
and keeps the profile in `--profile-dir`.

Usage: python bench/pipeline.py [--store sqlite|postgresql|both] [--rules example|1000|both]
       [--quick] [--messages 20000] [--rate 1000] [--conversation 20] [--reply-every 5]
       [--keep DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline_rules import QUEUES, ChatLines, rules_file

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench-password"
IDENTITY_SECRET = "bench-identity-secret-0123456789"
DEMO = [ROOT / "config" / "demo" / f"{name}.csv" for name in ("customers", "orders", "invoices")]
DEMO_CUSTOMERS = 300  # K00001..K00300 in config/demo/customers.csv
PG_ADMIN = os.environ.get("CHANNELHUB_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def pin(pid: int, cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(pid, {cpu})


# -- the hub's configuration ----------------------------------------------------------------


def hub_config(
    directory: Path,
    port: int,
    storage_url: str,
    rules_path: Path | None,
    agents: int,
    customers: int,
) -> Path:
    from hub.auth import hash_password

    hashed = hash_password(PASSWORD)
    # room for each agent's share of customers twice over: a returning customer is offered to
    # their last agent first (sticky_wait), who must never be full for it
    capacity = 2 * (customers // agents) + 2
    queue_names = ", ".join(QUEUES)
    agent_lines = "\n".join(
        f"  - {{id: agent{i}, name: Agent {i}, password_hash: '{hashed}', "
        f"max_conversations: {capacity}, queues: [{queue_names}]}}"
        for i in range(agents)
    )
    queue_lines = "\n".join(f"  - name: {name}" for name in QUEUES)
    always = '["00:00-24:00"]'
    week = ", ".join(
        f"{day}: {always}" for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    )
    rules = f'rules: {{path: "{rules_path}"}}' if rules_path else "# no rules file: pass-through"
    config = directory / "hub.yaml"
    config.write_text(
        f"""server: {{port: {port}, secret_key: bench-secret-0123456789abcdef}}
storage: {{url: "{storage_url}", blobs: "{directory}/blobs", sqlite_synchronous: full}}
logging: {{level: warning}}
channels:
  - name: webchat
    type: webchat
    settings: {{rate_per_second: 100000, burst: 100000, identity_secret: {IDENTITY_SECRET}}}
queues:
{queue_lines}
default_queue: general
{rules}
timezone: Europe/Berlin
business_hours:
  # always open: the example rules' after-hours auto-reply would otherwise answer every new
  # conversation outside 08:00-18:00 with one more outbound message
  support: {{weekly: {{{week}}}}}
dispatch: {{offer_timeout: 60s}}
agents:
{agent_lines}
"""
    )
    return config


def write_rules(kind: str, directory: Path) -> Path | None:
    path = directory / "rules.yaml"
    if kind == "none":
        return None
    if kind == "example":
        shutil.copy(ROOT / "config" / "rules.yaml", path)
    else:
        path.write_text(rules_file(int(kind)))
    return path


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


def signed_hello(index: int) -> dict[str, Any]:
    """What a logged-in customer's page sends (docs/webchat.md, "Logged-in customers")."""
    number = f"K{index % DEMO_CUSTOMERS + 1:05d}"
    expires = int(time.time()) + 3600
    signature = hmac.new(
        IDENTITY_SECRET.encode(), f"{number}.{expires}".encode(), hashlib.sha256
    ).hexdigest()
    return {"type": "hello", "customer": number, "expires": expires, "signature": signature}


# -- processes ------------------------------------------------------------------------------


def child_env() -> dict[str, str]:
    """The environment for the servers: this checkout first on the path (then the caller's
    PYTHONPATH, e.g. a sitecustomize that instruments the hub)."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


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


def start(
    command: list[str], cwd: Path, ready_url: str, log: Path | None = None
) -> subprocess.Popen[bytes]:
    with open(log or os.devnull, "wb") as stderr:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=child_env(),
        )
    pin(process.pid, 0)
    wait_ready(ready_url, process)
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
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


def read_gauges(url: str) -> dict[str, float]:
    """Every gauge sample /metrics shows, by its series name with labels."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    gauges = {
        line.split()[2]
        for line in text.splitlines()
        if line.startswith("# TYPE ") and "gauge" in line
    }
    values = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        series, _, value = line.rpartition(" ")
        if series.split("{", 1)[0] in gauges:
            values[series] = float(value)
    return values


# -- the clients ----------------------------------------------------------------------------


@dataclass
class Phase:
    """One timed run: what was sent, what arrived, and when."""

    sent: int = 0
    delivered: int = 0
    in_latencies: list[float] = field(default_factory=list)
    replies_sent: int = 0
    replies_received: int = 0
    reply_errors: int = 0
    refused: int = 0  # customer messages the hub answered with an error (not stored)
    duplicate_replies: int = 0  # replies a customer was shown more than once
    out_latencies: list[float] = field(default_factory=list)
    conversations: int = 0  # accepted in this phase (offer -> accept -> conversation frame)
    closed: int = 0
    sending_done: bool = False
    first_send: float = 0.0
    last_event: float = 0.0
    server_cpu: float = 0.0  # CPU seconds the server used during the phase
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def check(self) -> None:
        if (
            self.sending_done
            and self.delivered >= self.sent
            and self.replies_received >= self.replies_sent
        ):
            self.done.set()


def closed_reason(socket: ClientConnection) -> str:
    """Why the server closed a socket the bench still needed."""
    received = socket.close_rcvd
    if received is None:
        return "socket closed without a close frame"
    return f"socket closed by the server: {received.code} {received.reason!r}"


class Customer:
    def __init__(self, bench: Bench, socket: ClientConnection, index: int) -> None:
        self.bench = bench
        self.socket = socket
        self.index = index
        self.acked = asyncio.Event()
        self.closed = asyncio.Event()
        self.in_flight = 0
        self.counter = 0
        self.lines = ChatLines(seed=index)

    async def say(self, bye_after: int) -> None:
        """One line; ``bye_after`` > 0 marks the conversation's last, with its line count."""
        self.counter += 1
        self.in_flight += 1
        phase = self.bench.phase
        phase.sent += 1
        text = f"{self.lines.line()} |{self.index}|{bye_after}|{time.perf_counter()!r}"
        await self.socket.send(
            json.dumps(
                {"type": "message", "client_id": f"{self.index}-{self.counter}", "text": text}
            )
        )

    async def read(self) -> None:
        async for raw in self.socket:
            frame = json.loads(raw)
            kind = frame["type"]
            if kind == "ack":
                self.in_flight -= 1
                self.acked.set()
            elif kind == "message":
                now = time.perf_counter()
                _, marker, sent = frame["text"].rpartition("|re|")
                if not marker:
                    continue  # an auto-reply; none is expected with business hours always open
                phase = self.bench.phase
                if frame["id"] in self.bench.seen:  # the same reply on the screen twice
                    phase.duplicate_replies += 1
                    self.bench.errors.append(f"customer {self.index}: reply twice: {frame}")
                    continue
                self.bench.seen.add(frame["id"])
                phase.out_latencies.append(now - float(sent))
                phase.replies_received += 1
                phase.last_event = now
                phase.check()
            elif kind == "error":  # not stored: counted as refused, never as delivered
                phase = self.bench.phase
                self.bench.errors.append(f"customer {self.index}: {frame}")
                if frame.get("client_id"):
                    self.in_flight -= 1
                    self.acked.set()
                    phase.sent -= 1
                    phase.refused += 1
                    phase.check()
        self.bench.errors.append(f"customer {self.index}: {closed_reason(self.socket)}")


@dataclass
class Held:
    """An agent's view of one conversation it holds."""

    customer: int | None = None
    seen: int = 0
    bye_after: int = 0
    closing: bool = False


class Agent:
    def __init__(self, bench: Bench, socket: ClientConnection, name: str) -> None:
        self.bench = bench
        self.socket = socket
        self.name = name
        self.held: dict[str, Held] = {}
        self.received = 0
        self.replies = 0

    async def read(self) -> None:
        async for raw in self.socket:
            frame = json.loads(raw)
            kind = frame["type"]
            if kind == "offer":
                await self.socket.send(
                    json.dumps({"type": "accept", "conversation_id": frame["conversation_id"]})
                )
            elif kind == "conversation":
                conversation = frame["conversation"]
                self.bench.phase.conversations += 1
                self.held.setdefault(conversation["id"], Held())
                for message in conversation["messages"]:
                    await self.receive(conversation["id"], message)
            elif kind == "message":
                await self.receive(frame["conversation_id"], frame["message"])
            elif kind == "conversation_closed":
                held = self.held.pop(frame["conversation_id"], None)
                self.bench.phase.closed += 1
                self.bench.phase.last_event = time.perf_counter()
                if held is not None and held.customer is not None:
                    self.bench.customers[held.customer].closed.set()
            elif kind == "error":
                phase = self.bench.phase
                if str(frame.get("ref", "")).startswith("r-"):
                    phase.reply_errors += 1
                    phase.replies_sent -= 1
                    phase.check()
                self.bench.errors.append(f"{self.name}: {frame}")
        self.bench.errors.append(f"{self.name}: {closed_reason(self.socket)}")

    async def receive(self, conversation_id: str, message: dict[str, Any]) -> None:
        if message.get("direction", "inbound") != "inbound":
            return  # our own reply, echoed to every window of ours
        if message["id"] in self.bench.seen:
            return  # in a conversation frame and live as well
        self.bench.seen.add(message["id"])
        now = time.perf_counter()
        _, customer, bye_after, sent = message["text"].rsplit("|", 3)
        phase = self.bench.phase
        phase.in_latencies.append(now - float(sent))
        phase.delivered += 1
        phase.last_event = now
        held = self.held.setdefault(conversation_id, Held())
        held.customer = int(customer)
        held.seen += 1
        held.bye_after = max(held.bye_after, int(bye_after))
        self.received += 1
        every = self.bench.reply_every
        if every and self.received % every == 0 and not held.closing:
            self.replies += 1
            phase.replies_sent += 1
            await self.socket.send(
                json.dumps(
                    {
                        "type": "reply",
                        "conversation_id": conversation_id,
                        "client_id": f"r-{self.name}-{self.replies}",
                        "text": f"Danke, wir kümmern uns darum. |re|{time.perf_counter()!r}",
                    }
                )
            )
        if held.bye_after and held.seen >= held.bye_after and not held.closing:
            held.closing = True  # every line of the conversation is here: done
            await self.socket.send(
                json.dumps({"type": "close", "conversation_id": conversation_id})
            )
        phase.check()


@dataclass
class Bench:
    """What the clients of one target share: the phase being timed, the sockets, the ids seen."""

    reply_every: int
    window: int
    phase: Phase = field(default_factory=Phase)
    customers: list[Customer] = field(default_factory=list)
    agents: list[Agent] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    position: dict[int, int] = field(default_factory=dict)  # lines in the open conversation


async def pump(
    bench: Bench,
    customer: Customer,
    count: int,
    rate: float | None,
    length: int,
    until: float | None,
) -> None:
    """``count`` lines from one customer (paced at ``rate`` overall, if given), stopping early
    at ``until`` (a perf_counter time) if given."""
    interval = len(bench.customers) / rate if rate else 0.0
    start_at = time.perf_counter() + (customer.index / len(bench.customers)) * interval
    for n in range(count):
        if rate:
            delay = start_at + n * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        while customer.in_flight >= bench.window:
            customer.acked.clear()
            await customer.acked.wait()
        if until is not None and time.perf_counter() >= until:
            return
        position = bench.position.get(customer.index, 0) + 1
        if length and position >= length:
            customer.closed.clear()
            await customer.say(bye_after=position)
            bench.position[customer.index] = 0
            await customer.closed.wait()  # the customer writes again once the agent closed
        else:
            bench.position[customer.index] = position
            await customer.say(bye_after=0)


async def run_phase(
    bench: Bench,
    total: int,
    rate: float | None,
    length: int,
    timeout: float,
    send_for: float | None = None,
) -> Phase:
    """Send ``total`` lines (or for ``send_for`` seconds, whichever ends first), then wait
    until every line reached an agent and every reply its customer."""
    phase = Phase()
    bench.phase = phase
    per_customer = total // len(bench.customers)
    phase.first_send = time.perf_counter()
    until = phase.first_send + send_for if send_for else None
    pumps = [
        asyncio.create_task(pump(bench, customer, per_customer, rate, length, until))
        for customer in bench.customers
    ]
    try:
        async with asyncio.timeout(timeout):
            await asyncio.gather(*pumps)
            # a customer blocked on a close the hub was slow to confirm counts as hub time
            phase.last_event = max(phase.last_event, time.perf_counter())
            phase.sending_done = True
            phase.check()
            await phase.done.wait()
    except TimeoutError:
        for task in pumps:
            task.cancel()
        phase.last_event = time.perf_counter()
    return phase


@dataclass
class Target:
    customer_url: str  # with {index}
    agent_url: str
    tokens: list[str | None]
    hello: Callable[[int], dict[str, Any]]
    metrics_url: str | None = None
    pid: int | None = None  # the server's process, for its CPU time


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process (all its threads) so far; 0 if unknown."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Measured:
    phases: dict[str, Phase]
    gauges_peak: dict[str, dict[str, float]]
    gauges_end: dict[str, dict[str, float]]
    errors: list[str]
    log: list[str] = field(default_factory=list)


async def sample_gauges(url: str, peak: dict[str, float]) -> None:
    while True:
        with contextlib.suppress(OSError):
            for series, value in (await asyncio.to_thread(read_gauges, url)).items():
                peak[series] = max(peak.get(series, value), value)
        await asyncio.sleep(0.5)


async def measure(target: Target, args: argparse.Namespace) -> Measured:
    bench = Bench(reply_every=args.reply_every, window=args.window)
    result = Measured({}, {}, {}, bench.errors)
    async with contextlib.AsyncExitStack() as stack:
        for i, token in enumerate(target.tokens):
            agent_socket = await stack.enter_async_context(
                connect(target.agent_url, max_size=2**24, compression=None)
            )
            if token is not None:
                await agent_socket.send(json.dumps({"type": "auth", "token": token}))
            bench.agents.append(Agent(bench, agent_socket, f"agent{i}"))
        for index in range(args.customers):
            customer_socket = await stack.enter_async_context(
                connect(target.customer_url.format(index=index), compression=None)
            )
            await customer_socket.send(json.dumps(target.hello(index)))
            welcome = json.loads(await customer_socket.recv())
            if welcome["type"] != "welcome":
                raise SystemExit(f"customer {index}: expected welcome, got {welcome}")
            bench.customers.append(Customer(bench, customer_socket, index))
        readers = [asyncio.create_task(a.read()) for a in bench.agents]
        readers += [asyncio.create_task(c.read()) for c in bench.customers]
        try:
            # warm-up, not timed: every customer opens a conversation with one line, which an
            # agent accepts; the timed runs go on from there (closing after --conversation lines)
            await run_phase(bench, args.customers, None, args.conversation, args.timeout)
            plan = [
                ("max", args.messages, None, args.send_seconds),
                ("paced", int(args.rate * args.paced_seconds), args.rate, args.paced_seconds),
            ]
            for name, total, rate, send_for in plan:
                peak: dict[str, float] = {}
                sampler = (
                    asyncio.create_task(sample_gauges(target.metrics_url, peak))
                    if target.metrics_url
                    else None
                )
                cpu_before = cpu_seconds(target.pid)
                phase = await run_phase(
                    bench, total, rate, args.conversation, args.timeout, send_for
                )
                phase.server_cpu = cpu_seconds(target.pid) - cpu_before
                if sampler is not None:
                    sampler.cancel()
                    result.gauges_peak[name] = peak
                    result.gauges_end[name] = await asyncio.to_thread(
                        read_gauges, target.metrics_url
                    )
                result.phases[name] = phase
        finally:
            for task in readers:
                task.cancel()
            for task in readers:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
    return result


# -- figures --------------------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * share) - 1)] * 1000


def figures(phase: Phase) -> dict[str, float]:
    elapsed = max(phase.last_event - phase.first_send, 1e-9)
    return {
        "msg_per_s": phase.delivered / elapsed,
        "in_p50": percentile(phase.in_latencies, 0.5),
        "in_p99": percentile(phase.in_latencies, 0.99),
        "out_p50": percentile(phase.out_latencies, 0.5),
        "out_p99": percentile(phase.out_latencies, 0.99),
        "replies_per_s": phase.replies_received / elapsed,
        "conversations_per_s": phase.conversations / elapsed,
        "server_cpu": 100 * phase.server_cpu / elapsed,
        "backlog": (phase.sent - phase.delivered) + (phase.replies_sent - phase.replies_received),
    }


def report(
    label: str, base: Measured, hub: Measured, args: argparse.Namespace
) -> dict[str, dict[str, float]]:
    print(f"\n## {label}")
    print(f"{'':34}{'relay':>12}{'channelhub':>12}{'ratio':>8}")
    out: dict[str, dict[str, float]] = {}
    for name, title in (("max", "max load"), ("paced", f"offered {args.rate:.0f} msg/s")):
        b, h = figures(base.phases[name]), figures(hub.phases[name])
        out[name] = h
        rows = [
            (f"{title}: msg/s to agents", "msg_per_s", "{:.0f}"),
            ("  customer->agent p50 ms", "in_p50", "{:.1f}"),
            ("  customer->agent p99 ms", "in_p99", "{:.1f}"),
            ("  agent->customer p50 ms", "out_p50", "{:.1f}"),
            ("  agent->customer p99 ms", "out_p99", "{:.1f}"),
            ("  replies/s", "replies_per_s", "{:.0f}"),
            ("  conversations accepted/s", "conversations_per_s", "{:.0f}"),
            ("  left undelivered at the end", "backlog", "{:.0f}"),
            ("  server CPU % (of one core)", "server_cpu", "{:.0f}"),
        ]
        for text, key, fmt in rows:
            ratio = h[key] / b[key] if b[key] else float("nan")
            print(f"{text:34}{fmt.format(b[key]):>12}{fmt.format(h[key]):>12}{ratio:>8.2f}")
        phase = hub.phases[name]
        print(
            f"  ({phase.sent} messages, {phase.replies_received} replies, {phase.conversations} "
            f"conversations accepted, {phase.closed} closed, {phase.refused} messages and "
            f"{phase.reply_errors} replies refused, {phase.duplicate_replies} replies shown twice)"
        )
        if h["backlog"]:
            print(f"  NOT DRAINED within {args.timeout:.0f} s: {h['backlog']:.0f} still missing")
    for name in ("max", "paced"):
        peak, end = hub.gauges_peak.get(name, {}), hub.gauges_end.get(name, {})
        shown = sorted(
            s
            for s in set(peak) | set(end)
            if (peak.get(s) or end.get(s)) and not s.split("{")[0].endswith("_created")
        )
        if shown:
            print(
                f"  /metrics gauges ({name}): "
                + ", ".join(f"{s} peak {peak.get(s, 0):g} end {end.get(s, 0):g}" for s in shown)
            )
        else:
            print(f"  /metrics gauges ({name}): all zero (peak and end)")
    if hub.errors:
        print(f"  {len(hub.errors)} problems seen by the clients, first:")
    for error in hub.errors[:5]:
        print(f"  error: {error[:300]}")
    for line in hub.log:
        print(f"  hub log: {line}")
    return out


def log_summary(path: Path) -> list[str]:
    """The hub's warnings and errors, by kind: how many, and one example of each."""
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    kinds: dict[str, list[str]] = {}
    for line in lines:
        for level in (" WARNING ", " ERROR ", " CRITICAL "):
            if level in line:
                message = line.split(level, 1)[1]
                kinds.setdefault(level + re.sub(r"\d+", "N", message)[:70], []).append(line)
    return [f"{len(found)} x {found[0][:300]}" for found in kinds.values()]


def profiler_prefix(label: str, directory: Path) -> list[str]:
    kind = os.environ.get("BENCH_PROFILE", "")
    if not kind:
        return [sys.executable]
    directory.mkdir(parents=True, exist_ok=True)
    if kind == "cprofile":
        return [sys.executable, "-m", "cProfile", "-o", str(directory / f"{label}.prof")]
    if kind == "pyinstrument":  # render later: python -m pyinstrument --load FILE
        session = str(directory / f"{label}.pyisession")
        return [sys.executable, "-m", "pyinstrument", "-r", "pyisession", "-o", session]
    raise SystemExit(f"BENCH_PROFILE must be cprofile or pyinstrument, not {kind!r}")


def run_hub(workdir: Path, store: str, rules: str, args: argparse.Namespace) -> Measured:
    directory = workdir / f"{store}-{rules}"
    directory.mkdir()
    drop: Callable[[], Any] | None = None
    if store == "sqlite":
        url = f"sqlite+aiosqlite:///{directory}/hub.db"
    else:
        url, drop = asyncio.run(create_pg_database())
    try:
        port = free_port()
        config = hub_config(
            directory, port, url, write_rules(rules, directory), args.agents, args.customers
        )
        subprocess.run(
            [
                sys.executable,
                "-m",
                "hub.cli",
                "customers",
                "import",
                *map(str, DEMO),
                "--config",
                str(config),
            ],
            cwd=directory,
            check=True,
            stdout=subprocess.DEVNULL,
            env=child_env(),
        )
        prefix = profiler_prefix(f"hub-{store}-{rules}", Path(args.profile_dir).resolve())
        hub = start(
            [*prefix, "-m", "hub.cli", "serve", "--config", str(config)],
            directory,
            f"http://127.0.0.1:{port}/readyz",
            directory / "hub.log",
        )
        try:
            base = f"http://127.0.0.1:{port}"
            tokens: list[str | None] = [login(base, f"agent{i}") for i in range(args.agents)]
            target = Target(
                f"ws://127.0.0.1:{port}/ws/chat",
                f"ws://127.0.0.1:{port}/ws/agent",
                tokens,
                (lambda index: {"type": "hello"}) if args.anonymous else signed_hello,
                f"{base}/metrics",
                hub.pid,
            )
            measured = asyncio.run(measure(target, args))
        finally:
            stop(hub)
        measured.log = log_summary(directory / "hub.log")
        return measured
    finally:
        if drop is not None:
            asyncio.run(drop())


# sizes: full (what bench/RESULTS.md quotes) and --quick (`make bench`, all four hubs < 90 s
# even for a hub at ~100 msg/s: fewer customers and shorter conversations bound what can be
# waiting for delivery when sending stops)
FULL = {
    "customers": 100,
    "agents": 10,
    "messages": 20_000,
    "send_seconds": None,
    "paced_seconds": 10.0,
    "conversation": 20,
    "timeout": 300.0,
}
QUICK = {
    "customers": 50,
    "agents": 5,
    "messages": 20_000,
    "send_seconds": 2.0,
    "paced_seconds": 2.0,
    "conversation": 10,
    "timeout": 60.0,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--rules",
        choices=["example", "1000", "both", "none"],
        default="both",
        help="none: no rules file (pass-through), to see what rules cost",
    )
    parser.add_argument(
        "--anonymous", action="store_true", help="unsigned hellos: no customer context"
    )
    parser.add_argument("--quick", action="store_true", help="a size for `make bench` (< 90 s)")
    parser.add_argument("--customers", type=int, help="full 100, quick 50")
    parser.add_argument("--agents", type=int, help="full 10, quick 5")
    parser.add_argument("--messages", type=int, help="lines at max load (20,000)")
    parser.add_argument(
        "--send-seconds", type=float, help="stop sending at max load after this (quick 2)"
    )
    parser.add_argument("--rate", type=float, default=1000.0, help="offered msg/s, paced run")
    parser.add_argument("--paced-seconds", type=float, help="paced run length (full 10, quick 2)")
    parser.add_argument("--window", type=int, default=8, help="unacked messages per customer")
    parser.add_argument(
        "--conversation",
        type=int,
        help="lines per conversation (full 20, quick 10; 0: never closed)",
    )
    parser.add_argument(
        "--reply-every", type=int, default=5, help="agents answer every Nth line (0: never)"
    )
    parser.add_argument("--timeout", type=float, help="per run, seconds (full 300, quick 60)")
    parser.add_argument(
        "--profile-dir", default="bench-profiles", help="where BENCH_PROFILE keeps profiles"
    )
    parser.add_argument("--keep", help="work in this directory and keep it (logs, databases)")
    args = parser.parse_args()
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    stores = ["sqlite", "postgresql"] if args.store == "both" else [args.store]
    rule_sets = ["example", "1000"] if args.rules == "both" else [args.rules]
    who = "anonymous visitors" if args.anonymous else "demo CRM, signed hello"
    sys.path.insert(0, str(ROOT))
    pin(0, 1)
    started = time.monotonic()
    hubs: dict[tuple[str, str], Measured] = {}
    with tempfile.TemporaryDirectory() as temporary:
        workdir = Path(args.keep or temporary)
        workdir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        relay = start(
            [sys.executable, str(ROOT / "bench" / "relay_server.py"), str(port)],
            workdir,
            f"http://127.0.0.1:{port}/healthz",
        )
        try:
            baseline = asyncio.run(
                measure(
                    Target(
                        f"ws://127.0.0.1:{port}/c?i={{index}}",
                        f"ws://127.0.0.1:{port}/a",
                        [None] * args.agents,
                        lambda index: {"type": "hello"},
                        pid=relay.pid,
                    ),
                    args,
                )
            )
        finally:
            stop(relay)
        for store in stores:
            for rules in rule_sets:
                hubs[store, rules] = run_hub(workdir, store, rules, args)
    print(
        f"# bench/pipeline.py  {time.strftime('%Y-%m-%d')}  {platform.node()}  "
        f"{os.cpu_count()} cpus  python {platform.python_version()}  "
        f"({time.monotonic() - started:.0f} s)"
    )
    print(
        f"# {args.customers} customers ({who}), {args.agents} agents; window "
        f"{args.window}; {args.conversation} lines per conversation, a reply to every "
        f"{args.reply_every}th; max load: {args.messages} lines"
        + (f" or {args.send_seconds:g} s of sending" if args.send_seconds else "")
        + f"; {args.rate:.0f} msg/s "
        f"for {args.paced_seconds:.0f} s paced; hub on cpu 0, clients on cpu 1; SQLite "
        "synchronous=full; business hours always open"
    )
    summary = {}
    for (store, rules), measured in hubs.items():
        label = f"{store}, " + {"example": "example rules", "none": "no rules file"}.get(
            rules, f"{rules} rules"
        )
        summary[label] = report(label, baseline, measured, args)
    relay_max = figures(baseline.phases["max"])["msg_per_s"]
    print(
        "\n## against the aims (SQLite >= 5,000 msg/s and p99 < 50 ms at 1,000 msg/s; "
        "PostgreSQL >= 2,000 msg/s)"
    )
    for label, result in summary.items():
        aim = 5000 if label.startswith("sqlite") else 2000
        paced_ok = result["paced"]["in_p99"] < 50 and result["paced"]["backlog"] == 0
        verdict = "met" if result["max"]["msg_per_s"] >= aim else "MISSED"
        line = (
            f"{label:24} {result['max']['msg_per_s']:>7.0f} msg/s ({verdict}, ratio "
            f"{result['max']['msg_per_s'] / relay_max:.2f} to the relay)"
        )
        if label.startswith("sqlite"):
            line += (
                f"; p99 at {args.rate:.0f} msg/s {result['paced']['in_p99']:.1f} ms "
                f"({'met' if paced_ok else 'MISSED'})"
            )
        print(line)


if __name__ == "__main__":
    main()
