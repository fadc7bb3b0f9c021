"""The async shell around :class:`DispatchCore`: agents' requests, bus events and deadlines in,
actions carried out (``hub.dispatch.actions``) and notices to agents out.

The core decides synchronously; the service feeds it what happens (an agent connects, accepts,
closes; a message is stored; a deadline passes) and launches what it decides. Correctness does
not rest on holding a lock: the store assigns only a conversation that is still queued (one
conditional update), and closes only one the closing agent holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, cast

from hub import permissions
from hub.bus import (
    DELIVERIES,
    MESSAGES,
    Bus,
    CallUpdated,
    CustomerPresence,
    DeliveryUpdated,
    MessageStored,
    Subscription,
)
from hub.dispatch.abandonment import AbandonmentTimers
from hub.dispatch.actions import ActionRunner, settled_all, skills_of
from hub.dispatch.backlog import DEFAULT_URGENCY, URGENCY, Backlog
from hub.dispatch.config import configured_core
from hub.dispatch.core import Action, Presence
from hub.dispatch.notices import Audience, Closed, MessageAdded, Notice, QueueState
from hub.dispatch.outgoing import AgentLines
from hub.dispatch.sla import ServiceLevels
from hub.dispatch.work import InFlight
from hub.errors import Forbidden, InvalidState, NotFound
from hub.metrics import Metrics
from hub.settings import HubSettings
from hub.store.records import ConversationSummary
from hub.store.schema import ASSIGNED, QUEUED
from hub.store.store import Store

log = logging.getLogger(__name__)

TIMER_COALESCE = 0.02  # seconds; deadlines are whole seconds apart, this loses nothing
BACKLOG_PAGE = 1000  # queued conversations read at start-up per page
GC_YOUNG = 50_000  # allocations between young-generation collections (Python's default: 700)
MAX_IN_FLIGHT = 20_000  # actions being carried out before the bus follower waits


class DispatchService:
    """Runs the core against the store, the bus and the agents (``audience``)."""

    def __init__(
        self,
        settings: HubSettings,
        store: Store,
        bus: Bus,
        audience: Audience,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.core = configured_core(settings)
        self.queues = [queue.name for queue in settings.queues]
        self.store = store
        self.bus = bus
        self.metrics = metrics
        self.clock = clock
        self._subscriptions: list[Subscription] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self.work = InFlight(MAX_IN_FLIGHT)
        self.lines = AgentLines(audience, self.work.track)
        self.backlog = Backlog()
        #: each queue's first-response target (the console's SLA countdowns use it too)
        self.queue_sla = {queue.name: queue.sla for queue in settings.queues}
        self.levels = ServiceLevels(metrics, self.queue_sla, clock)
        self.abandonment = AbandonmentTimers(
            store,
            metrics,
            self.core.waiting.__contains__,
            settings.dispatch.abandon_after,
            self.work.track,
        )
        self.actions = ActionRunner(
            self.core,
            store,
            self.lines,
            self.work,
            self.levels,
            metrics,
            settle=self.backlog.settle,
            wake=self._wake,
            supervisors=[
                agent.id
                for agent in settings.agents
                if permissions.may(agent.role, permissions.Action.VIEW_QUEUES)
            ],
            clock=clock,
        )
        for name in self.queues:
            # counted when /metrics is read, from a figure the core keeps per queue
            metrics.queue_depth.labels(name).set_function(partial(self.core.waiting_in, name))

    @property
    def backlog_loaded(self) -> asyncio.Event:
        """Set once every conversation the store had queued at start is in memory (the hub
        works before that: see :meth:`start`)."""
        return self.backlog.loaded

    @property
    def backlog_size(self) -> int:
        return self.backlog.size

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Restore assignments, follow the bus, and take in the queued backlog in the background.

        Returns once the hub can take work: held conversations are restored (a bounded set:
        agents x capacity), new messages are followed. The backlog is read page by page, most
        urgent and oldest first, and offered as it comes in; :attr:`backlog_loaded` is set when
        all of it is in memory.
        """
        # Each offer, accept and close keeps a few objects alive for milliseconds; with the
        # default thresholds so many survive the young collections that full ones ran several
        # times a second at 1,000 agents (0.3 s each). Collect the young generation less often.
        young, middle, old = gc.get_threshold()
        gc.set_threshold(max(young, GC_YOUNG), middle, old)
        now = self.clock()
        actions: list[Action] = []
        for row in await self.store.conversations_with_status(ASSIGNED):
            assignee = cast(str, row.assignee)  # an assigned conversation has one
            actions += self.core.restore_assigned(row.id, assignee, now, channel=row.channel)
        self.actions.launch(actions)
        # work groups: on several nodes, each event is handled by one dispatcher; subscribed
        # before reading the backlog, so there is no gap
        messages = self.bus.subscribe(MESSAGES, "dispatch")
        deliveries = self.bus.subscribe(DELIVERIES, "dispatch")
        self._subscriptions = [messages, deliveries]
        pages = self.store.queued_pages(BACKLOG_PAGE, URGENCY, default=DEFAULT_URGENCY)
        self._tasks = [
            asyncio.create_task(self._follow(messages), name="dispatch-bus"),
            asyncio.create_task(self._follow(deliveries), name="dispatch-deliveries"),
            asyncio.create_task(self._timer(), name="dispatch-timer"),
            asyncio.create_task(self.backlog.load(pages, self._take_in), name="dispatch-backlog"),
        ]

    async def stop(self) -> None:
        self.abandonment.cancel()
        for subscription in self._subscriptions:
            subscription.close()
        for task in [*self._tasks, *self.work.tasks]:
            task.cancel()
        for task in [*self._tasks, *self.work.tasks]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.actions.close()

    def _take_in(self, rows: list[ConversationSummary]) -> None:
        """Queue one page of the backlog."""
        now = self.clock()
        actions: list[Action] = []
        for row in rows:
            actions += self.core.enqueue(
                row.id,
                row.queue,
                row.priority,
                row.queued_at or now,
                now,
                channel=row.channel,
                skills=skills_of(row),
                sla=(row.decision or {}).get("sla_seconds"),
            )
        self.actions.launch(actions)

    # -- agent events ----------------------------------------------------------------------

    async def connected(self, agent: str) -> None:
        await self._apply(lambda now: self.core.connect(agent, now))

    async def disconnected(self, agent: str) -> None:
        await self._apply(lambda now: self.core.disconnect(agent, now))

    async def set_presence(self, agent: str, presence: Presence) -> None:
        await self._apply(lambda now: self.core.set_presence(agent, presence, now))

    async def accept(self, agent: str, conversation_id: str) -> None:
        """Returns once the assignment is committed and the conversation frame is sent."""
        await self._apply(lambda now: self.core.accept(agent, conversation_id, now))

    async def decline(self, agent: str, conversation_id: str, reason: str) -> None:
        done = self.actions.launch(self.core.decline(agent, conversation_id, self.clock()))
        done.append(
            self.store.audit(
                "offer.declined",
                conversation_id=conversation_id,
                agent=agent,
                data={"reason": reason},
            )
        )
        await settled_all(done)

    async def close(self, agent: str, conversation_id: str, disposition: str) -> None:
        if self.core.owner.get(conversation_id) != agent:
            raise Forbidden("this conversation is not assigned to you")
        self.backlog.settle(conversation_id)
        # Forbidden if the store says otherwise; then nothing else happens
        await self.store.close_conversation(conversation_id, agent=agent, disposition=disposition)
        closed = Closed(conversation_id=conversation_id, disposition=disposition)
        await self.lines.send(agent, self.actions.after(None, closed))
        if self.core.owner.get(conversation_id) != agent:
            return  # requeued while the close was being written (it stays closed)
        await self._apply(lambda now: self.core.release(agent, conversation_id, now))

    async def transfer(
        self,
        agent: str,
        conversation_id: str,
        note: str,
        *,
        queue: str | None = None,
        to_agent: str | None = None,
        reason: str = "transferred",
    ) -> None:
        """Hand a conversation to a queue, or to a colleague (offered to them first; if they do
        not take it in time it goes to anyone in its queue)."""
        if queue is not None and queue not in self.queues:
            raise NotFound(f"unknown queue {queue!r}")
        if to_agent is not None and to_agent not in self.core.agents:
            raise NotFound(f"unknown agent {to_agent!r}")
        if to_agent == agent:
            raise InvalidState("you hold this conversation already")
        conversation = await self.store.conversation(conversation_id)
        target_queue = queue or conversation.queue
        now = self.clock()
        done = self.actions.launch(
            self.core.transfer_to_queue(
                agent,
                conversation_id,
                target_queue,
                conversation.priority,
                conversation.queued_at or now,
                now,
                skills=skills_of(conversation),
                to_agent=to_agent,
                reason=reason,
            )
        )
        done.append(
            self.store.audit(
                "conversation.transferred",
                conversation_id=conversation_id,
                agent=agent,
                data={"queue": target_queue, "to_agent": to_agent, "note": note, "reason": reason},
            )
        )
        await settled_all(done)

    async def reassign(self, supervisor: str, conversation_id: str, to_agent: str) -> None:
        """A supervisor moves a conversation from the agent who holds it to another one."""
        holder = self.core.owner.get(conversation_id)
        if holder is None:
            raise InvalidState("only a conversation an agent holds can be reassigned")
        await self.transfer(
            holder,
            conversation_id,
            f"reassigned by {supervisor}",
            to_agent=to_agent,
            reason="reassigned",
        )

    def replied(self, agent: str, conversation_id: str) -> None:
        """An agent answered: no no-reply requeue; the first answer is measured against the
        first-response SLA the rules set."""
        self.core.replied(agent, conversation_id)
        self.levels.replied(conversation_id)

    # -- what the console and the API read -------------------------------------------------

    def owner(self, conversation_id: str) -> str | None:
        return self.core.owner.get(conversation_id)

    def offers_for(self, agent: str) -> list[tuple[str, float]]:
        state = self.core.agents.get(agent)
        if state is None:
            return []
        result = []
        for conversation_id in sorted(state.offers):
            waiting = self.core.waiting.get(conversation_id)
            if waiting is not None and waiting.offer is not None:
                result.append((conversation_id, waiting.offer[1]))
        return result

    def waiting_queue(self, conversation_id: str) -> str | None:
        """The queue a conversation waits in (offered or not); None if it does not wait."""
        waiting = self.core.waiting.get(conversation_id)
        return waiting.queue if waiting is not None else None

    def presence_of(self, agent: str) -> str:
        """The agent's presence while connected (a new connection makes an offline agent
        available; another open window keeps what was set there)."""
        state = self.core.agents.get(agent)
        if state is None or state.presence is Presence.OFFLINE:
            return str(Presence.AVAILABLE)
        return str(state.presence)

    def assigned_to(self, agent: str) -> list[str]:
        state = self.core.agents.get(agent)
        return sorted(state.assigned) if state else []

    def queue_state(self) -> QueueState:
        """The live board supervisors see (``queue_state``)."""
        return self.actions.queue_state()

    async def _apply(self, decide: Callable[[float], Sequence[Action]]) -> None:
        """Decide now, then wait until what was decided is written and sent."""
        await settled_all(self.actions.launch(decide(self.clock())))

    # -- the bus -----------------------------------------------------------------------------

    async def _follow(self, subscription: Subscription) -> None:
        async for received in subscription:
            event = received.event
            try:
                if isinstance(event, MessageStored | DeliveryUpdated | CallUpdated):
                    self.actions.stale(event.conversation_id)  # an offer's view is stale
                if isinstance(event, MessageStored):
                    self._on_message(event)
                elif isinstance(event, CustomerPresence):
                    await self.abandonment.presence(event)
            except Exception:  # not acknowledged: delivered again, dead-lettered if it persists
                log.exception("dispatch failed to handle %s", event)
            else:
                await received.ack()
            # backpressure: the bus queue (bounded) fills and ingest waits for room, instead
            # of this process's memory growing
            await self.work.room()

    def _on_message(self, event: MessageStored) -> None:
        """Queue new work; show a held conversation's new message to its agent. Nothing here
        waits: the bus is followed as fast as events come."""
        if (event.conversation_created or event.reopened) and event.status == QUEUED:
            self.backlog.settle(event.conversation_id)
            preferred = event.preferred_agent  # the rules asked for someone
            if preferred is None and event.customer_id is not None and self.core.sticky_wait > 0:
                # the customer's last agent: a read, so off the follower's path
                self.work.track(self._enqueue_sticky(event, event.customer_id))
                return
            self._enqueue(event, preferred)
            return
        agent = self.core.owner.get(event.conversation_id)
        if agent is None:
            return
        self.lines.send(agent, _ready(MessageAdded(event=event)))

    async def _enqueue_sticky(self, event: MessageStored, customer_id: str) -> None:
        preferred = await self.store.last_agent(customer_id, besides=event.conversation_id)
        await settled_all(self._enqueue(event, preferred))

    def _enqueue(self, event: MessageStored, preferred: str | None) -> list[asyncio.Future[Any]]:
        now = self.clock()
        return self.actions.launch(
            self.core.enqueue(
                event.conversation_id,
                event.queue or self.queues[0],
                event.priority or "normal",
                event.queued_at or now,
                now,
                channel=event.channel or "",
                skills=frozenset(event.skills),
                preferred_agent=preferred,
                sla=event.sla,
            )
        )

    # -- the clock ---------------------------------------------------------------------------

    async def _timer(self) -> None:
        while True:
            self._wake.clear()
            deadline = self.core.next_deadline(self.clock())
            timeout = None if deadline is None else max(0.0, deadline - self.clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            if deadline is not None and self.clock() >= deadline:
                self.actions.launch(self.core.tick(self.clock()))
            elif self._wake.is_set():
                # a busy hub changes state thousands of times a second: re-arm the timer at
                # most 50 times a second (deadlines are whole seconds apart, this loses nothing)
                await asyncio.sleep(TIMER_COALESCE)


async def _ready(notice: Notice) -> Notice:
    return notice
