"""A node's end of the cluster: its agents' sockets talk to the dispatch owner through it.

Every socket's opening, closing and command becomes an :class:`AgentCall` to the owner (in
process when this node is the owner, else on the bus) and waits for its :class:`CallAnswer`.
What the owner sends to agents arrives on this node's own stream and goes to their sockets.
The node beats every ``cluster.node_beat``, naming the agents it holds; when its stream lost
entries (trimmed, Redis restarted), its agents' sockets are closed so that they reconnect and
get a fresh snapshot (the console's resume).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from hub.bus import Bus, BusUnavailable, Received, Subscription
from hub.bus.node_events import (
    CALLS,
    NODES,
    VISITORS,
    AgentCall,
    AgentFrames,
    CallAnswer,
    NodeBeat,
    Reannounce,
    RulesChanged,
    VisitorFrame,
    node_topic,
)
from hub.cluster.presence import LocalPresence
from hub.console.registry import AgentConnections
from hub.errors import DispatchUnavailable, HubError
from hub.metrics import Metrics

log = logging.getLogger(__name__)

RESYNC_CLOSE = 1012  # "service restart": the console reconnects and resyncs from its snapshot


class Desk(Protocol):
    """The owner's side (``hub.cluster.desk.OwnerDesk``) while this node dispatches."""

    async def handle(self, call: AgentCall) -> CallAnswer: ...

    async def beat(self, beat: NodeBeat) -> None: ...

    async def send(self, agent: str, data: bytes) -> int: ...


VisitorHandler = Callable[[str, str], Awaitable[int]]


