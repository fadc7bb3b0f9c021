"""The dispatch decision core: state + event -> actions, no I/O, no clock of its own.

Every method takes ``now`` and returns the actions the shell must carry out (persist, send frames).
The walking-skeleton policy: one offer at a time per conversation, to the longest-idle available
agent with spare capacity who serves the conversation's queue and has not just declined it; an
offer that is not answered in time moves on; an agent who stays disconnected past the grace period
loses their conversations back to the queue, with their age and priority kept.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from hub.errors import Forbidden, InvalidState, NotFound
from rules.decision import Priority


class Presence(enum.StrEnum):
    AVAILABLE = "available"
    AWAY = "away"
    OFFLINE = "offline"


@dataclass(frozen=True, slots=True)
class SendOffer:
    agent: str
    conversation_id: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class RevokeOffer:
    agent: str
    conversation_id: str
    reason: str  # timeout | declined | withdrawn


@dataclass(frozen=True, slots=True)
class Assign:
    agent: str
    conversation_id: str
    queue_wait: float  # seconds from queueing to acceptance
    offer_wait: float  # seconds from the offer to acceptance


@dataclass(frozen=True, slots=True)
class Requeue:
    agent: str
    conversation_id: str
    reason: str  # disconnected | transferred


Action = SendOffer | RevokeOffer | Assign | Requeue


@dataclass(slots=True)
class AgentState:
    id: str
    capacity: int
    queues: frozenset[str]
    connections: int = 0
    presence: Presence = Presence.OFFLINE
    assigned: set[str] = field(default_factory=set)
    offers: set[str] = field(default_factory=set)
    idle_since: float = 0.0
    offline_since: float | None = None

    @property
    def load(self) -> int:
        return len(self.assigned) + len(self.offers)

    def serves(self, queue: str) -> bool:
        return not self.queues or queue in self.queues


@dataclass(slots=True)
class Waiting:
    conversation_id: str
    queue: str
    rank: int
    queued_at: float
    declined_until: dict[str, float] = field(default_factory=dict)
    offer: tuple[str, float] | None = None  # (agent, expires_at)

    def sort_key(self) -> tuple[int, float, str]:
        return (-self.rank, self.queued_at, self.conversation_id)


class DispatchCore:
    def __init__(
        self, *, offer_timeout: float, disconnect_grace: float, decline_cooldown: float
    ) -> None:
        self.offer_timeout = offer_timeout
        self.disconnect_grace = disconnect_grace
        self.decline_cooldown = decline_cooldown
        self.agents: dict[str, AgentState] = {}
        self.waiting: dict[str, Waiting] = {}
        self.owner: dict[str, str] = {}  # conversation id -> agent id

    # -- setup -----------------------------------------------------------------------------

    def add_agent(self, agent: str, *, capacity: int, queues: frozenset[str] = frozenset()) -> None:
        self.agents[agent] = AgentState(agent, capacity, queues)

    def restore_assigned(self, conversation_id: str, agent: str, now: float) -> list[Action]:
        """A conversation the store says is assigned; an unknown agent's goes back to the queue."""
        state = self.agents.get(agent)
        if state is None:
            return [Requeue(agent, conversation_id, "unknown_agent")]
        state.assigned.add(conversation_id)
        self.owner[conversation_id] = agent
        if state.connections == 0 and state.offline_since is None:
            state.offline_since = now
        return []

    # -- events ----------------------------------------------------------------------------

    def enqueue(
        self, conversation_id: str, queue: str, priority: str, queued_at: float, now: float
    ) -> list[Action]:
        """A conversation waits for an agent (new, requeued or restored)."""
        if conversation_id in self.owner or conversation_id in self.waiting:
            return []
        self._wait(conversation_id, queue, priority, queued_at)
        return self._match(now)

    def connect(self, agent: str, now: float) -> list[Action]:
        state = self._agent(agent)
        state.connections += 1
        if state.presence is Presence.OFFLINE:
            state.presence = Presence.AVAILABLE
            state.idle_since = now
        state.offline_since = None
        return self._match(now)

    def disconnect(self, agent: str, now: float) -> list[Action]:
        state = self._agent(agent)
        state.connections = max(0, state.connections - 1)
        if state.connections:
            return []
        state.presence = Presence.OFFLINE
        state.offline_since = now
        actions: list[Action] = []
        for conversation_id in sorted(state.offers):
            actions.extend(self._withdraw(state, conversation_id, "withdrawn", now, cooldown=False))
        return actions + self._match(now)

    def set_presence(self, agent: str, presence: Presence, now: float) -> list[Action]:
        state = self._agent(agent)
        if presence is Presence.OFFLINE or state.connections == 0:
            raise InvalidState("presence is derived from the connection; use available or away")
        if state.presence is not presence and presence is Presence.AVAILABLE:
            state.idle_since = now
        state.presence = presence
        actions: list[Action] = []
        if presence is Presence.AWAY:
            for conversation_id in sorted(state.offers):
                actions.extend(
                    self._withdraw(state, conversation_id, "withdrawn", now, cooldown=False)
                )
        return actions + self._match(now)

    def accept(self, agent: str, conversation_id: str, now: float) -> list[Action]:
        waiting = self.waiting.get(conversation_id)
        if waiting is None or waiting.offer is None or waiting.offer[0] != agent:
            raise InvalidState("this offer is no longer open")
        state = self._agent(agent)
        del self.waiting[conversation_id]
        state.offers.discard(conversation_id)
        state.assigned.add(conversation_id)
        self.owner[conversation_id] = agent
        offered_at = waiting.offer[1] - self.offer_timeout
        return [
            Assign(
                agent,
                conversation_id,
                queue_wait=max(0.0, now - waiting.queued_at),
                offer_wait=max(0.0, now - offered_at),
            )
        ]

    def decline(self, agent: str, conversation_id: str, now: float) -> list[Action]:
        waiting = self.waiting.get(conversation_id)
        if waiting is None or waiting.offer is None or waiting.offer[0] != agent:
            raise InvalidState("this offer is no longer open")
        state = self._agent(agent)
        return self._withdraw(state, conversation_id, "declined", now, cooldown=True) + self._match(
            now
        )

    def release(self, agent: str, conversation_id: str, now: float) -> list[Action]:
        """The agent is done with a conversation (closed): capacity frees up."""
        self._check_owner(agent, conversation_id)
        state = self._agent(agent)
        state.assigned.discard(conversation_id)
        del self.owner[conversation_id]
        if not state.assigned:
            state.idle_since = now
        return self._match(now)

    def forget(self, agent: str, conversation_id: str) -> None:
        """Undo an acceptance the shell could not persist (the store has the truth)."""
        if self.owner.get(conversation_id) == agent:
            del self.owner[conversation_id]
        self._agent(agent).assigned.discard(conversation_id)

    def transfer_to_queue(
        self,
        agent: str,
        conversation_id: str,
        queue: str,
        priority: str,
        queued_at: float,
        now: float,
    ) -> list[Action]:
        """The agent hands a conversation back to a queue; it is not offered back to them soon."""
        self._check_owner(agent, conversation_id)
        state = self._agent(agent)
        state.assigned.discard(conversation_id)
        del self.owner[conversation_id]
        actions: list[Action] = [Requeue(agent, conversation_id, "transferred")]
        waiting = self._wait(conversation_id, queue, priority, queued_at)
        waiting.declined_until[agent] = now + self.decline_cooldown
        return actions + self._match(now)

    def tick(self, now: float) -> list[Action]:
        """Expire offers and disconnect grace periods that are due."""
        actions: list[Action] = []
        for waiting in sorted(self.waiting.values(), key=Waiting.sort_key):
            for agent in [a for a, until in waiting.declined_until.items() if until <= now]:
                del waiting.declined_until[agent]
            if waiting.offer is not None and waiting.offer[1] <= now:
                state = self._agent(waiting.offer[0])
                actions += self._withdraw(
                    state, waiting.conversation_id, "timeout", now, cooldown=True
                )
        for state in self.agents.values():
            if (
                state.offline_since is not None
                and state.connections == 0
                and state.offline_since + self.disconnect_grace <= now
            ):
                state.offline_since = None
                for conversation_id in sorted(state.assigned):
                    state.assigned.discard(conversation_id)
                    del self.owner[conversation_id]
                    actions.append(Requeue(state.id, conversation_id, "disconnected"))
        return actions + self._match(now)

    def requeued(
        self, conversation_id: str, queue: str, priority: str, queued_at: float, now: float
    ) -> list[Action]:
        """After the shell persisted a :class:`Requeue`, the conversation waits again."""
        return self.enqueue(conversation_id, queue, priority, queued_at, now)

    def next_deadline(self) -> float | None:
        """When :meth:`tick` next has something to do, or None."""
        deadlines = [w.offer[1] for w in self.waiting.values() if w.offer is not None]
        deadlines += [
            s.offline_since + self.disconnect_grace
            for s in self.agents.values()
            if s.offline_since is not None and s.assigned
        ]
        deadlines += [
            until
            for w in self.waiting.values()
            if w.offer is None
            for until in w.declined_until.values()
        ]
        return min(deadlines) if deadlines else None

    def waiting_in(self, queue: str) -> int:
        return sum(1 for waiting in self.waiting.values() if waiting.queue == queue)

    # -- internals -------------------------------------------------------------------------

    def _wait(self, conversation_id: str, queue: str, priority: str, queued_at: float) -> Waiting:
        try:
            rank = Priority(priority).rank
        except ValueError:
            rank = Priority.NORMAL.rank
        waiting = self.waiting[conversation_id] = Waiting(conversation_id, queue, rank, queued_at)
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
        state.offers.discard(conversation_id)
        if cooldown:
            waiting.declined_until[state.id] = now + self.decline_cooldown
        return [RevokeOffer(state.id, conversation_id, reason)]

    def _match(self, now: float) -> list[Action]:
        candidates = [
            state
            for state in self.agents.values()
            if state.presence is Presence.AVAILABLE
            and state.connections
            and state.load < state.capacity
        ]
        if not candidates:
            return []
        actions: list[Action] = []
        for waiting in sorted(self.waiting.values(), key=Waiting.sort_key):
            if waiting.offer is not None:
                continue
            best: AgentState | None = None
            for state in candidates:
                if state.load >= state.capacity or not state.serves(waiting.queue):
                    continue
                if waiting.declined_until.get(state.id, 0.0) > now:
                    continue
                if best is None or (state.load, state.idle_since, state.id) < (
                    best.load,
                    best.idle_since,
                    best.id,
                ):
                    best = state
            if best is None:
                continue
            expires_at = now + self.offer_timeout
            waiting.offer = (best.id, expires_at)
            best.offers.add(waiting.conversation_id)
            best.idle_since = now
            actions.append(SendOffer(best.id, waiting.conversation_id, expires_at))
        return actions
