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

from hub.dispatch.expiry import Expiry
from hub.dispatch.model import (
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
from hub.dispatch.state import DECLINED, GRACE, PREFERRED, WRAP
from hub.errors import InvalidState

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


class DispatchCore(Expiry):
    """The events the shell reports (set-up, connections, presence, offers answered, work
    released or transferred); matching, expiry and state live in the base classes
    (``hub.dispatch.matching``, ``hub.dispatch.expiry``, ``hub.dispatch.state``)."""

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
            self.deadlines.push(now + self.disconnect_grace, GRACE, agent)
        return []

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
        self.deadlines.push(now + self.disconnect_grace, GRACE, agent)
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
            self.deadlines.push(state.wrap_up_until, WRAP, agent)
        return self._match_agents([state], now)

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
            self.deadlines.push(now + self.decline_cooldown, DECLINED, conversation_id, avoid)
        if preferred_agent in self.agents and window > 0:
            waiting.preferred = (preferred_agent, now + window)
            self.deadlines.push(now + window, PREFERRED, conversation_id)
        self._schedule_overflow(waiting)
        return actions + self._match_conversations([conversation_id], now)