class Relay:
    def __init__(
        self,
        bus: Bus,
        node: str,
        connections: AgentConnections,
        metrics: Metrics,
        *,
        beat_every: float,
        call_timeout: float,
        rules: Callable[[], str] = lambda: "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bus = bus
        self.node = node
        self.connections = connections
        self.metrics = metrics
        self.beat_every = beat_every
        self.call_timeout = call_timeout
        self.rules = rules
        self.clock = clock
        self.presence = LocalPresence()
        self.desk: Desk | None = None  # set while this node owns dispatch
        #: a rules revision another node accepted (digest): load it
        self.on_rules: Callable[[str], Awaitable[None]] | None = None
        self._visitors: dict[str, VisitorHandler] = {}
        self._pending: dict[str, asyncio.Future[CallAnswer]] = {}
        self._ids = itertools.count(1)
        self._subscriptions: list[Subscription] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.peers: dict[str, NodeBeat] = {}  # the last beat of every node (readiness)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Follow this node's stream and the others' beats (from now on: nothing missed)."""
        own = self.bus.subscribe(node_topic(self.node))
        nodes = self.bus.subscribe(NODES)
        visitors = self.bus.subscribe(VISITORS)
        self._subscriptions = [own, nodes, visitors]
        self._tasks = [
            asyncio.create_task(self._follow(own, self._on_own), name="relay-own"),
            asyncio.create_task(self._follow(nodes, self._on_nodes), name="relay-nodes"),
            asyncio.create_task(self._follow(visitors, self._on_visitor), name="relay-visitors"),
        ]
        with contextlib.suppress(TimeoutError, HubError):
            async with asyncio.timeout(self.call_timeout):
                await asyncio.gather(*(s.ready() for s in self._subscriptions))
        self._tasks.append(asyncio.create_task(self._beat_loop(), name="relay-beat"))

    async def stop(self) -> None:
        for subscription in self._subscriptions:
            subscription.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for pending in self._pending.values():
            pending.cancel()

    # -- what the console asks ---------------------------------------------------------------

    async def attach(self, agent: str) -> list[bytes]:
        """A socket of ``agent`` opened here: tell the owner; the agent's state frames."""
        present, version = self.presence.opened(agent)
        return await self._call(agent, "attach", present=present, version=version)

    async def detach(self, agent: str) -> None:
        """A socket closed. Not waited for at another node's owner (a node stopping does not
        wait for a dead owner): the owner ignores a lost detach's answer, and the next beat
        says it too."""
        present, version = self.presence.closed(agent)
        with contextlib.suppress(HubError):
            if self.desk is not None:
                await self._call(agent, "detach", present=present, version=version)
                return
            await self.bus.publish(
                CALLS,
                AgentCall(
                    call_id=f"{self.node}/{next(self._ids)}",
                    node=self.node,
                    agent=agent,
                    op="detach",
                    present=present,
                    version=version,
                    deadline=self.clock() + self.call_timeout,
                ),
            )
            self.metrics.cluster_messages.labels("call", "sent").inc()

    async def command(self, agent: str, text: str) -> list[bytes]:
        """Run a client frame at the owner; the frames answering it."""
        present = agent in self.presence.counts
        version = self.presence.versions.get(agent, 0)
        return await self._call(agent, "command", text=text, present=present, version=version)

    async def _call(
        self, agent: str, op: str, *, text: str = "", present: bool, version: int
    ) -> list[bytes]:
        call = AgentCall(
            call_id=f"{self.node}/{next(self._ids)}",
            node=self.node,
            agent=agent,
            op=op,
            text=text,
            present=present,
            version=version,
            deadline=self.clock() + self.call_timeout,
        )
        desk = self.desk
        if desk is not None:  # this node dispatches: no round trip
            answer = await desk.handle(call)
        else:
            answer = await self._remote(call)
        if answer.failed:
            raise DispatchUnavailable(f"the dispatch owner could not act ({op})")
        return [frame.encode() for frame in answer.frames]

    async def _remote(self, call: AgentCall) -> CallAnswer:
        waiting: asyncio.Future[CallAnswer] = asyncio.get_running_loop().create_future()
        self._pending[call.call_id] = waiting
        try:
            await self.bus.publish(CALLS, call)
            self.metrics.cluster_messages.labels("call", "sent").inc()
            async with asyncio.timeout(self.call_timeout):
                answer = await waiting
        except (TimeoutError, BusUnavailable) as exc:
            self.metrics.cluster_calls_failed.inc()
            raise DispatchUnavailable(f"the dispatch owner did not answer ({call.op})") from exc
        finally:
            self._pending.pop(call.call_id, None)
        return answer

    # -- web chat visitors on other nodes ----------------------------------------------------

    def on_visitor(self, instance: str, handler: VisitorHandler) -> None:
        self._visitors[instance] = handler

    async def push_visitor(self, instance: str, visitor: str, text: str) -> None:
        """Hand a chat frame to the visitor's windows on the other nodes."""
        await self.bus.publish(
            VISITORS, VisitorFrame(node=self.node, instance=instance, visitor=visitor, text=text)
        )
        self.metrics.cluster_messages.labels("visitor", "sent").inc()

    async def rules_changed(self, digest: str) -> None:
        with contextlib.suppress(HubError):
            await self.bus.publish(NODES, RulesChanged(node=self.node, digest=digest))

    # -- the streams -------------------------------------------------------------------------

    async def _follow(
        self, subscription: Subscription, handle: Callable[[Received], Awaitable[None]]
    ) -> None:
        async for received in subscription:
            try:
                await handle(received)
            except Exception:
                log.exception("the relay failed to handle %s", received.event)
            await received.ack()

    async def _on_own(self, received: Received) -> None:
        if received.missed:
            self._resync()
        event = received.event
        if isinstance(event, AgentFrames):
            self.metrics.cluster_messages.labels("frames", "received").inc()
            for text in event.frames:
                await self.connections.send(event.agent, text.encode())
        elif isinstance(event, CallAnswer):
            self.metrics.cluster_messages.labels("answer", "received").inc()
            waiting = self._pending.get(event.call_id)
            if waiting is not None and not waiting.done():
                waiting.set_result(event)

    def _resync(self) -> None:
        """Frames for this node's agents were lost: their consoles reconnect and resync."""
        self.metrics.cluster_resyncs.inc()
        log.warning("frames for this node's agents were lost; their consoles resync")
        for links in list(self.connections.links().values()):
            for link in list(links):
                link.close(RESYNC_CLOSE, b"resync")

    async def _on_nodes(self, received: Received) -> None:
        event = received.event
        if isinstance(event, NodeBeat):
            self.peers[event.node] = event
            desk = self.desk
            if desk is not None and event.node != self.node:
                await desk.beat(event)
        elif isinstance(event, Reannounce) and event.node != self.node:
            await self._beat()
        elif (
            isinstance(event, RulesChanged)
            and event.node != self.node
            and self.on_rules is not None
        ):
            await self.on_rules(event.digest)

    async def _on_visitor(self, received: Received) -> None:
        event = received.event
        if isinstance(event, VisitorFrame) and event.node != self.node:
            handler = self._visitors.get(event.instance)
            if handler is not None and await handler(event.visitor, event.text):
                self.metrics.cluster_messages.labels("visitor", "received").inc()

    async def _beat_loop(self) -> None:
        while True:
            await self._beat()
            await asyncio.sleep(self.beat_every)

    async def _beat(self) -> None:
        beat = NodeBeat(
            node=self.node,
            at=self.clock(),
            present=tuple(sorted(self.presence.present())),
            versions=dict(self.presence.versions),
            rules=self.rules(),
            owner=self.desk is not None,
        )
        try:
            await self.bus.publish(NODES, beat)
        except HubError as exc:
            log.warning("this node's beat could not be published: %s", exc)
