"""The dispatch model: presence, strategies, actions, and the state of agents and waiting work.

Plain data the pure core (``hub.dispatch.core``) works on; nothing here does I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from rules.decision import Priority


class Presence(enum.StrEnum):
    AVAILABLE = "available"
    BUSY = "busy"  # at work, keeps their conversations, takes no new ones (a phone call, say)
    AWAY = "away"  # not at the desk: open offers are withdrawn too
    OFFLINE = "offline"


class Strategy(enum.StrEnum):
    LONGEST_IDLE = "longest-idle"
    LEAST_OCCUPIED = "least-occupied"
    ROUND_ROBIN = "round-robin"
    SKILL_LEVEL = "skill-level"


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
    reason: str  # disconnected | transferred | reassigned | no_reply | unknown_agent


@dataclass(frozen=True, slots=True)
class Moved:
    """An overflow step moved waiting work to another queue (or relaxed its skills)."""

    conversation_id: str
    queue: str
    skills: tuple[str, ...]
    reason: str  # overflow | full
    priority: str | None = None  # the priority after the step (aging may raise it)


Action = SendOffer | RevokeOffer | Assign | Requeue | Moved


@dataclass(frozen=True, slots=True)
class OverflowStep:
    """After ``after`` seconds of waiting: move to ``to``, stop requiring ``drop_skills`` and/or
    raise the priority to at least ``priority``."""

    after: float
    to: str | None = None
    drop_skills: frozenset[str] = frozenset()
    priority: str | None = None  # raise waiting work to at least this priority (aging)


@dataclass(frozen=True, slots=True)
class QueueRules:
    strategy: Strategy = Strategy.LONGEST_IDLE
    skills: frozenset[str] = frozenset()
    overflow: tuple[OverflowStep, ...] = ()
    max_waiting: int | None = None
    when_full: str | None = None  # where new work goes while the queue holds max_waiting
    sla: float | None = None  # first-response target when the rules set none


DEFAULT_RULES = QueueRules()
EXCLUSIVE = "voice"  # the channel that takes an agent's whole attention
_PRIORITIES = {priority.rank: str(priority) for priority in Priority}


@dataclass(slots=True)
class AgentState:
    id: str
    capacity: int  # conversations at once, all channels together
    queues: frozenset[str]
    skills: dict[str, int] = field(default_factory=dict)  # skill -> level (1 = basic)
    channel_capacity: dict[str, int] = field(default_factory=dict)
    auto_accept: frozenset[str] = frozenset()  # channels taken without an offer
    connections: int = 0
    presence: Presence = Presence.OFFLINE
    assigned: set[str] = field(default_factory=set)
    offers: set[str] = field(default_factory=set)
    channels: dict[str, str] = field(default_factory=dict)  # held conversation -> channel
    idle_since: float = 0.0
    offline_since: float | None = None
    wrap_up_until: float = 0.0
    offered_count: int = 0  # round robin: how many offers this agent has had

    @property
    def load(self) -> int:
        return len(self.assigned) + len(self.offers)

    def serves(self, queue: str) -> bool:
        return not self.queues or queue in self.queues

    def room_for(self, channel: str) -> bool:
        if self.load >= self.capacity:
            return False
        # a voice call blocks everything else, and waits for an agent with nothing else open
        if EXCLUSIVE in self.channels.values() or (channel == EXCLUSIVE and self.load):
            return False
        limit = self.channel_capacity.get(channel)
        if limit is None:
            return True
        return sum(1 for held in self.channels.values() if held == channel) < limit

    def has_skills(self, needed: frozenset[str]) -> bool:
        return all(self.skills.get(skill, 0) > 0 for skill in needed)

    def skill_level(self, needed: frozenset[str]) -> int:
        return sum(self.skills.get(skill, 0) for skill in needed)


@dataclass(slots=True)
class Waiting:
    conversation_id: str
    queue: str
    rank: int
    queued_at: float
    channel: str = ""
    skills: frozenset[str] = frozenset()
    required: frozenset[str] = frozenset()  # skills the routing decision asked for
    dropped: frozenset[str] = frozenset()  # relaxed by overflow steps
    steps_done: int = 0  # overflow steps of its queue already applied
    sla: float | None = None  # first-response target (seconds from queued_at)
    preferred: tuple[str, float] | None = None  # (agent, until): sticky routing
    declined_until: dict[str, float] = field(default_factory=dict)
    offer: tuple[str, float] | None = None  # (agent, expires_at)
    seq: int = 0  # when it (last) started waiting: ticks act on due work in this order

    def sort_key(self) -> tuple[int, float, str]:
        return (-self.rank, self.queued_at, self.conversation_id)
