"""Dispatch through the service: offer -> accept -> close cycles per second, and start-up time.

Service figure: the real :class:`DispatchService` on a real :class:`Store` (SQLite file, WAL,
``synchronous=FULL`` as by default: every write fsynced), the in-memory bus, and A agents that
are in-process notifier sinks (no sockets, no console): every frame an agent receives is
answered by its own task, an ``offer`` with ``accept``, a ``conversation`` with ``close``, so an
agent's answers do not wait for each other. W conversations wait at the start (ingested through
``hub.ingest`` for 2,000 web chat customers, then copied in SQL up to W). Each closed
conversation is queued again the way a customer's new message reopens it (a store write plus a
``MessageStored(reopened=True)`` on the bus), so W stays W while the clock runs. Counted:
assignments whose ``conversation`` frame reached the agent, from the first agent connecting
until ``--seconds`` later. Sticky routing is off (these customers are not returning).

Start-up figure: on the store with W waiting, the time until ``DispatchService.start()`` returns,
until an agent connecting at once gets its first offer, and until the whole backlog is in
memory.

Baseline in the same run: the pure core (:class:`DispatchCore`, no store, no frames) doing the
same cycles on the same numbers of agents and waiting conversations.

Usage: python bench/dispatch.py [--quick] [--agents 10,1000] [--waiting 1000,100000]
                                [--seconds 8] [--queues 50]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import msgspec
from sqlalchemy import text, update

from hub.bus import MESSAGES, MemoryBus, MessageStored
from hub.console.views import ConsoleFrames
from hub.customers.context import customer_contexts
from hub.dispatch.core import DispatchCore, SendOffer
from hub.dispatch.service import DispatchService
from hub.envelope import Direction, Envelope, Identity, ThreadHints
from hub.ingest.stages import Ingest
from hub.metrics import Metrics
from hub.settings import AgentSettings, DispatchSettings, HubSettings, QueueSettings
from hub.store.schema import QUEUED, conversations
from hub.store.store import Store
from rules.decision import Decision, Priority

T = TypeVar("T")
PRIORITIES = ("low", "normal", "high", "urgent")
CUSTOMERS = 2_000
CAPACITY = 10
QUEUES_PER_AGENT = 5
# copied conversations take the ingested rows' columns with these changed (see _multiply)
_COPY_SUFFIX = "'-' || :n"


# -- the pure core, as before: the baseline row ------------------------------------------------


def core_rate(agents: int, queues: int, waiting: int, seconds: float) -> float:
    """Offer -> accept -> close cycles per second of the bare core (no store, no frames)."""
    rng = random.Random(1)
    dispatch = DispatchCore(offer_timeout=30, disconnect_grace=60, decline_cooldown=120)
    names = [f"q{i}" for i in range(queues)]
    for name in names:
        dispatch.add_queue(name)
    for index in range(agents):
        dispatch.add_agent(
            f"a{index}", capacity=CAPACITY, queues=frozenset(rng.sample(names, QUEUES_PER_AGENT))
        )
    queue_of = {f"c{index}": rng.choice(names) for index in range(waiting)}
    for index in range(waiting):
        dispatch.enqueue(f"c{index}", queue_of[f"c{index}"], rng.choice(PRIORITIES), index, 0.0)
    now = 1.0
    offers: list[SendOffer] = []
    for index in range(agents):
        offers += [a for a in dispatch.connect(f"a{index}", now) if isinstance(a, SendOffer)]
    cycles = 0
    start = time.perf_counter()
    while offers and time.perf_counter() - start < seconds:
        offer = offers.pop()
        dispatch.accept(offer.agent, offer.conversation_id, now)
        now += 0.001
        new = dispatch.release(offer.agent, offer.conversation_id, now)
        offers += [a for a in new if isinstance(a, SendOffer)]
        # the closed conversation comes back to its queue (as in the service run): W stays W
        dispatch.enqueue(offer.conversation_id, queue_of[offer.conversation_id], "normal", now, now)
        cycles += 1
    return cycles / (time.perf_counter() - start)


# -- the store with W waiting ------------------------------------------------------------------


def settings_for(agents: int, queues: int) -> HubSettings:
    rng = random.Random(1)
    names = [f"q{i}" for i in range(queues)]
    return HubSettings(
        queues=tuple(QueueSettings(name=name) for name in names),
        default_queue=names[0],
        dispatch=DispatchSettings(offer_timeout=60.0, sticky_wait=0.0),
        agents=tuple(
            AgentSettings(
                id=f"a{index}",
                name=f"Agent {index}",
                password_hash="x",  # type: ignore[arg-type]
                max_conversations=CAPACITY,
                queues=tuple(rng.sample(names, min(QUEUES_PER_AGENT, queues))),
            )
            for index in range(agents)
        ),
    )


async def build_store(path: Path, waiting: int, queues: int) -> None:
    """A store holding ``waiting`` queued conversations over ``queues`` queues."""
    store = Store(
        f"sqlite+aiosqlite:///{path}",
        customer_contexts=customer_contexts,
        sqlite_synchronous="normal",
    )
    await store.start()
    rng = random.Random(2)
    names = [f"q{i}" for i in range(queues)]
    first = min(waiting, CUSTOMERS)

    def decide(envelope: Envelope, customer: object) -> Decision:
        index = int(envelope.idempotency_key[1:])
        return Decision(
            queue=names[index % queues],
            priority=Priority(PRIORITIES[rng.randrange(4)]),
            instructions=("Check the order number first.",),
            tags=("bench",),
            rules=("bench-rule",),
        )

    try:
        ingest = Ingest(store, decide)
        batch = [
            ingest.ingest(
                Envelope(
                    channel="webchat",
                    inbox="web",
                    direction=Direction.INBOUND,
                    idempotency_key=f"k{index}",
                    sender=Identity(kind="webchat", address=f"visitor{index}"),
                    received_at=1_700_000_000.0 + index,
                    thread=ThreadHints(session=f"visitor{index}"),
                    text=f"Hello, where is my order {index}? It has not arrived yet.",
                ),
            )
            for index in range(first)
        ]
        await asyncio.gather(*batch)
        copies = -(-waiting // first) - 1
        async with store.engine.begin() as connection:
            await _multiply(connection, first, copies, waiting - first)
    finally:
        await store.close()


async def _multiply(connection: Any, original: int, copies: int, needed: int) -> None:
    """Copy the ``original`` ingested conversations, each with its message and its customer
    (and the customer's identity), until ``needed`` more exist: every waiting conversation has
    a customer of its own, as in a real backlog."""
    tables = ("customers", "identities", "conversations", "messages")
    columns = {
        table: [row[1] for row in (await connection.execute(text(f"PRAGMA table_info({table})")))]
        for table in tables
    }
    suffixed = {
        "customers": ("id",),
        "identities": ("id", "customer_id", "address"),
        "conversations": ("id", "customer_id", "thread_key"),
        "messages": ("id", "conversation_id", "idempotency_key"),
    }
    chosen = "SELECT id FROM conversations WHERE id NOT LIKE '%-%' ORDER BY id LIMIT :limit"
    owners = f"SELECT customer_id FROM conversations WHERE id IN ({chosen})"
    where = {
        "customers": f"id IN ({owners})",
        "identities": f"customer_id IN ({owners})",
        "conversations": f"id IN ({chosen})",
        "messages": f"conversation_id IN ({chosen})",
    }
    made = 0
    for n in range(1, copies + 1):
        limit = min(needed - made, original)
        for table in tables:
            values = ", ".join(
                f"{name} || {_COPY_SUFFIX}"
                if name in suffixed[table]
                else "queued_at + :n * 0.001"
                if name == "queued_at"
                else name
                for name in columns[table]
            )
            await connection.execute(
                text(
                    f"INSERT INTO {table} ({', '.join(columns[table])}) "
                    f"SELECT {values} FROM {table} WHERE {where[table]}"
                ),
                {"n": n, "limit": limit},
            )
        made += limit
        if made >= needed:
            break


# -- the service run ---------------------------------------------------------------------------


_frames = msgspec.json.Decoder()


class Agents:
    """Notifier sink: every frame an agent gets is answered by its own task."""

    def __init__(self) -> None:
        self.service: DispatchService | None = None
        self.assigned = 0
        self.offers = 0
        self.first_offer = asyncio.get_running_loop().create_future()
        self.errors = 0
        self.running = True
        self.on_closed: Callable[[str, str, str], Awaitable[None]] | None = None
        self.routes: dict[str, tuple[str, str]] = {}  # conversation -> (queue, priority)
        self._tasks: set[asyncio.Task[None]] = set()

    async def send(self, agent: str, data: bytes) -> int:
        message = _frames.decode(data)
        kind = message["type"]
        if kind == "offer":
            self.offers += 1
            self.routes[message["conversation_id"]] = (message["queue"], message["priority"])
            if not self.first_offer.done():
                self.first_offer.set_result(time.perf_counter())
            self._spawn(partial(self._accept, agent, message["conversation_id"]))
        elif kind == "conversation":
            self.assigned += 1
            self._spawn(partial(self._close, agent, message["conversation"]["id"]))
        return 1

    def _spawn(self, work: Callable[[], Awaitable[None]]) -> None:
        if not self.running:
            return
        task = asyncio.ensure_future(work())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, agent: str, conversation_id: str) -> None:
        assert self.service is not None
        try:
            await self.service.accept(agent, conversation_id)
        except Exception:
            self.errors += 1

    async def _close(self, agent: str, conversation_id: str) -> None:
        assert self.service is not None
        try:
            await self.service.close(agent, conversation_id, "resolved")
        except Exception:
            self.errors += 1
            return
        if self.on_closed is not None:
            await self.on_closed(conversation_id, *self.routes.pop(conversation_id))

    async def drain(self) -> None:
        """Stop answering; what is still running is cancelled (the run is over)."""
        self.running = False
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)


async def _reopen(ids: list[str], queued_at: float, connection: Any) -> None:
    await connection.execute(
        update(conversations)
        .where(conversations.c.id.in_(ids))
        .values(status=QUEUED, assignee=None, queued_at=queued_at, updated_at=queued_at)
    )


async def _reopen(ids: list[str], queued_at: float, connection: Any) -> None:
    await connection.execute(
        update(conversations)
        .where(conversations.c.id.in_(ids))
        .values(status=QUEUED, assignee=None, queued_at=queued_at, updated_at=queued_at)
    )


class Reopener:
    """Queues closed conversations again, in their queue, as customers' new messages would: a
    write, then the event on the bus. Like a connector's ingest, what arrives within a few
    milliseconds is written with one job (one statement), so the bench's own writes cost the
    writer little."""

    def __init__(self, store: Store, bus: MemoryBus) -> None:
        self.store = store
        self.bus = bus
        self._pending: dict[str, tuple[str, str]] = {}
        self._flushing: asyncio.Task[None] | None = None

    async def __call__(self, conversation_id: str, queue: str, priority: str) -> None:
        self._pending[conversation_id] = (queue, priority)
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush())

    async def stop(self) -> None:
        if self._flushing is not None:
            self._flushing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flushing

    async def _flush(self) -> None:
        while self._pending:
            await asyncio.sleep(0.002)
            batch, self._pending = self._pending, {}
            queued_at = time.time()
            await self.store.writer.call(partial(_reopen, list(batch), queued_at))
            for conversation_id, (queue, priority) in batch.items():
                await self.bus.publish(
                    MESSAGES,
                    MessageStored(
                        conversation_id=conversation_id,
                        message_id=f"m-{conversation_id}-{queued_at}",
                        direction="inbound",
                        reopened=True,
                        status=QUEUED,
                        queue=queue,
                        priority=priority,
                        queued_at=queued_at,
                        channel="webchat",
                        text="One more thing.",
                        created_at=queued_at,
                    ),
                )
        self._flushing = None


async def within(what: str, work: Awaitable[T], limit: float = 300.0) -> T:
    """``work``, or the run stops saying what hung (make bench must not hang)."""
    try:
        return await asyncio.wait_for(work, limit)
    except TimeoutError:
        raise SystemExit(f"bench/dispatch.py: {what} took over {limit:.0f} s") from None


async def service_rate(
    template: Path, agents: int, queues: int, seconds: float, warmup: float
) -> tuple[float, float, int]:
    """Assignments per second through the service, the process's CPU milliseconds (all
    threads) per assignment while timed, and the errors the agents saw."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "hub.db"
        shutil.copy(template, path)
        store = Store(f"sqlite+aiosqlite:///{path}", customer_contexts=customer_contexts)
        await store.start(run_migrations=False)
        bus = MemoryBus()
        sink = Agents()
        service = DispatchService(
            settings_for(agents, queues), store, bus, ConsoleFrames(sink), Metrics()
        )
        sink.service = service
        sink.on_closed = reopen = Reopener(store, bus)
        await within("start", service.start())
        loaded = getattr(service, "backlog_loaded", None)
        if loaded is not None:
            await within("loading the backlog", loaded.wait())
        for index in range(agents):
            sink._spawn(partial(service.connected, f"a{index}"))
        await asyncio.sleep(warmup)  # every agent's first offers are out, cycles are running
        start, before, cpu = time.perf_counter(), sink.assigned, time.process_time()
        await asyncio.sleep(seconds)
        count = sink.assigned - before
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu
        await within("stopping the agents", sink.drain())
        await within("stopping the reopening", reopen.stop())
        await within("stopping the service", service.stop())
        await within("closing the store", store.close())
        return count / elapsed, cpu * 1000 / max(count, 1), sink.errors


