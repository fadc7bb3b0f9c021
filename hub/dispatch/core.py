"""The dispatch decision core: state + event -> actions, no I/O, no clock of its own.

Every method takes ``now`` and returns the actions the shell must carry out (persist, send frames).
Policy (docs/routing.md): waiting work is taken by priority, then age. Each conversation is
offered to one agent at a time: an available agent who serves its queue, has every skill it
needs, has room within both their budget and the per-channel capacity, is not in wrap-up and has
not just declined it; among those the queue's strategy picks (longest idle, least occupied,
round robin, or best skill level). A returning customer's last agent gets the first chance for a
while (sticky). Offers not answered in time move on; agents with auto-accept get the
conversation at once. An agent who stays disconnected past the grace period, or who does not
answer an accepted conversation in time, loses it back to the queue with its age and priority.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import Any

from hub.dispatch.deadlines import Deadlines, Entry
from hub.dispatch.figures import QueueFigures
from hub.dispatch.model import (
    _PRIORITIES,
    DEFAULT_RULES,
    Action,
    AgentState,
    Assign,
    Moved,
    OverflowStep,
    Presence,
    QueueRules,
    Requeue,
    RevokeOffer,
    SendOffer,
    Strategy,
    Waiting,
)
from hub.errors import Forbidden, InvalidState, NotFound
from rules.decision import Priority

# what a deadline entry is about (hub.dispatch.deadlines): the first four concern waiting work
_OFFER, _DECLINED, _PREFERRED, _OVERFLOW, _REPLY, _GRACE, _WRAP = range(7)

__all__ = [
    "Action",
    "AgentState",
    "Assign",
    "DispatchCore",
    "Moved",
    "OverflowStep",
    "Presence",
    "QueueRules",
    "Requeue",
    "RevokeOffer",
    "SendOffer",
    "Strategy",
    "Waiting",
]


class DispatchCore:
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

    # -- setup -----------------------------------------------------------------------------

    def add_queue(
        self,
        queue: str,
        *,
        strategy: Strategy = Strategy.LONGEST_IDLE,
        skills: frozenset[str] = frozenset(),
        overflow: tuple[OverflowStep, ...] = (),
        max_waiting: int | None = None,
        when_full: str | None = None,
        sla: float | None = None,
    ) -> None:
        self.queues[queue] = QueueRules(strategy, skills, overflow, max_waiting, when_full, sla)
        for waiting in self.waiting.values():  # set-up normally comes first; this is for safety
            if waiting.queue == queue:
                self._schedule_overflow(waiting)

    def add_agent(
        self,
        agent: str,
        *,
        capacity: int,
        queues: frozenset[str] = frozenset(),
        skills: dict[str, int] | None = None,
        channel_capacity: dict[str, int] | None = None,
        auto_accept: frozenset[str] = frozenset(),
    ) -> None:
        self.agents[agent] = AgentState(
            agent,
            capacity,
            queues,
            dict(skills or {}),
            dict(channel_capacity or {}),
            auto_accept,
        )
        self._agent_rank.setdefault(agent, len(self._agent_rank))
        for pool in [self._ready_anywhere, *self._ready.values()]:
            pool.pop(agent, None)  # a new state for this agent: not connected yet

    def restore_assigned(
        self, conversation_id: str, agent: str, now: float, channel: str = ""
    ) -> list[Action]:
        """A conversation the store says is assigned; an unknown agent's goes back to the queue."""
        state = self.agents.get(agent)
        if state is None:
            return [Requeue(agent, conversation_id, "unknown_agent")]
        state.assigned.add(conversation_id)
        self._ready_changed(state)
        state.channels[conversation_id] = channel
        self.owner[conversation_id] = agent
        if state.connections == 0 and state.offline_since is None:
            state.offline_since = now
            self.deadlines.push(now + self.disconnect_grace, _GRACE, agent)
        return []

    # -- events ----------------------------------------------------------------------------

    def enqueue(
        self,
        conversation_id: str,
        queue: str,
        priority: str,
        queued_at: float,
        now: float,
        *,
        channel: str = "",
        skills: frozenset[str] = frozenset(),
        preferred_agent: str | None = None,
        sla: float | None = None,
    ) -> list[Action]:
        """A conversation waits for an agent (new, requeued or restored).

        ``skills`` come from the routing decision (the queue's own are added); a
        ``preferred_agent`` (the customer's last agent) is asked first for ``sticky_wait``.
        """
        return self._place(
            conversation_id,
            queue,
            priority,
            queued_at,
            now,
            channel=channel,
            skills=skills,
            preferred_agent=preferred_agent,
            window=self.sticky_wait,
            sla=sla,
        )

    def connect(self, agent: str, now: float) -> list[Action]:
        state = self._agent(agent)
        state.connections += 1
        if state.presence is Presence.OFFLINE:
            state.presence = Presence.AVAILABLE
            self._ready_changed(state)
            state.idle_since = now
        state.offline_since = None
        return self._match_agents([state], now)

    def disconnect(self, agent: str, now: float) -> list[Action]:
        state = self._agent(agent)
        state.connections = max(0, state.connections - 1)
        if state.connections:
            return []
        state.presence = Presence.OFFLINE
        self._ready_changed(state)
        state.offline_since = now
        self.deadlines.push(now + self.disconnect_grace, _GRACE, agent)
        actions: list[Action] = []
        withdrawn = sorted(state.offers)
        for conversation_id in withdrawn:
            actions.extend(self._withdraw(state, conversation_id, "withdrawn", now, cooldown=False))
        return actions + self._match_conversations(withdrawn, now)

    def set_presence(self, agent: str, presence: Presence, now: float) -> list[Action]:
        state = self._agent(agent)
        if presence is Presence.OFFLINE or state.connections == 0:
            raise InvalidState("presence is derived from the connection; use available or away")
        if state.presence is not presence and presence is Presence.AVAILABLE:
            state.idle_since = now
        state.presence = presence
        self._ready_changed(state)
        actions: list[Action] = []
        if presence in (Presence.AWAY, Presence.BUSY):
            withdrawn = sorted(state.offers)
            for conversation_id in withdrawn:
                actions.extend(
                    self._withdraw(state, conversation_id, "withdrawn", now, cooldown=False)
                )
            return actions + self._match_conversations(withdrawn, now)
        return self._match_agents([state], now)

    def accept(self, agent: str, conversation_id: str, now: float) -> list[Action]:
        waiting = self.waiting.get(conversation_id)
        if waiting is None or waiting.offer is None or waiting.offer[0] != agent:
            raise InvalidState("this offer is no longer open")
        state = self._agent(agent)
        return [self._assign(state, waiting, now)]

    def _assign(self, state: AgentState, waiting: Waiting, now: float) -> Assign:
        conversation_id = waiting.conversation_id
        del self.waiting[conversation_id]
        self.figures.left(waiting)
        if waiting.offer is not None:
            self.figures.offer(waiting.queue, -1)
        self._unorder(waiting)
        state.offers.discard(conversation_id)
        state.assigned.add(conversation_id)
        self._ready_changed(state)
        state.channels[conversation_id] = waiting.channel
        self.owner[conversation_id] = state.id
        if self.reply_timeout is not None:
            self.reply_due[conversation_id] = now + self.reply_timeout
            self.deadlines.push(now + self.reply_timeout, _REPLY, conversation_id)
        offered_at = waiting.offer[1] - self.offer_timeout if waiting.offer else now
        return Assign(
            state.id,
            conversation_id,
            queue_wait=max(0.0, now - waiting.queued_at),
            offer_wait=max(0.0, now - offered_at),
        )

    def replied(self, agent: str, conversation_id: str) -> None:
        """The agent answered: the conversation no longer risks a no-reply requeue."""
        if self.owner.get(conversation_id) == agent:
            self.reply_due.pop(conversation_id, None)

    def decline(self, agent: str, conversation_id: str, now: float) -> list[Action]:
        waiting = self.waiting.get(conversation_id)
        if waiting is None or waiting.offer is None or waiting.offer[0] != agent:
            raise InvalidState("this offer is no longer open")
        state = self._agent(agent)
        actions = self._withdraw(state, conversation_id, "declined", now, cooldown=True)
        actions += self._match_conversations([conversation_id], now)
        return actions + self._match_agents([state], now)

    def release(self, agent: str, conversation_id: str, now: float) -> list[Action]:
        """The agent is done with a conversation (closed): capacity frees up."""
        self._check_owner(agent, conversation_id)
        state = self._agent(agent)
        self._drop(state, conversation_id)
        if not state.assigned:
            state.idle_since = now
        state.wrap_up_until = now + self.wrap_up if self.wrap_up else 0.0
        if state.wrap_up_until:
            self.deadlines.push(state.wrap_up_until, _WRAP, agent)
        return self._match_agents([state], now)

    def _drop(self, state: AgentState, conversation_id: str) -> None:
        state.assigned.discard(conversation_id)
        self._ready_changed(state)
        state.channels.pop(conversation_id, None)
        self.owner.pop(conversation_id, None)
        self.reply_due.pop(conversation_id, None)

    def forget(self, agent: str, conversation_id: str) -> None:
        """Undo an acceptance the shell could not persist (the store has the truth)."""
        if self.owner.get(conversation_id) == agent:
            self._drop(self._agent(agent), conversation_id)

    def transfer_to_queue(
        self,
        agent: str,
        conversation_id: str,
        queue: str,
        priority: str,
        queued_at: float,
        now: float,
        *,
        skills: frozenset[str] = frozenset(),
        to_agent: str | None = None,
        reason: str = "transferred",
    ) -> list[Action]:
        """The agent hands a conversation back to a queue, or to a colleague who is asked first
        (for the offer timeout or the sticky wait, whichever is longer); it is not offered back
        to the agent who gave it away soon."""
        self._check_owner(agent, conversation_id)
        state = self._agent(agent)
        channel = state.channels.get(conversation_id, "")
        self._drop(state, conversation_id)
        actions: list[Action] = [Requeue(agent, conversation_id, reason)]
        actions += self.requeued(
            conversation_id,
            queue,
            priority,
            queued_at,
            now,
            channel=channel,
            skills=skills,
            avoid=agent,
            preferred_agent=to_agent,
        )
        return actions + self._match_agents([state], now)

    def tick(self, now: float) -> list[Action]:
        """Expire offers, cooldowns, sticky windows, wrap-ups and grace periods that are due,
        and match whatever that freed. Only what is due is looked at (the deadline heap)."""
        actions: list[Action] = []
        conversations: list[str] = []
        freed: list[AgentState] = []
        due_waiting: set[str] = set()
        due_agents: set[str] = set()
        due_replies: list[str] = []
        for _, _, kind, key, _ in self.deadlines.due(now):
            if kind <= _OVERFLOW:
                due_waiting.add(key)
            elif kind == _REPLY:
                due_replies.append(key)
            else:
                due_agents.add(key)
        # in the order the work started waiting, as if walking all of it
        for waiting in sorted(
            (self.waiting[c] for c in due_waiting if c in self.waiting), key=lambda w: w.seq
        ):
            expired = [a for a, until in waiting.declined_until.items() if until <= now]
            for agent in expired:
                del waiting.declined_until[agent]
            changed = bool(expired)
            if waiting.offer is not None and waiting.offer[1] <= now:
                state = self._agent(waiting.offer[0])
                actions += self._withdraw(
                    state, waiting.conversation_id, "timeout", now, cooldown=True
                )
                freed.append(state)
                changed = True
            if waiting.preferred is not None and waiting.preferred[1] <= now:
                waiting.preferred = None
                changed = True
            if waiting.offer is None:
                moved = self._overflow(waiting, now)
                actions += moved
                changed = changed or bool(moved)
            if changed:
                conversations.append(waiting.conversation_id)
        for agent in sorted(due_agents, key=self._agent_rank.__getitem__):
            state = self.agents[agent]
            if (
                state.offline_since is not None
                and state.connections == 0
                and state.offline_since + self.disconnect_grace <= now
            ):
                state.offline_since = None
                for conversation_id in sorted(state.assigned):
                    self._drop(state, conversation_id)
                    actions.append(Requeue(state.id, conversation_id, "disconnected"))
            if state.wrap_up_until and state.wrap_up_until <= now:
                state.wrap_up_until = 0.0
                freed.append(state)
        for conversation_id in due_replies:
            due = self.reply_due.get(conversation_id)
            if due is not None and due <= now:  # a grace requeue above may have dropped it
                holder = self._agent(self.owner[conversation_id])
                self._drop(holder, conversation_id)
                actions.append(Requeue(holder.id, conversation_id, "no_reply"))
                freed.append(holder)
        if self.queue_open is not None:
            for queue in list(self.order):
                if not self.is_open(queue, now):
                    self.closed.add(queue)
                elif queue in self.closed:  # it just opened: its waiting work may go now
                    self.closed.discard(queue)
                    conversations += [key[2] for key in self.order[queue]]
        actions += self._match_conversations(conversations, now)
        return actions + self._match_agents(freed, now)

    def requeued(
        self,
        conversation_id: str,
        queue: str,
        priority: str,
        queued_at: float,
        now: float,
        *,
        channel: str = "",
        skills: frozenset[str] = frozenset(),
        avoid: str | None = None,
        preferred_agent: str | None = None,
    ) -> list[Action]:
        """After the shell persisted a :class:`Requeue`, the conversation waits again (not
        offered to ``avoid``, the agent it came from, during the decline cooldown; offered to
        ``preferred_agent`` first)."""
        return self._place(
            conversation_id,
            queue,
            priority,
            queued_at,
            now,
            channel=channel,
            skills=skills,
            preferred_agent=preferred_agent,
            window=max(self.sticky_wait, self.offer_timeout),
            avoid=avoid,
        )

    def _place(
        self,
        conversation_id: str,
        queue: str,
        priority: str,
        queued_at: float,
        now: float,
        *,
        channel: str,
        skills: frozenset[str],
        preferred_agent: str | None,
        window: float,
        avoid: str | None = None,
        sla: float | None = None,
    ) -> list[Action]:
        if conversation_id in self.owner or conversation_id in self.waiting:
            return []
        actions: list[Action] = []
        rules = self.queues.get(queue, DEFAULT_RULES)
        full = (
            rules.max_waiting is not None
            and rules.when_full is not None
            and len(self.order.get(queue, ())) >= rules.max_waiting
        )
        if full and rules.when_full is not None:
            queue = rules.when_full  # full: new work goes where the queue says
        waiting = self._wait(conversation_id, queue, priority, queued_at)
        if not self.is_open(queue, now):
            self.closed.add(queue)  # so the tick that sees it open offers this work
        waiting.channel = channel
        waiting.required = skills
        waiting.sla = sla if sla is not None else self.queues.get(queue, DEFAULT_RULES).sla
        self.figures.joined(waiting)
        self._set_skills(waiting)
        if full:
            actions.append(Moved(conversation_id, queue, tuple(sorted(waiting.skills)), "full"))
        if avoid is not None:
            waiting.declined_until[avoid] = now + self.decline_cooldown
            self.deadlines.push(now + self.decline_cooldown, _DECLINED, conversation_id, avoid)
        if preferred_agent in self.agents and window > 0:
            waiting.preferred = (preferred_agent, now + window)
            self.deadlines.push(now + window, _PREFERRED, conversation_id)
        self._schedule_overflow(waiting)
        return actions + self._match_conversations([conversation_id], now)

    def next_deadline(self, now: float | None = None) -> float | None:
        """When :meth:`tick` next has something to do, or None (O(log n) amortized)."""
        deadline = self.deadlines.first()
        if self.queue_open is not None and now is not None and any(self.order.values()):
            # look again for queues opening, once a minute
            deadline = now + 60.0 if deadline is None else min(deadline, now + 60.0)
        return deadline

    def _live(self, entry: Entry) -> bool:
        """Whether a deadline entry still stands: the state it was made from says the same."""
        at, _, kind, key, extra = entry
        if kind <= _OVERFLOW:
            waiting = self.waiting.get(key)
            if waiting is None:
                return False
            if kind == _OFFER:
                return waiting.offer is not None and waiting.offer[1] == at
            if kind == _DECLINED:
                return waiting.declined_until.get(extra) == at
            if kind == _PREFERRED:
                return waiting.preferred is not None and waiting.preferred[1] == at
            return self._overflow_at(waiting) == at
        if kind == _REPLY:
            return self.reply_due.get(key) == at
        state = self.agents.get(key)
        if state is None:
            return False
        if kind == _GRACE:
            return (
                state.offline_since is not None
                and state.connections == 0
                and state.offline_since + self.disconnect_grace == at
            )
        return bool(state.wrap_up_until) and state.wrap_up_until == at

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
            self.deadlines.push(at, _OVERFLOW, waiting.conversation_id)

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

    # -- internals -------------------------------------------------------------------------

    def _set_skills(self, waiting: Waiting) -> None:
        queue_skills = self.queues.get(waiting.queue, DEFAULT_RULES).skills
        waiting.skills = (waiting.required | queue_skills) - waiting.dropped

    def _overflow(self, waiting: Waiting, now: float) -> list[Action]:
        """Apply the overflow steps of its queue that are due (moving on to another queue may
        make that queue's own steps due too; a cycle stops after a few hops)."""
        actions: list[Action] = []
        for _ in range(8):
            steps = self.queues.get(waiting.queue, DEFAULT_RULES).overflow
            if waiting.steps_done >= len(steps):
                break
            step = steps[waiting.steps_done]
            if waiting.queued_at + step.after > now:
                break
            waiting.steps_done += 1
            raised = Priority(step.priority).rank if step.priority else waiting.rank
            if (step.to is not None and step.to != waiting.queue) or raised > waiting.rank:
                self._unorder(waiting)  # its place in the order changes
                if step.to is not None and step.to != waiting.queue:
                    self.figures.moved(waiting, step.to)
                    waiting.steps_done = 0
                waiting.rank = max(waiting.rank, raised)
                bisect.insort(self.order.setdefault(waiting.queue, []), waiting.sort_key())
            waiting.dropped |= step.drop_skills
            self._set_skills(waiting)
            actions.append(
                Moved(
                    waiting.conversation_id,
                    waiting.queue,
                    tuple(sorted(waiting.skills)),
                    "overflow",
                    _PRIORITIES[waiting.rank],
                )
            )
        if actions:
            self._schedule_overflow(waiting)
        return actions

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

    def _withdraw(
        self, state: AgentState, conversation_id: str, reason: str, now: float, *, cooldown: bool
    ) -> list[Action]:
        waiting = self.waiting[conversation_id]
        waiting.offer = None
        self.figures.offer(waiting.queue, -1)
        bisect.insort(self.order.setdefault(waiting.queue, []), waiting.sort_key())
        state.offers.discard(conversation_id)
        self._ready_changed(state)
        state.channels.pop(conversation_id, None)
        if cooldown:
            waiting.declined_until[state.id] = now + self.decline_cooldown
            self.deadlines.push(now + self.decline_cooldown, _DECLINED, conversation_id, state.id)
        self._schedule_overflow(waiting)  # unoffered again: its overflow steps apply
        return [RevokeOffer(state.id, conversation_id, reason)]

    def _free(self, state: AgentState, now: float) -> bool:
        return (
            state.presence is Presence.AVAILABLE
            and bool(state.connections)
            and state.load < state.capacity
            and state.wrap_up_until <= now
        )

    def _match_conversations(self, conversation_ids: list[str], now: float) -> list[Action]:
        """Find agents for these waiting conversations (highest priority first) among the free
        agents serving their queue. Work that was waiting before had no eligible agent, and
        nothing freed one."""
        pending = sorted(
            (self.waiting[c] for c in set(conversation_ids) if c in self.waiting),
            key=Waiting.sort_key,
        )
        if not pending:
            return []
        actions: list[Action] = []
        for waiting in pending:
            if waiting.offer is not None:
                continue
            if waiting.preferred is not None and waiting.preferred[1] > now:
                # sticky: while the window lasts, only the customer's last agent is asked
                state = self.agents[waiting.preferred[0]]
                eligible = (
                    [state]
                    if self._free(state, now) and self._eligible(state, waiting, now)
                    else []
                )
            elif not self.is_open(waiting.queue, now):
                continue
            else:
                # the pool holds only available agents with room who serve the queue; what is
                # left to check depends on this conversation (an offer given in this loop may
                # have filled someone: room_for looks at the load)
                skills, channel, declined = waiting.skills, waiting.channel, waiting.declined_until
                eligible = [
                    state
                    for state in self._ready_for(waiting.queue)
                    if state.wrap_up_until <= now
                    and state.room_for(channel)
                    and (not skills or state.has_skills(skills))
                    and (not declined or declined.get(state.id, 0.0) <= now)
                ]
            if eligible:
                actions.append(self._give(min(eligible, key=self._ranking(waiting)), waiting, now))
        return actions

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

    def _match_agents(self, states: list[AgentState], now: float) -> list[Action]:
        """Give agents who just freed up the most urgent waiting work they can take: they are
        its only new candidates, so each walks its queues' heads until it is full."""
        actions: list[Action] = []
        for state in {state.id: state for state in states}.values():  # once each, in order
            while self._free(state, now):
                # the most urgent work it can take: the best of each queue's first it can take
                best: tuple[int, float, str] | None = None
                for queue in state.queues or list(self.order):
                    if not self.is_open(queue, now):
                        continue
                    for key in self.order.get(queue, ()):
                        if best is not None and key >= best:
                            break  # nothing more urgent further down this queue
                        if self._takes(state, self.waiting[key[2]], now):
                            best = key
                            break
                if best is None:
                    break
                actions.append(self._give(state, self.waiting[best[2]], now))
        return actions

    def _takes(self, state: AgentState, waiting: Waiting, now: float) -> bool:
        """Whether ``state`` may be offered ``waiting`` now (sticky work only by its agent)."""
        if waiting.offer is not None or not self._eligible(state, waiting, now):
            return False
        return (
            waiting.preferred is None
            or waiting.preferred[1] <= now
            or waiting.preferred[0] == state.id
        )

    def _give(self, state: AgentState, waiting: Waiting, now: float) -> Action:
        """Offer ``waiting`` to ``state`` (or assign it, with auto-accept)."""
        state.offered_count += 1
        state.idle_since = now
        if waiting.channel in state.auto_accept:
            return self._assign(state, waiting, now)
        expires_at = now + self.offer_timeout
        waiting.offer = (state.id, expires_at)
        self.figures.offer(waiting.queue, 1)
        self.deadlines.push(expires_at, _OFFER, waiting.conversation_id)
        self._unorder(waiting)  # only unoffered work stands in the order lists
        state.offers.add(waiting.conversation_id)
        self._ready_changed(state)
        state.channels[waiting.conversation_id] = waiting.channel
        return SendOffer(state.id, waiting.conversation_id, expires_at)

    def is_open(self, queue: str, now: float) -> bool:
        return self.queue_open is None or self.queue_open(queue, now)

    def _eligible(self, state: AgentState, waiting: Waiting, now: float) -> bool:
        return (
            state.serves(waiting.queue)
            and self.is_open(waiting.queue, now)
            and state.room_for(waiting.channel)
            and state.has_skills(waiting.skills)
            and waiting.declined_until.get(state.id, 0.0) <= now
        )

    def _ranking(self, waiting: Waiting) -> Callable[[AgentState], tuple[Any, ...]]:
        strategy = self.queues.get(waiting.queue, DEFAULT_RULES).strategy
        if strategy is Strategy.LEAST_OCCUPIED:
            return lambda s: (s.load / s.capacity, s.idle_since, s.id)
        if strategy is Strategy.ROUND_ROBIN:
            return lambda s: (s.offered_count, s.id)
        if strategy is Strategy.SKILL_LEVEL:
            return lambda s: (-s.skill_level(waiting.skills), s.idle_since, s.id)
        return lambda s: (s.idle_since, s.id)
