"""Carrying out the core's actions: writes queued in decision order, notices after them.

Nothing here holds a lock across I/O: the writes an action needs are queued in the store's
group-commit writer the moment it is decided (the writer commits them in that order), and each
agent's notices follow in decision order (``hub.dispatch.outgoing``), each after its own write
is committed and its data loaded. Many offers, accepts and closes are thus in flight at once
and share commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import msgspec

from hub.dispatch.core import (
    Action,
    Assign,
    DispatchCore,
    Moved,
    Requeue,
    RevokeOffer,
    SendOffer,
)
from hub.dispatch.loader import BatchLoader
from hub.dispatch.notices import (
    Assigned,
    Notice,
    Offered,
    OfferRevoked,
    QueueState,
    Removed,
)
from hub.dispatch.outgoing import AgentLines
from hub.dispatch.sla import ServiceLevels
from hub.dispatch.work import InFlight
from hub.errors import HubError, NotFound, StoreUnavailable
from hub.metrics import Metrics
from hub.store.records import Conversation, ConversationSummary
from hub.store.schema import ASSIGNED, QUEUED
from hub.store.store import Store

log = logging.getLogger(__name__)

STATE_EVERY = 1.0  # seconds between live queue_state updates, however busy the queues are
RETRY_INITIAL = 0.2  # seconds before looking again at a conversation the store could not assign
RETRY_MAX = 5.0
T = TypeVar("T")


def skills_of(conversation: Conversation | ConversationSummary) -> frozenset[str]:
    """The skills the routing decision asked for (kept on the conversation)."""
    decision = conversation.decision or {}
    return frozenset(decision.get("skills") or ())


class ActionRunner:
    """Turns each action into its store write and its notice, without waiting for either."""

    def __init__(
        self,
        core: DispatchCore,
        store: Store,
        lines: AgentLines,
        work: InFlight,
        levels: ServiceLevels,
        metrics: Metrics,
        *,
        settle: Callable[[str], None],
        wake: asyncio.Event,
        supervisors: Sequence[str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``settle(conversation_id)`` marks work the backlog must not bring back; ``wake`` is
        set after every launch (the deadline timer looks again); ``supervisors`` get the
        live ``queue_state``."""
        self.core = core
        self.store = store
        self.lines = lines
        self.work = work
        self.levels = levels
        self.metrics = metrics
        self.settle = settle
        self.wake = wake
        self.supervisors = list(supervisors)
        self.clock = clock
        self._state_pending = False
        self._views = BatchLoader(store.conversations)  # what offer and conversation frames show
        # the last write queued per conversation: a notice loads what is committed after it
        self._writes: dict[str, asyncio.Future[Any]] = {}
        # what an open offer showed, (serial, view): the conversation frame on accepting reuses
        # it unless something about the conversation was stored since (then it is dropped)
        self._offered: dict[str, tuple[int, Conversation | None]] = {}
        self._serial = 0
        # one handler per action type: a lookup, not a chain of isinstance checks
        self._handlers: dict[type[Any], Callable[[Any], asyncio.Future[Any]]] = {
            SendOffer: self._send_offer,
            RevokeOffer: self._revoke_offer,
            Assign: self._assign,
            Requeue: self._requeue,
            Moved: self._move,
        }

    async def close(self) -> None:
        await self._views.close()

    def launch(self, actions: Sequence[Action]) -> list[asyncio.Future[Any]]:
        """Start carrying out ``actions``: their writes are queued now, in this order; their
        notices follow each agent's earlier ones. Returns what to await for all of it."""
        handlers = self._handlers
        done = [handlers[type(action)](action) for action in actions]
        self.wake.set()
        if self.supervisors and not self._state_pending:
            # at most one live update per second, however busy the queues are
            self._state_pending = True
            asyncio.get_running_loop().call_later(STATE_EVERY, self._push_state)
        return done

    def stale(self, conversation_id: str) -> None:
        """Something about the conversation was stored: an open offer's view is out of date."""
        self._offered.pop(conversation_id, None)

    def queue_state(self) -> QueueState:
        state = self.core.queue_state(self.clock())
        return QueueState(queues=state["queues"], agents=state["agents"])

    async def after(self, written: asyncio.Future[Any] | None, notice: Notice) -> Notice:
        """``notice``, once ``written`` is committed (or failed: the notice is the truth the
        agent needs either way)."""
        if written is not None:
            with contextlib.suppress(HubError):
                await written
        return notice

    # -- one handler per action --------------------------------------------------------------

    def _send_offer(self, action: SendOffer) -> asyncio.Future[Any]:
        self.settle(action.conversation_id)
        written = self.store.audit(
            "offer.sent", conversation_id=action.conversation_id, agent=action.agent
        )
        return self.lines.send(action.agent, self._offered_notice(action, written))

    def _revoke_offer(self, action: RevokeOffer) -> asyncio.Future[Any]:
        self._offered.pop(action.conversation_id, None)
        waiting = self.core.waiting.get(action.conversation_id)
        queue = waiting.queue if waiting is not None else "unknown"
        self.metrics.offers.labels(queue, action.reason).inc()
        written = None
        if action.reason == "timeout":
            written = self.store.audit(
                "offer.timeout", conversation_id=action.conversation_id, agent=action.agent
            )
        revoked = OfferRevoked(conversation_id=action.conversation_id, reason=action.reason)
        return self.lines.send(action.agent, self.after(written, revoked))

    def _assign(self, action: Assign) -> asyncio.Future[Any]:
        self.settle(action.conversation_id)
        written = self._wrote(
            action.conversation_id, self.store.assign(action.conversation_id, action.agent)
        )
        return self.lines.send(action.agent, self._assigned(action, written))

    def _requeue(self, action: Requeue) -> asyncio.Future[Any]:
        self._offered.pop(action.conversation_id, None)
        found = self._wrote(
            action.conversation_id,
            self.store.requeue(action.conversation_id, reason=action.reason, agent=action.agent),
        )
        return self.work.track(self._requeued(action, found))

    def _move(self, action: Moved) -> asyncio.Future[Any]:
        moved = self.store.move(
            action.conversation_id,
            queue=action.queue,
            reason=action.reason,
            skills=list(action.skills),
            priority=action.priority,
        )
        self._offered.pop(action.conversation_id, None)
        return self._logged(self._wrote(action.conversation_id, moved), action)

    # -- what follows a write ----------------------------------------------------------------

    async def _offered_notice(self, action: SendOffer, written: asyncio.Future[None]) -> Notice:
        self._serial += 1
        serial = self._serial
        self._offered[action.conversation_id] = (serial, None)
        conversation = await self._view(action.conversation_id)
        if self._offered.get(action.conversation_id, (0, None))[0] == serial:
            self._offered[action.conversation_id] = (serial, conversation)  # nothing changed
        await written  # every offer an agent sees is in the audit log
        return Offered(conversation=conversation, expires_at=action.expires_at)

    async def _assigned(self, action: Assign, written: asyncio.Future[None]) -> Notice | None:
        try:
            await written
        except HubError as exc:
            # the store had it settled otherwise (another process, a close): undo, tell nobody
            self.core.forget(action.agent, action.conversation_id)
            log.warning("dispatch could not assign %s: %s", action.conversation_id, exc)
            if isinstance(exc, StoreUnavailable):  # nothing settled: it waits on, offer it again
                self.work.track(self._wait_again(action.conversation_id))
            return None
        self.metrics.offer_accept_seconds.observe(action.offer_wait)
        _, shown = self._offered.pop(action.conversation_id, (0, None))
        if shown is not None:  # as offered: nothing about it was stored since
            conversation = msgspec.structs.replace(shown, status=ASSIGNED, assignee=action.agent)
        else:
            conversation = await self._view_when_back(action.conversation_id)
        self.levels.accepted(conversation, action.queue_wait)
        return Assigned(conversation=conversation)

    async def _wait_again(self, conversation_id: str) -> None:
        """An assignment the database could not take (it was down): once it answers again,
        the conversation waits for an agent again if it still does; without this it would sit
        queued in the store and unknown to dispatch until the next start."""
        delay = RETRY_INITIAL
        while True:
            await asyncio.sleep(delay)
            try:
                conversation = await self.store.conversation(conversation_id)
            except StoreUnavailable:
                delay = min(RETRY_MAX, delay * 2)
                continue
            except HubError:  # gone (erased): nothing waits
                return
            break
        if (
            conversation.status != QUEUED
            or conversation_id in self.core.owner
            or conversation_id in self.core.waiting
        ):
            return  # settled meanwhile, or queued again by its own event
        now = self.clock()
        follow = self.core.requeued(
            conversation_id,
            conversation.queue,
            conversation.priority,
            conversation.queued_at or now,
            now,
            channel=conversation.channel,
            skills=skills_of(conversation),
        )
        await settled_all(self.launch(follow))

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
        removed = self.lines.send(
            action.agent,
            self.after(None, Removed(conversation_id=action.conversation_id, reason=action.reason)),
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
            skills=skills_of(row),
            avoid=action.agent if action.reason == "no_reply" else None,
        )
        await settled_all([removed, *self.launch(follow)])

    async def _view_when_back(self, conversation_id: str) -> Conversation:
        """:meth:`_view` of a conversation the agent now holds, waiting out a database outage:
        the agent must be shown it (dropped, they would hold a conversation they never saw)."""
        delay = RETRY_INITIAL
        while True:
            try:
                return await self._view(conversation_id)
            except StoreUnavailable:
                await asyncio.sleep(delay)
                delay = min(RETRY_MAX, delay * 2)

    async def _view(self, conversation_id: str) -> Conversation:
        """The conversation as notices show it, as committed after the writes decided so far."""
        pending = self._writes.get(conversation_id)
        if pending is not None:
            await asyncio.wait([pending])
        conversation: Conversation | None = await self._views.get(conversation_id)
        if conversation is None:
            raise NotFound(f"conversation {conversation_id} does not exist")
        return conversation

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

    def _push_state(self) -> None:
        self._state_pending = False
        state = self.queue_state()
        for supervisor in self.supervisors:
            self.work.track(self.lines.audience.tell(supervisor, state))


async def settled_all(done: list[asyncio.Future[Any]]) -> None:
    """Wait until every future is done; failures are logged where they happen, and the
    caller's decision stands."""
    for future in done:  # one by one: cheaper than gather, and they all run meanwhile
        if not future.done():
            await asyncio.wait((future,))
