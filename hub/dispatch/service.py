"""The async shell around :class:`DispatchCore`: persists its actions and tells agents.

The core decides synchronously; this class carries out the resulting actions in order (store
first, then frames), runs the timer for offer and grace deadlines, and turns bus events about
stored messages into queue entries and live message frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol

import msgspec

from hub import permissions
from hub.bus import MESSAGES, Bus, CustomerPresence, MessageStored
from hub.calendar import is_open
from hub.dispatch.core import (
    Action,
    Assign,
    DispatchCore,
    Moved,
    OverflowStep,
    Presence,
    Requeue,
    RevokeOffer,
    SendOffer,
    Strategy,
)
from hub.errors import Forbidden, HubError, InvalidState, NotFound
from hub.metrics import Metrics
from hub.settings import HubSettings
from hub.store.ingest import ASSIGNED, QUEUED
from hub.store.store import Store

log = logging.getLogger(__name__)

TIMER_COALESCE = 0.02  # seconds; deadlines are whole seconds apart, this loses nothing


class Notifier(Protocol):
    async def send(self, agent: str, data: bytes) -> int: ...


FrameBuilder = Callable[..., bytes]


def message_view(message: dict[str, Any]) -> dict[str, Any]:
    """The agent-facing shape of a stored message row."""
    return {
        "id": message["id"],
        "kind": message.get("kind", "message"),
        "direction": message["direction"],
        "author": message.get("author"),
        "text": message["text"],
        "subject": message.get("subject"),
        "created_at": message["created_at"],
        "delivery_status": message.get("delivery_status"),
        "delivery_error": message.get("delivery_error"),
        "attachments": message.get("attachments", []),
        "notes": message.get("notes", []),
    }


ComposeView = Callable[[dict[str, Any]], dict[str, Any]]


def conversation_view(
    conversation: dict[str, Any], compose: ComposeView | None = None
) -> dict[str, Any]:
    """The agent-facing shape of a conversation with its customer and messages; ``compose``
    adds what the agent may send now (see hub.console.compose)."""
    decision = conversation.get("decision") or {}
    view = {
        "id": conversation["id"],
        "channel": conversation["channel"],
        "inbox": conversation["inbox"],
        "status": conversation["status"],
        "queue": conversation["queue"],
        "priority": conversation["priority"],
        "assignee": conversation["assignee"],
        "subject": conversation.get("subject"),
        "created_at": conversation["created_at"],
        "customer": conversation["customer"],
        "instructions": decision.get("instructions", []),
        "tags": decision.get("tags", []),
        "rules": decision.get("rules", []),
        "messages": [message_view(m) for m in conversation["messages"]],
    }
    if compose is not None:
        view["compose"] = compose(conversation)
    return view


def _queue_hours(settings: HubSettings) -> Callable[[str, float], bool] | None:
    """Whether a queue is open at a moment, from the calendars its settings name."""
    calendars = {
        queue.name: settings.business_hours[queue.business_hours]
        for queue in settings.queues
        if queue.business_hours
    }
    if not calendars:
        return None

    def queue_open(queue: str, moment: float) -> bool:
        calendar = calendars.get(queue)
        if calendar is None:
            return True
        return is_open(calendar, datetime.fromtimestamp(moment, UTC), settings.timezone)

    return queue_open


def _skills(conversation: dict[str, Any]) -> frozenset[str]:
    """The skills the routing decision asked for (kept on the conversation)."""
    decision = conversation.get("decision") or {}
    return frozenset(decision.get("skills") or ())


def offer_view(conversation: dict[str, Any], expires_at: float) -> dict[str, Any]:
    """The fields of an ``offer`` frame (also the offers in a ``snapshot``)."""
    view = conversation_view(conversation)
    preview = next(
        (m["text"] for m in reversed(view["messages"]) if m["direction"] == "inbound"), ""
    )
    return {
        "conversation_id": view["id"],
        "expires_at": expires_at,
        "channel": view["channel"],
        "inbox": view["inbox"],
        "queue": view["queue"],
        "priority": view["priority"],
        "customer": view["customer"],
        "preview": preview[:280],
        "instructions": view["instructions"],
    }


class DispatchService:
    def __init__(
        self,
        settings: HubSettings,
        store: Store,
        bus: Bus,
        notifier: Notifier,
        frame: FrameBuilder,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        options = settings.dispatch
        self.compose: ComposeView | None = None  # set by the app once connectors exist
        self.core = DispatchCore(
            offer_timeout=options.offer_timeout,
            disconnect_grace=options.disconnect_grace,
            decline_cooldown=options.decline_cooldown,
            sticky_wait=options.sticky_wait,
            reply_timeout=options.reply_timeout,
            wrap_up=options.wrap_up,
            queue_open=_queue_hours(settings),
        )
        for queue in settings.queues:
            self.core.add_queue(
                queue.name,
                strategy=Strategy(queue.strategy),
                skills=frozenset(queue.skills),
                overflow=tuple(
                    OverflowStep(step.after, step.to, frozenset(step.drop_skills), step.priority)
                    for step in queue.overflow
                ),
                max_waiting=queue.max_waiting,
                when_full=queue.when_full,
                sla=queue.sla,
            )
        for agent in settings.agents:
            self.core.add_agent(
                agent.id,
                capacity=agent.max_conversations,
                queues=frozenset(agent.queues),
                skills=dict(agent.skills),
                channel_capacity=dict(agent.capacity),
                auto_accept=frozenset(agent.auto_accept),
            )
        self.queues = [queue.name for queue in settings.queues]
        self.queue_sla = {queue.name: queue.sla for queue in settings.queues}
        self.store = store
        self.bus = bus
        self.notifier = notifier
        self.frame = frame
        self.metrics = metrics
        self.clock = clock
        self.supervisors = [
            agent.id
            for agent in settings.agents
            if permissions.may(agent.role, permissions.Action.VIEW_QUEUES)
        ]
        self._state_pending = False
        # accepted conversations not yet answered: (queue, queued at, SLA seconds or None)
        self._first_reply: dict[str, tuple[str, float, float | None]] = {}
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._sending: set[asyncio.Task[int]] = set()
        self._leaving: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self.abandon_after = settings.dispatch.abandon_after
        for name in self.queues:
            # counted when /metrics is read, not after every change: the count looks at every
            # waiting conversation, which made each new message O(backlog)
            metrics.queue_depth.labels(name).set_function(partial(self.core.waiting_in, name))

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Restore queue and assignments from the store, then follow the bus."""
        now = self.clock()
        actions: list[Action] = []
        for row in await self.store.conversations_with_status(ASSIGNED):
            actions += self.core.restore_assigned(
                row["id"], row["assignee"], now, channel=row["channel"]
            )
        for row in await self.store.conversations_with_status(QUEUED):
            actions += self.core.enqueue(
                row["id"],
                row["queue"],
                row["priority"],
                row["queued_at"] or now,
                now,
                channel=row["channel"],
                skills=_skills(row),
                sla=(row.get("decision") or {}).get("sla_seconds"),
            )
        await self._execute(actions)
        subscription = self.bus.subscribe(MESSAGES)
        self._tasks = [
            asyncio.create_task(self._follow(subscription), name="dispatch-bus"),
            asyncio.create_task(self._timer(), name="dispatch-timer"),
        ]
        self._subscription = subscription

    async def stop(self) -> None:
        for handle in self._leaving.values():
            handle.cancel()
        self._subscription.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- agent events ----------------------------------------------------------------------

    async def connected(self, agent: str) -> None:
        await self._apply(lambda now: self.core.connect(agent, now))

    async def disconnected(self, agent: str) -> None:
        await self._apply(lambda now: self.core.disconnect(agent, now))

    async def set_presence(self, agent: str, presence: Presence) -> None:
        await self._apply(lambda now: self.core.set_presence(agent, presence, now))

    async def accept(self, agent: str, conversation_id: str) -> None:
        await self._apply(lambda now: self.core.accept(agent, conversation_id, now))

    async def decline(self, agent: str, conversation_id: str, reason: str) -> None:
        await self._apply(lambda now: self.core.decline(agent, conversation_id, now))
        await self.store.audit(
            "offer.declined", conversation_id=conversation_id, agent=agent, data={"reason": reason}
        )

    async def close(self, agent: str, conversation_id: str, disposition: str) -> None:
        if self.core.owner.get(conversation_id) != agent:
            raise Forbidden("this conversation is not assigned to you")
        await self.store.close_conversation(conversation_id, agent=agent, disposition=disposition)
        await self.notifier.send(
            agent,
            self.frame(
                "conversation_closed", conversation_id=conversation_id, disposition=disposition
            ),
        )
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
        target_queue = queue or conversation["queue"]
        await self._apply(
            lambda now: self.core.transfer_to_queue(
                agent,
                conversation_id,
                target_queue,
                conversation["priority"],
                conversation["queued_at"] or now,
                now,
                skills=_skills(conversation),
                to_agent=to_agent,
                reason=reason,
            )
        )
        await self.store.audit(
            "conversation.transferred",
            conversation_id=conversation_id,
            agent=agent,
            data={"queue": target_queue, "to_agent": to_agent, "note": note, "reason": reason},
        )

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
        pending = self._first_reply.pop(conversation_id, None)
        if pending is not None:
            queue, queued_at, sla = pending
            waited = max(0.0, self.clock() - queued_at)
            self.metrics.first_response_seconds.labels(queue).observe(waited)
            if sla is not None and waited > sla:
                self.metrics.sla_breaches.labels(queue).inc()

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

    def assigned_to(self, agent: str) -> list[str]:
        state = self.core.agents.get(agent)
        return sorted(state.assigned) if state else []

    # -- internals -------------------------------------------------------------------------

    async def _apply(self, decide: Callable[[float], Sequence[Action]]) -> None:
        async with self._lock:
            actions = list(decide(self.clock()))
            await self._execute(actions)

    async def _execute(self, actions: list[Action]) -> None:
        pending = list(actions)
        while pending:
            action = pending.pop(0)
            try:
                pending.extend(await self._carry_out(action))
            except HubError as exc:
                log.warning("dispatch action %s failed: %s", action, exc)
        self._wake.set()
        if self.supervisors and not self._state_pending:
            # at most one live update per second, however busy the queues are
            self._state_pending = True
            asyncio.get_running_loop().call_later(1.0, self._push_state)

    def queue_state_frame(self) -> bytes:
        return self.frame("queue_state", **self.core.queue_state(self.clock()))

    def _push_state(self) -> None:
        self._state_pending = False
        data = self.queue_state_frame()
        for supervisor in self.supervisors:
            task = asyncio.create_task(self.notifier.send(supervisor, data))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _carry_out(self, action: Action) -> list[Action]:
        if isinstance(action, SendOffer):
            conversation = await self.store.conversation(action.conversation_id)
            await self.store.audit(
                "offer.sent", conversation_id=action.conversation_id, agent=action.agent
            )
            await self.notifier.send(
                action.agent, self.frame("offer", **offer_view(conversation, action.expires_at))
            )
            return []
        if isinstance(action, RevokeOffer):
            await self.notifier.send(
                action.agent,
                self.frame(
                    "offer_revoked", conversation_id=action.conversation_id, reason=action.reason
                ),
            )
            waiting = self.core.waiting.get(action.conversation_id)
            queue = waiting.queue if waiting is not None else "unknown"
            self.metrics.offers.labels(queue, action.reason).inc()
            if action.reason == "timeout":
                await self.store.audit(
                    "offer.timeout", conversation_id=action.conversation_id, agent=action.agent
                )
            return []
        if isinstance(action, Assign):
            try:
                await self.store.assign(action.conversation_id, action.agent)
            except HubError:
                self.core.forget(action.agent, action.conversation_id)
                raise
            self.metrics.offer_accept_seconds.observe(action.offer_wait)
            conversation = await self.store.conversation(action.conversation_id)
            self.metrics.queue_wait_seconds.labels(conversation["queue"]).observe(action.queue_wait)
            if not any(
                m["direction"] == "outbound" and m["author"] for m in conversation["messages"]
            ):
                sla = (conversation.get("decision") or {}).get("sla_seconds")
                if sla is None:
                    sla = self.queue_sla.get(conversation["queue"])
                queued_at = conversation["queued_at"] or conversation["created_at"]
                self._first_reply[action.conversation_id] = (conversation["queue"], queued_at, sla)
            self.metrics.offers.labels(conversation["queue"], "accepted").inc()
            await self.notifier.send(
                action.agent,
                self.frame(
                    "conversation", conversation=conversation_view(conversation, self.compose)
                ),
            )
            return []
        if isinstance(action, Requeue):
            await self.store.requeue(
                action.conversation_id, reason=action.reason, agent=action.agent
            )
            await self.notifier.send(
                action.agent,
                self.frame(
                    "conversation_removed",
                    conversation_id=action.conversation_id,
                    reason=action.reason,
                ),
            )
            conversation = await self.store.conversation(action.conversation_id)
            self.metrics.requeued.labels(conversation["queue"], action.reason).inc()
            if action.reason in ("transferred", "reassigned"):
                return []  # the core queued it already, where it was sent
            now = self.clock()
            return list(
                self.core.requeued(
                    action.conversation_id,
                    conversation["queue"],
                    conversation["priority"],
                    conversation["queued_at"] or now,
                    now,
                    channel=conversation["channel"],
                    skills=_skills(conversation),
                    avoid=action.agent if action.reason == "no_reply" else None,
                )
            )
        if isinstance(action, Moved):
            await self.store.move(
                action.conversation_id,
                queue=action.queue,
                reason=action.reason,
                skills=list(action.skills),
                priority=action.priority,
            )
            return []
        raise AssertionError(f"unknown action {action!r}")

    async def _follow(self, subscription: Any) -> None:
        async for event in subscription:
            try:
                if isinstance(event, MessageStored):
                    await self._on_message(event)
                elif isinstance(event, CustomerPresence):
                    await self._on_presence(event)
            except Exception:
                log.exception("dispatch failed to handle %s", event)

    async def _on_presence(self, event: CustomerPresence) -> None:
        """A customer who leaves while waiting and is not back within abandon_after has
        abandoned (the conversation stays queued: they may still be answered later)."""
        key = (event.inbox, event.session)
        pending = self._leaving.pop(key, None)
        if pending is not None:
            pending.cancel()
        if event.present:
            return
        conversation = await self.store.queued_on_thread(event.inbox, event.session)
        if conversation is None:
            return
        loop = asyncio.get_running_loop()
        self._leaving[key] = loop.call_later(
            self.abandon_after,
            lambda: self._spawn(self._abandoned(key, conversation["id"], conversation["queue"])),
        )

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _abandoned(self, key: tuple[str, str], conversation_id: str, queue: str) -> int:
        self._leaving.pop(key, None)
        if conversation_id not in self.core.waiting:
            return 0  # an agent took it in the meantime
        self.metrics.abandoned.labels(queue).inc()
        await self.store.audit("conversation.abandoned", conversation_id=conversation_id)
        return 1

    async def _on_message(self, event: MessageStored) -> None:
        if (event.conversation_created or event.reopened) and event.status == QUEUED:
            now = self.clock()
            preferred = event.preferred_agent  # the rules asked for someone
            if preferred is None and event.customer_id is not None and self.core.sticky_wait > 0:
                preferred = await self.store.last_agent(
                    event.customer_id, besides=event.conversation_id
                )
            await self._apply(
                lambda now_: self.core.enqueue(
                    event.conversation_id,
                    event.queue or self.queues[0],
                    event.priority or "normal",
                    event.queued_at or now,
                    now_,
                    channel=event.channel or "",
                    skills=frozenset(event.skills),
                    preferred_agent=preferred,
                    sla=event.sla,
                )
            )
            return
        agent = self.core.owner.get(event.conversation_id)
        if agent is None:
            return
        await self.notifier.send(
            agent,
            self.frame(
                "message",
                conversation_id=event.conversation_id,
                message={
                    "id": event.message_id,
                    "kind": event.kind,
                    "direction": event.direction,
                    "author": event.author,
                    "text": event.text,
                    "created_at": event.created_at,
                    "delivery_status": "queued"
                    if event.direction == "outbound" and event.kind == "message"
                    else None,
                    # a fax's pages, an email's files, what went wrong: carried by the event
                    "attachments": [msgspec.structs.asdict(a) for a in event.attachments],
                    "notes": list(event.notes),
                },
            ),
        )

    async def _timer(self) -> None:
        while True:
            self._wake.clear()
            deadline = self.core.next_deadline(self.clock())
            timeout = None if deadline is None else max(0.0, deadline - self.clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            if deadline is not None and self.clock() >= deadline:
                await self._apply(self.core.tick)
            elif self._wake.is_set():
                # a busy hub changes state many times a second; finding the next deadline
                # looks at all waiting work, so do it at most 50 times a second
                await asyncio.sleep(TIMER_COALESCE)
