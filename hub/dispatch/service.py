"""The async shell around :class:`DispatchCore`: persists its actions and tells agents.

The core decides synchronously; this class carries out the resulting actions in order (store
first, then frames), runs the timer for offer and grace deadlines, and turns bus events about
stored messages into queue entries and live message frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol, TypeVar, cast

import msgspec

from hub import permissions
from hub.bus import DELIVERIES, MESSAGES, Bus, CustomerPresence, DeliveryUpdated, MessageStored
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
from hub.dispatch.loader import BatchLoader
from hub.errors import Forbidden, HubError, InvalidState, NotFound
from hub.metrics import Metrics
from hub.settings import HubSettings
from hub.store.records import Conversation, ConversationSummary, Message
from hub.store.schema import ASSIGNED, QUEUED
from hub.store.store import Store

log = logging.getLogger(__name__)

TIMER_COALESCE = 0.02  # seconds; deadlines are whole seconds apart, this loses nothing
BACKLOG_PAGE = 1000  # queued conversations read at start-up per page
FREEZE_BACKLOG = 10_000  # a backlog this large is kept out of later garbage collections
GC_YOUNG = 50_000  # allocations between young-generation collections (Python's default: 700)
MAX_IN_FLIGHT = 20_000  # actions being carried out before the bus follower waits
T = TypeVar("T")


class Notifier(Protocol):
    async def send(self, agent: str, data: bytes) -> int: ...


FrameBuilder = Callable[..., bytes]


def message_view(message: Message) -> dict[str, Any]:
    """The agent-facing shape of a stored message."""
    return {
        "id": message.id,
        "kind": message.kind,
        "direction": message.direction,
        "author": message.author,
        "text": message.text,
        "subject": message.subject,
        "created_at": message.created_at,
        "delivery_status": message.delivery_status,
        "delivery_error": message.delivery_error,
        "attachments": list(message.attachments),
        "notes": list(message.notes),
    }


ComposeView = Callable[[Conversation], dict[str, Any]]


def conversation_view(
    conversation: Conversation, compose: ComposeView | None = None
) -> dict[str, Any]:
    """The agent-facing shape of a conversation with its customer and messages; ``compose``
    adds what the agent may send now (see hub.console.compose)."""
    decision = conversation.decision or {}
    view = {
        "id": conversation.id,
        "channel": conversation.channel,
        "inbox": conversation.inbox,
        "status": conversation.status,
        "queue": conversation.queue,
        "priority": conversation.priority,
        "assignee": conversation.assignee,
        "subject": conversation.subject,
        "created_at": conversation.created_at,
        "customer": conversation.customer,
        "instructions": decision.get("instructions", []),
        "tags": decision.get("tags", []),
        "rules": decision.get("rules", []),
        "messages": [message_view(m) for m in conversation.messages],
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


def _skills(conversation: Conversation | ConversationSummary) -> frozenset[str]:
    """The skills the routing decision asked for (kept on the conversation)."""
    decision = conversation.decision or {}
    return frozenset(decision.get("skills") or ())


def offer_view(conversation: Conversation, expires_at: float) -> dict[str, Any]:
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
    """Runs the core against the store, the bus and the agents' sockets.

    The core decides synchronously and nothing here holds a lock across I/O: the writes an
    action needs are queued in the store's group-commit writer the moment it is decided (the
    writer commits them in that order), and the frames go to each agent in decision order, each
    after its own write is committed and its data loaded. Many offers, accepts and closes are
    thus in flight at once and share commits. Correctness does not rest on holding a lock: the
    store assigns only a conversation that is still queued (one conditional update), and
    closes only one the closing agent holds.
    """

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
        self._tasks: list[asyncio.Task[None]] = []
        self._work: set[asyncio.Future[Any]] = set()  # actions being carried out
        self._room = asyncio.Event()  # set while fewer than MAX_IN_FLIGHT are
        self._outgoing: dict[str, asyncio.Task[None]] = {}  # each agent's last frame in line
        self._leaving: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self._views = BatchLoader(store.conversations)  # what offer and conversation frames show
        # the last write queued per conversation: a frame loads what is committed after it
        self._writes: dict[str, asyncio.Future[Any]] = {}
        # what an open offer showed, (serial, view): the conversation frame on accepting reuses
        # it unless something about the conversation was stored since (then it is dropped)
        self._offered: dict[str, tuple[int, Conversation | None]] = {}
        self._serial = 0
        self.abandon_after = settings.dispatch.abandon_after
        #: set once every conversation the store had queued at start is in memory (the hub
        #: works before that: see :meth:`start`)
        self.backlog_loaded = asyncio.Event()
        self.backlog_size = 0
        # conversations this process took in or settled while the backlog was being read: a
        # page read earlier must not bring them back as waiting
        self._settled: set[str] | None = set()
        for name in self.queues:
            # counted when /metrics is read, from a figure the core keeps per queue
            metrics.queue_depth.labels(name).set_function(partial(self.core.waiting_in, name))

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
        self._launch(actions)
        # a work group: on several nodes, each event is handled by one dispatcher
        subscription = self.bus.subscribe(MESSAGES, "dispatch")  # before the backlog: no gap
        self._subscription = subscription
        self._deliveries = self.bus.subscribe(DELIVERIES, "dispatch")
        self._tasks = [
            asyncio.create_task(self._follow(subscription), name="dispatch-bus"),
            asyncio.create_task(self._follow(self._deliveries), name="dispatch-deliveries"),
            asyncio.create_task(self._timer(), name="dispatch-timer"),
            asyncio.create_task(self._load_backlog(), name="dispatch-backlog"),
        ]

    async def stop(self) -> None:
        for handle in self._leaving.values():
            handle.cancel()
        self._subscription.close()
        self._deliveries.close()
        for task in [*self._tasks, *self._work]:
            task.cancel()
        for task in [*self._tasks, *self._work]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._views.close()

    async def _load_backlog(self) -> None:
        began = time.monotonic()
        # Every waiting conversation is a few long-lived objects; taking in 100,000 of them
        # would run a full collection each time their number grew by a quarter (4 s of stalls
        # measured), and every later full collection would walk them all again. So: no
        # collections while they come in (reference counting still frees what dies), and a
        # large backlog is frozen out of later collections (as the app does with the rules).
        collecting = gc.isenabled()
        gc.disable()
        try:
            async for page in self.store.queued_pages(BACKLOG_PAGE):
                now = self.clock()
                actions: list[Action] = []
                settled = self._settled or set()
                for row in page:
                    if row.id in settled:
                        continue
                    actions += self.core.enqueue(
                        row.id,
                        row.queue,
                        row.priority,
                        row.queued_at or now,
                        now,
                        channel=row.channel,
                        skills=_skills(row),
                        sla=(row.decision or {}).get("sla_seconds"),
                    )
                self.backlog_size += len(page)
                self._launch(actions)
                await asyncio.sleep(0)  # let the hub answer between pages
        except Exception:
            log.exception("reading the queued backlog failed; restart to take in the rest")
            raise
        finally:
            if collecting:
                gc.enable()
            self._settled = None
            self.backlog_loaded.set()
        if self.backlog_size >= FREEZE_BACKLOG:
            gc.freeze()
        log.info(
            "dispatch backlog in memory: %d queued conversations in %.1f s",
            self.backlog_size,
            time.monotonic() - began,
        )

    def _settle(self, conversation_id: str) -> None:
        if self._settled is not None:
            self._settled.add(conversation_id)

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
        done = self._launch(self.core.decline(agent, conversation_id, self.clock()))
        done.append(
            self.store.audit(
                "offer.declined",
                conversation_id=conversation_id,
                agent=agent,
                data={"reason": reason},
            )
        )
        await self._settled_all(done)

    async def close(self, agent: str, conversation_id: str, disposition: str) -> None:
        if self.core.owner.get(conversation_id) != agent:
            raise Forbidden("this conversation is not assigned to you")
        self._settle(conversation_id)
        # Forbidden if the store says otherwise; then nothing else happens
        await self.store.close_conversation(conversation_id, agent=agent, disposition=disposition)
        await self._to_agent(
            agent,
            self._after(None, "conversation_closed", conversation_id, disposition=disposition),
        )
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
        done = self._launch(
            self.core.transfer_to_queue(
                agent,
                conversation_id,
                target_queue,
                conversation.priority,
                conversation.queued_at or now,
                now,
                skills=_skills(conversation),
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
        await self._settled_all(done)

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

    # -- carrying out the core's actions -----------------------------------------------------

    async def _apply(self, decide: Callable[[float], Sequence[Action]]) -> None:
        """Decide now, then wait until what was decided is written and sent."""
        await self._settled_all(self._launch(decide(self.clock())))

    @staticmethod
    async def _settled_all(done: list[asyncio.Future[Any]]) -> None:
        # failures are logged where they happen; the caller's decision stands
        for future in done:  # one by one: cheaper than gather, and they all run meanwhile
            if not future.done():
                await asyncio.wait((future,))

    def _launch(self, actions: Sequence[Action]) -> list[asyncio.Future[Any]]:
        """Start carrying out ``actions``: their writes are queued now, in this order; their
        frames follow each agent's earlier frames. Returns what to await for all of it."""
        done: list[asyncio.Future[Any]] = []
        for action in actions:
            if isinstance(action, SendOffer):
                self._settle(action.conversation_id)
                written = self.store.audit(
                    "offer.sent", conversation_id=action.conversation_id, agent=action.agent
                )
                done.append(self._to_agent(action.agent, self._offer_frame(action, written)))
            elif isinstance(action, RevokeOffer):
                self._offered.pop(action.conversation_id, None)
                waiting = self.core.waiting.get(action.conversation_id)
                queue = waiting.queue if waiting is not None else "unknown"
                self.metrics.offers.labels(queue, action.reason).inc()
                written = None
                if action.reason == "timeout":
                    written = self.store.audit(
                        "offer.timeout",
                        conversation_id=action.conversation_id,
                        agent=action.agent,
                    )
                revoked = self._after(
                    written,
                    "offer_revoked",
                    action.conversation_id,
                    reason=action.reason,
                )
                done.append(self._to_agent(action.agent, revoked))
            elif isinstance(action, Assign):
                self._settle(action.conversation_id)
                written = self._wrote(
                    action.conversation_id, self.store.assign(action.conversation_id, action.agent)
                )
                done.append(self._to_agent(action.agent, self._assigned(action, written)))
            elif isinstance(action, Requeue):
                self._offered.pop(action.conversation_id, None)
                found = self._wrote(
                    action.conversation_id,
                    self.store.requeue(
                        action.conversation_id, reason=action.reason, agent=action.agent
                    ),
                )
                done.append(self._track(self._requeued(action, found)))
            elif isinstance(action, Moved):
                moved = self.store.move(
                    action.conversation_id,
                    queue=action.queue,
                    reason=action.reason,
                    skills=list(action.skills),
                    priority=action.priority,
                )
                self._offered.pop(action.conversation_id, None)
                done.append(self._logged(self._wrote(action.conversation_id, moved), action))
            else:
                raise AssertionError(f"unknown action {action!r}")
        self._wake.set()
        if self.supervisors and not self._state_pending:
            # at most one live update per second, however busy the queues are
            self._state_pending = True
            asyncio.get_running_loop().call_later(1.0, self._push_state)
        return done

    def _to_agent(
        self, agent: str, prepare: Coroutine[Any, Any, bytes | None]
    ) -> asyncio.Task[None]:
        """Send the frame ``prepare`` makes (None: nothing) after the agent's earlier frames;
        preparing (waiting for a commit, loading) runs alongside theirs."""
        previous = self._outgoing.get(agent)
        task = self._track(self._send_in_turn(agent, prepare, previous))
        self._outgoing[agent] = task

        def sent(done: asyncio.Task[None]) -> None:
            if self._outgoing.get(agent) is done:
                del self._outgoing[agent]
            prepare.close()  # a task cancelled before it ran never awaited it (stop)

        task.add_done_callback(sent)
        return task

    async def _send_in_turn(
        self,
        agent: str,
        prepare: Coroutine[Any, Any, bytes | None],
        previous: asyncio.Task[None] | None,
    ) -> None:
        data: bytes | None = None
        try:
            data = await prepare
        except HubError as exc:
            log.warning("dispatch could not prepare a frame for %s: %s", agent, exc)
        except Exception:
            log.exception("dispatch could not prepare a frame for %s", agent)
        if previous is not None and not previous.done():
            await asyncio.wait([previous])
        if data is not None:
            await self.notifier.send(agent, data)

    def _track(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.create_task(work)
        self._work.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Future[Any]) -> None:
        self._work.discard(task)
        if len(self._work) < MAX_IN_FLIGHT:
            self._room.set()

    def _wrote(self, conversation_id: str, written: asyncio.Future[T]) -> asyncio.Future[T]:
        """Remember ``written`` as the newest write about ``conversation_id`` until it is done."""
        self._writes[conversation_id] = written

        def forget(done: asyncio.Future[T]) -> None:
            if self._writes.get(conversation_id) is done:
                del self._writes[conversation_id]

        written.add_done_callback(forget)
        return written

    @staticmethod
    def _logged(written: asyncio.Future[Any], action: Action) -> asyncio.Future[Any]:
        def report(done: asyncio.Future[Any]) -> None:
            if not done.cancelled() and (error := done.exception()) is not None:
                log.warning("dispatch action %s failed: %s", action, error)

        written.add_done_callback(report)
        return written

    async def _after(
        self, written: asyncio.Future[Any] | None, kind: str, conversation_id: str, **fields: Any
    ) -> bytes:
        """A frame about ``conversation_id``, made once ``written`` is committed."""
        if written is not None:
            with contextlib.suppress(HubError):  # the frame is the truth the agent needs
                await written
        return self.frame(kind, conversation_id=conversation_id, **fields)

    async def _offer_frame(self, action: SendOffer, written: asyncio.Future[None]) -> bytes:
        self._serial += 1
        serial = self._serial
        self._offered[action.conversation_id] = (serial, None)
        conversation = await self._view(action.conversation_id)
        if self._offered.get(action.conversation_id, (0, None))[0] == serial:
            self._offered[action.conversation_id] = (serial, conversation)  # nothing changed
        await written  # every offer an agent sees is in the audit log
        return self.frame("offer", **offer_view(conversation, action.expires_at))

    async def _assigned(self, action: Assign, written: asyncio.Future[None]) -> bytes | None:
        try:
            await written
        except HubError as exc:
            # the store had it settled otherwise (another process, a close): undo, tell nobody
            self.core.forget(action.agent, action.conversation_id)
            log.warning("dispatch could not assign %s: %s", action.conversation_id, exc)
            return None
        self.metrics.offer_accept_seconds.observe(action.offer_wait)
        _, shown = self._offered.pop(action.conversation_id, (0, None))
        if shown is not None:  # as offered: nothing about it was stored since
            conversation = msgspec.structs.replace(shown, status=ASSIGNED, assignee=action.agent)
        else:
            conversation = await self._view(action.conversation_id)
        self.metrics.queue_wait_seconds.labels(conversation.queue).observe(action.queue_wait)
        if not any(m.direction == "outbound" and m.author for m in conversation.messages):
            sla = (conversation.decision or {}).get("sla_seconds")
            if sla is None:
                sla = self.queue_sla.get(conversation.queue)
            queued_at = conversation.queued_at or conversation.created_at
            self._first_reply[action.conversation_id] = (conversation.queue, queued_at, sla)
        self.metrics.offers.labels(conversation.queue, "accepted").inc()
        return self.frame(
            "conversation", conversation=conversation_view(conversation, self.compose)
        )

    async def _view(self, conversation_id: str) -> Conversation:
        """The conversation as frames show it, as committed after the writes decided so far."""
        pending = self._writes.get(conversation_id)
        if pending is not None:
            await asyncio.wait([pending])
        conversation: Conversation | None = await self._views.get(conversation_id)
        if conversation is None:
            raise NotFound(f"conversation {conversation_id} does not exist")
        return conversation

    async def _requeued(
        self, action: Requeue, found: asyncio.Future[ConversationSummary | None]
    ) -> None:
        """After the requeue is committed: tell the agent, and queue it again in the core."""
        try:
            row = await found
        except HubError as exc:
            log.warning("dispatch action %s failed: %s", action, exc)
            return
        if row is None:
            return  # closed in the meantime: nothing to take away or queue
        removed = self._to_agent(
            action.agent,
            self._after(None, "conversation_removed", action.conversation_id, reason=action.reason),
        )
        self.metrics.requeued.labels(row.queue, action.reason).inc()
        if action.reason in ("transferred", "reassigned"):
            await removed
            return  # the core queued it already, where it was sent
        now = self.clock()
        follow = self.core.requeued(
            action.conversation_id,
            row.queue,
            row.priority,
            row.queued_at or now,
            now,
            channel=row.channel,
            skills=_skills(row),
            avoid=action.agent if action.reason == "no_reply" else None,
        )
        await self._settled_all([removed, *self._launch(follow)])

    def queue_state_frame(self) -> bytes:
        return self.frame("queue_state", **self.core.queue_state(self.clock()))

    def _push_state(self) -> None:
        self._state_pending = False
        data = self.queue_state_frame()
        for supervisor in self.supervisors:
            self._track(self.notifier.send(supervisor, data))

    # -- the bus -----------------------------------------------------------------------------

    async def _follow(self, subscription: Any) -> None:
        async for received in subscription:
            event = received.event
            try:
                if isinstance(event, MessageStored | DeliveryUpdated):
                    self._offered.pop(event.conversation_id, None)  # an offer's view is stale
                if isinstance(event, MessageStored):
                    self._on_message(event)
                elif isinstance(event, CustomerPresence):
                    await self._on_presence(event)
            except Exception:  # not acknowledged: delivered again, dead-lettered if it persists
                log.exception("dispatch failed to handle %s", event)
            else:
                await received.ack()
            if len(self._work) >= MAX_IN_FLIGHT:
                # backpressure: the bus queue (bounded) fills and ingest waits for room,
                # instead of this process's memory growing
                self._room.clear()
                await self._room.wait()

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
            lambda: self._track(self._abandoned(key, conversation.id, conversation.queue)),
        )

    async def _abandoned(self, key: tuple[str, str], conversation_id: str, queue: str) -> None:
        self._leaving.pop(key, None)
        if conversation_id not in self.core.waiting:
            return  # an agent took it in the meantime
        self.metrics.abandoned.labels(queue).inc()
        await self.store.audit("conversation.abandoned", conversation_id=conversation_id)

    def _on_message(self, event: MessageStored) -> None:
        """Queue new work; show a held conversation's new message to its agent. Nothing here
        waits: the bus is followed as fast as events come."""
        if (event.conversation_created or event.reopened) and event.status == QUEUED:
            self._settle(event.conversation_id)
            preferred = event.preferred_agent  # the rules asked for someone
            if preferred is None and event.customer_id is not None and self.core.sticky_wait > 0:
                # the customer's last agent: a read, so off the follower's path
                self._track(self._enqueue_sticky(event, event.customer_id))
                return
            self._enqueue(event, preferred)
            return
        agent = self.core.owner.get(event.conversation_id)
        if agent is None:
            return
        self._to_agent(agent, self._message_frame(event))

    async def _enqueue_sticky(self, event: MessageStored, customer_id: str) -> None:
        preferred = await self.store.last_agent(customer_id, besides=event.conversation_id)
        await self._settled_all(self._enqueue(event, preferred))

    def _enqueue(self, event: MessageStored, preferred: str | None) -> list[asyncio.Future[Any]]:
        now = self.clock()
        return self._launch(
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

    async def _message_frame(self, event: MessageStored) -> bytes:
        return self.frame(
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
                self._launch(self.core.tick(self.clock()))
            elif self._wake.is_set():
                # a busy hub changes state thousands of times a second: re-arm the timer at
                # most 50 times a second (deadlines are whole seconds apart, this loses nothing)
                await asyncio.sleep(TIMER_COALESCE)