async def startup(template: Path, queues: int) -> tuple[float, float, float]:
    """Seconds from start until start() returned, the first offer arrived, all was loaded."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "hub.db"
        shutil.copy(template, path)
        sink = Agents()
        sink.running = False  # count the first offer, answer nothing
        begin = time.perf_counter()
        store = Store(f"sqlite+aiosqlite:///{path}", customer_contexts=customer_contexts)
        await store.start(run_migrations=False)
        service = DispatchService(
            settings_for(1, queues), store, MemoryBus(), ConsoleFrames(sink), Metrics()
        )
        sink.service = service
        await within("start", service.start())
        returned = time.perf_counter() - begin
        await within("connecting", service.connected("a0"))
        first = await within("the first offer", sink.first_offer) - begin
        loaded = getattr(service, "backlog_loaded", None)
        if loaded is not None:
            await within("loading the backlog", loaded.wait())
        done = time.perf_counter() - begin
        await within("stopping the service", service.stop())
        await within("closing the store", store.close())
        return returned, first, done


async def run(args: argparse.Namespace) -> None:
    agent_counts = [int(x) for x in args.agents.split(",")]
    waiting_counts = [int(x) for x in args.waiting.split(",")]
    print(
        f"# bench/dispatch.py  {time.strftime('%Y-%m-%d')}  {platform.node()}  "
        f"{os.cpu_count()} cpus  python {platform.python_version()}"
    )
    print(
        f"# {args.queues} queues; agents serve {QUEUES_PER_AGENT} queues each, capacity "
        f"{CAPACITY}; {args.seconds:g} s per figure; SQLite synchronous=FULL; agents are "
        "in-process notifier sinks"
    )
    print(
        f"{'waiting':>9}{'agents':>8}{'core cycles/s':>15}{'service assign/s':>18}"
        f"{'core/service':>14}{'cpu ms/a':>12}{'errors':>8}"
    )
    with tempfile.TemporaryDirectory() as directory:
        for waiting in waiting_counts:
            template = Path(directory) / f"template-{waiting}.db"
            began = time.perf_counter()
            await build_store(template, waiting, args.queues)
            print(f"# store with {waiting:,} waiting built in {time.perf_counter() - began:.1f} s")
            for agents in agent_counts:
                core = core_rate(agents, args.queues, waiting, min(args.seconds, 5.0))
                rate, cpu, errors = await service_rate(
                    template, agents, args.queues, args.seconds, args.warmup
                )
                ratio = f"{core / rate:>13,.0f}x" if rate else f"{'-':>14}"
                print(
                    f"{waiting:>9,}{agents:>8,}{core:>15,.0f}{rate:>18,.0f}"
                    f"{ratio}{cpu:>12.2f}{errors:>8,}"
                )
        largest = Path(directory) / f"template-{max(waiting_counts)}.db"
        returned, first, done = await startup(largest, args.queues)
        print(
            f"# start-up with {max(waiting_counts):,} waiting: start() returned after "
            f"{returned:.2f} s, first offer after {first:.2f} s, "
            f"backlog in memory after {done:.2f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", default="10,1000")
    parser.add_argument("--waiting", default="1000,100000")
    parser.add_argument("--queues", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=8.0, help="timed seconds per figure")
    parser.add_argument(
        "--warmup", type=float, default=5.0, help="seconds after the agents connect, not timed"
    )
    parser.add_argument(
        "--quick", action="store_true", help="for make bench: 10,000 waiting at most, 3 s figures"
    )
    # the old core-only bench's option, still in make bench until the Makefile says --quick
    parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.waiting = "1000,10000"
        args.seconds = 3.0
        args.warmup = 2.0
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
