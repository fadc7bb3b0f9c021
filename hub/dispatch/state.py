"""What the dispatch core holds (agents, waiting work, owners, the order of waiting work per
queue, the deadline heap and the pools of agents ready for work) and the small checks over it.

:class:`CoreState` is the base of :class:`hub.dispatch.core.DispatchCore`: matching
(``hub.dispatch.matching``), expiry (``hub.dispatch.expiry``) and the events
(``hub.dispatch.core``) build on it. Pure: no I/O, no clock of its own.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import Any

from hub.dispatch.deadlines import Deadlines, Entry
from hub.dispatch.figures import QueueFigures
from hub.dispatch.model import (
    DEFAULT_RULES,
    AgentState,
    Presence,
    QueueRules,
    Waiting,
)
from hub.errors import Forbidden, NotFound
from rules.decision import Priority

# what a deadline entry is about (hub.dispatch.deadlines): the first four concern waiting work
OFFER, DECLINED, PREFERRED, OVERFLOW, REPLY, GRACE, WRAP = range(7)


class CoreState:
    """The dispatch core's state; see the module docstring."""

    def __init__(
        self,
        *,
        offer_timeout: float,
        disconnect_grace: float,
        decline_cooldown: float,
        sticky_wait: float = 0.0,
        reply_timeout: float | None = None,
        wrap_up: float = 0.0,
        queue_open: Callable[[str, float], bool] | None = None,
    ) -> None:
        self.offer_timeout = offer_timeout
        self.disconnect_grace = disconnect_grace
        self.decline_cooldown = decline_cooldown
        self.sticky_wait = sticky_wait
        self.reply_timeout = reply_timeout
        self.wrap_up = wrap_up
        # business hours per queue (injected: the core has no calendar or clock of its own);
        # work in a closed queue stays queued and is offered when it opens
        self.queue_open = queue_open
        self.closed: set[str] = set()
        self.agents: dict[str, AgentState] = {}
        self.waiting: dict[str, Waiting] = {}
        self.owner: dict[str, str] = {}  # conversation id -> agent id
        self.queues: dict[str, QueueRules] = {}
        self.reply_due: dict[str, float] = {}  # accepted, no agent reply yet: deadline
        # waiting work without an open offer, per queue, in the order it is taken (priority,
        # then age): an agent who frees up walks only the queues they serve, from the head
        self.order: dict[str, list[tuple[int, float, str]]] = {}
        # every moment tick() has to act at, so neither it nor next_deadline looks at all work
        self.deadlines = Deadlines(self._live)
        self.figures = QueueFigures(self.waiting)  # per-queue counts for the board and gauge
        self._agent_rank: dict[str, int] = {}  # the order agents were added in
        # available agents with room (connected, presence available, below their budget) by
        # the queues they serve; those who serve every queue apart: new work looks only at who
        # could take it
        self._ready: dict[str, dict[str, AgentState]] = {}
        self._ready_anywhere: dict[str, AgentState] = {}
        self._seq = 0

    def queue_state(self, now: float) -> dict[str, Any]:
        """What supervisors see live: waiting work per queue and every agent's state (from
        figures kept as work moves: no walk over all waiting work)."""
        agents = [
            {
                "id": state.id,
                "presence": str(state.presence),
                "conversations": len(state.assigned),
                "offers": len(state.offers),
                "capacity": state.capacity,
                "wrap_up": state.wrap_up_until > now,
                "assigned": sorted(state.assigned),
            }
            for state in sorted(self.agents.values(), key=lambda s: s.id)
        ]
        return {"queues": self.figures.board(now, list(self.queues)), "agents": agents}

    def waiting_in(self, queue: str) -> int:
        return self.figures.waiting.get(queue, 0)

    def is_open(self, queue: str, now: float) -> bool:
        return self.queue_open is None or self.queue_open(queue, now)

    def _set_skills(self, waiting: Waiting) -> None:
        queue_skills = self.queues.get(waiting.queue, DEFAULT_RULES).skills
        waiting.skills = (waiting.required | queue_skills) - waiting.dropped

    def _unorder(self, waiting: Waiting) -> None:
        keys = self.order.get(waiting.queue, [])
        position = bisect.bisect_left(keys, waiting.sort_key())
        if position < len(keys) and keys[position] == waiting.sort_key():
            del keys[position]

    def _wait(self, conversation_id: str, queue: str, priority: str, queued_at: float) -> Waiting:
        try:
            rank = Priority(priority).rank
        except ValueError:
            rank = Priority.NORMAL.rank
        self._seq += 1
        waiting = self.waiting[conversation_id] = Waiting(
            conversation_id, queue, rank, queued_at, seq=self._seq
        )
        bisect.insort(self.order.setdefault(queue, []), waiting.sort_key())
        return waiting

    def _agent(self, agent: str) -> AgentState:
        state = self.agents.get(agent)
        if state is None:
            raise NotFound(f"unknown agent {agent!r}")
        return state

    def _check_owner(self, agent: str, conversation_id: str) -> None:
        if self.owner.get(conversation_id) != agent:
            raise Forbidden("this conversation is not assigned to you")

    def _free(self, state: AgentState, now: float) -> bool:
        return (
            state.presence is Presence.AVAILABLE
            and bool(state.connections)
            and state.load < state.capacity
            and state.wrap_up_until <= now
        )

    def _eligible(self, state: AgentState, waiting: Waiting, now: float) -> bool:
        return (
            state.serves(waiting.queue)
            and self.is_open(waiting.queue, now)
            and state.room_for(waiting.channel)
            and state.has_skills(waiting.skills)
            and waiting.declined_until.get(state.id, 0.0) <= now
        )

    def _ready_for(self, queue: str) -> list[AgentState]:
        """The available agents with room who serve ``queue`` (nobody else can take its work
        now)."""
        return [*self._ready.get(queue, {}).values(), *self._ready_anywhere.values()]

    def _ready_changed(self, state: AgentState) -> None:
        """Keep ``state`` in the pools of its queues exactly while it is available and has
        room (called after every change of presence or load)."""
        pools = (
            [self._ready_anywhere]
            if not state.queues
            else [self._ready.setdefault(queue, {}) for queue in state.queues]
        )
        ready = (
            state.presence is Presence.AVAILABLE
            and state.connections > 0
            and state.load < state.capacity
        )
        for pool in pools:
            if ready:
                pool[state.id] = state
            else:
                pool.pop(state.id, None)

    def _overflow_at(self, waiting: Waiting) -> float | None:
        """When the next overflow step of unoffered work is due (None: no step left)."""
        if waiting.offer is not None:
            return None
        steps = self.queues.get(waiting.queue, DEFAULT_RULES).overflow
        if waiting.steps_done >= len(steps):
            return None
        return waiting.queued_at + steps[waiting.steps_done].after

    def _schedule_overflow(self, waiting: Waiting) -> None:
        at = self._overflow_at(waiting)
        if at is not None:
            self.deadlines.push(at, OVERFLOW, waiting.conversation_id)

    def _drop(self, state: AgentState, conversation_id: str) -> None:
        state.assigned.discard(conversation_id)
        self._ready_changed(state)
        state.channels.pop(conversation_id, None)
        self.owner.pop(conversation_id, None)
        self.reply_due.pop(conversation_id, None)

    def _live(self, entry: Entry) -> bool:
        """Whether a deadline entry still stands: the state it was made from says the same."""
        at, _, kind, key, extra = entry
        if kind <= OVERFLOW:
            waiting = self.waiting.get(key)
            if waiting is None:
                return False
            if kind == OFFER:
                return waiting.offer is not None and waiting.offer[1] == at
            if kind == DECLINED:
                return waiting.declined_until.get(extra) == at
            if kind == PREFERRED:
                return waiting.preferred is not None and waiting.preferred[1] == at
            return self._overflow_at(waiting) == at
        if kind == REPLY:
            return self.reply_due.get(key) == at
        state = self.agents.get(key)
        if state is None:
            return False
        if kind == GRACE:
            return (
                state.offline_since is not None
                and state.connections == 0
                and state.offline_since + self.disconnect_grace == at
            )
        return bool(state.wrap_up_until) and state.wrap_up_until == at
