"""The dispatch owner's end: agents' calls from every node in, frames out to their nodes.

Runs only while this process holds the dispatch lease (started after dispatch, stopped
before it). Calls of one agent are handled in order, different agents' side by side. It keeps
the :class:`PresenceTable` from calls and beats, disconnects the agents of a node silent for
``cluster.node_timeout`` (their offers go to others), and on start asks every node to beat at
once, so a new owner knows who is connected within one round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection
from functools import partial
from typing import Protocol

from hub.bus import Bus, Received, Subscription
from hub.bus.node_events import (
    CALLS,
    NODES,
    OWNER_GROUP,
    AgentCall,
    AgentFrames,
    CallAnswer,
    NodeBeat,
    Reannounce,
    node_topic,
)
from hub.cluster.presence import Change, PresenceTable
from hub.cluster.relay import Relay
from hub.errors import HubError
from hub.metrics import Metrics

log = logging.getLogger(__name__)

OPS = frozenset({"attach", "detach", "command"})


class Presence(Protocol):
    """What the desk tells dispatch (``hub.dispatch.service.DispatchService``)."""

    async def connected(self, agent: str) -> None: ...

    async def disconnected(self, agent: str) -> None: ...


class Answers(Protocol):
    """What the desk asks the console (``hub.console.service.Console``)."""

    async def state_frames(self, agent: str) -> list[bytes]: ...

    async def run(self, agent: str, text: str) -> bytes | None: ...


class OwnerDesk:
    def __init__(
        self,
        bus: Bus,
        relay: Relay,
        dispatch: Presence,
        console: Answers,
        metrics: Metrics,
        *,
        agents: Collection[str],
        node_timeout: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bus = bus
        self.relay = relay
        self.node = relay.node
        self.dispatch = dispatch
        self.console = console
        self.agents = frozenset(agents)  # configured agents: calls for anyone else are refused
        self.metrics = metrics
        self.node_timeout = node_timeout
        self.clock = clock
        self.table = PresenceTable(self.node)
        self._chains: dict[str, asyncio.Task[None]] = {}
        self._subscription: Subscription | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._lock = asyncio.Lock()  # presence changes reach dispatch in table order

    async def start(self) -> None:
        """Take this node's own agents in, follow calls, and ask every node to beat."""
        self.table = PresenceTable(self.node)
        now = self.clock()
        local = self.relay.presence
        for agent in sorted(local.present()):
            await self._count(self.table.apply(self.node, agent, True, local.versions[agent], now))
        self.relay.desk = self
        self._subscription = self.bus.subscribe(CALLS, OWNER_GROUP)
        self._tasks = [
            asyncio.create_task(self._follow(self._subscription), name="desk-calls"),
            asyncio.create_task(self._expire_loop(), name="desk-expiry"),
        ]
        with contextlib.suppress(HubError):
            await self.bus.publish(NODES, Reannounce(node=self.node))

    async def stop(self) -> None:
        if self.relay.desk is self:
            self.relay.desk = None
        if self._subscription is not None:
            self._subscription.close()
        tasks = [*self._tasks, *self._chains.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._chains.clear()
        self.metrics.cluster_nodes.set(0)

    # -- frames out --------------------------------------------------------------------------

    async def send(self, agent: str, data: bytes) -> int:
        """One frame to every node holding a socket of ``agent`` (dispatch's sockets)."""
        taken = 0
        for node in sorted(self.table.holders(agent)):
            if node == self.node:
                taken += await self.relay.connections.send(agent, data)
                continue
            try:
                await self.bus.publish(
                    node_topic(node), AgentFrames(agent=agent, frames=(data.decode(),))
                )
            except HubError as exc:  # the console resyncs from its snapshot on reconnect
                log.warning("a frame for %s on %s was not relayed: %s", agent, node, exc)
                continue
            self.metrics.cluster_messages.labels("frames", "sent").inc()
            taken += 1
        return taken

    # -- calls in ----------------------------------------------------------------------------

    async def handle(self, call: AgentCall) -> CallAnswer:
        """Carry a call out; a call the owner cannot act on (an agent not configured here,
        an unknown op, the store failing) is answered ``failed``, never left unanswered."""
        if call.agent not in self.agents or call.op not in OPS:
            log.warning("refusing %s for %r from %s", call.op, call.agent, call.node)
            return CallAnswer(call_id=call.call_id, failed=True)
        try:
            return await self._handle(call)
        except HubError as exc:
            log.error("%s for %s failed: %s", call.op, call.agent, exc)
            return CallAnswer(call_id=call.call_id, failed=True)

    async def _handle(self, call: AgentCall) -> CallAnswer:
        if call.op in ("attach", "detach"):
            async with self._lock:
                now = self.clock()
                changes = self.table.apply(call.node, call.agent, call.present, call.version, now)
                await self._count(changes)
        frames: list[bytes] = []
        if call.op == "attach":
            frames = await self.console.state_frames(call.agent)
        elif call.op == "command":
            answer = await self.console.run(call.agent, call.text)
            frames = [answer] if answer is not None else []
        return CallAnswer(call_id=call.call_id, frames=tuple(f.decode() for f in frames))

    async def beat(self, beat: NodeBeat) -> None:
        async with self._lock:
            changes = self.table.beat(beat.node, set(beat.present), beat.versions, self.clock())
            await self._count(changes)
        self.metrics.cluster_nodes.set(len(self.table.nodes()))

    async def _follow(self, subscription: Subscription) -> None:
        async for received in subscription:
            event = received.event
            if not isinstance(event, AgentCall) or event.deadline < self.clock():
                await received.ack()  # its caller gave up: acting now would surprise it
                continue
            self.metrics.cluster_messages.labels("call", "received").inc()
            previous = self._chains.get(event.agent)
            task = asyncio.create_task(self._answer(event, received, previous))
            self._chains[event.agent] = task
            task.add_done_callback(partial(self._done, event.agent))

    def _done(self, agent: str, task: asyncio.Task[None]) -> None:
        if self._chains.get(agent) is task:
            del self._chains[agent]

    async def _answer(
        self, call: AgentCall, received: Received, previous: asyncio.Task[None] | None
    ) -> None:
        if previous is not None and not previous.done():
            await asyncio.wait([previous])
        try:
            answer = await self.handle(call)
            await self.bus.publish(node_topic(call.node), answer)
            self.metrics.cluster_messages.labels("answer", "sent").inc()
        except Exception:
            log.exception("answering %s for %s failed", call.op, call.agent)
        await received.ack()

    async def _count(self, changes: list[Change]) -> None:
        for change in changes:
            try:
                if change.joined:
                    await self.dispatch.connected(change.agent)
                else:
                    await self.dispatch.disconnected(change.agent)
            except HubError as exc:
                log.warning("dispatch could not count %s: %s", change, exc)

    async def _expire_loop(self) -> None:
        while True:
            await asyncio.sleep(self.node_timeout / 4)
            async with self._lock:
                dead, changes = self.table.expire(self.clock(), self.node_timeout)
                for node in dead:
                    log.warning(
                        "node %s silent for %.1fs: its agents leave", node, self.node_timeout
                    )
                    self.metrics.cluster_nodes_expired.inc()
                await self._count(changes)
            self.metrics.cluster_nodes.set(len(self.table.nodes()))


class OwnerRoute:
    """Dispatch's sockets in the distributed mode: through the desk to whichever node holds
    the agent's sockets while this node dispatches (a standby's dispatch sends nothing)."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    async def send(self, agent: str, data: bytes) -> int:
        desk = self.relay.desk
        if desk is None:
            return await self.relay.connections.send(agent, data)
        return await desk.send(agent, data)
