"""A Jepsen-style history of what clients saw a cluster do, and the invariants checked over it.

Clients record every operation with the time they *sent* it and the time they *received* its
answer (one clock: everything runs on this machine). The checker never trusts a client's belief,
only what the hub confirmed, and judges with the interval the confirmation guarantees:

- an agent held a conversation at least from the frame that showed it held (``conversation``
  after ``accept``, or a ``snapshot`` listing it) was *received* until its last confirmed
  action on it (``reply_ack``, ``conversation_closed``) was *sent*: the hub had assigned it
  before the first and still had it assigned when it applied the second;
- an offer was outstanding at least from its receipt until the accept the hub took was sent.

Two agents' guaranteed intervals for the same conversation that overlap are a real violation,
whatever the network delays were. The checks are pure: ``tests/test_history.py`` feeds them
hand-made histories, with and without violations.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class Inbound:
    """One customer message: its provider id, when it was first sent, when a 2xx came back."""

    key: str
    sent_at: float
    acked_at: float | None = None
    attempts: int = 0


@dataclass(frozen=True)
class Interval:
    agent: str
    conversation: str
    start: float
    end: float

    def overlaps(self, other: Interval) -> bool:
        return self.start < other.end and other.start < self.end


@dataclass
class Reply:
    agent: str
    conversation: str
    client_id: str
    sent_at: float
    acked_at: float | None = None
    message_id: str | None = None


@dataclass
class History:
    inbound: dict[str, Inbound] = field(default_factory=dict)
    holds: list[Interval] = field(default_factory=list)
    offers: list[Interval] = field(default_factory=list)
    replies: dict[str, Reply] = field(default_factory=dict)  # by client_id
    log: list[tuple[float, str]] = field(default_factory=list)  # free text, for a failure

    def note(self, at: float, what: str) -> None:
        self.log.append((at, what))

    def acked_inbound(self) -> list[Inbound]:
        return [item for item in self.inbound.values() if item.acked_at is not None]

    def acked_replies(self) -> list[Reply]:
        return [reply for reply in self.replies.values() if reply.acked_at is not None]


def lost_or_doubled_inbound(history: History, stored: Counter[str]) -> list[str]:
    """Every acknowledged message stored, none stored twice (``stored``: copies per key)."""
    problems = [
        f"inbound {item.key} acknowledged at {item.acked_at:.3f} but not stored"
        for item in history.acked_inbound()
        if stored[item.key] == 0
    ]
    problems += [
        f"inbound {key} stored {count} times" for key, count in stored.items() if count > 1
    ]
    return problems


def _overlapping(intervals: Iterable[Interval], what: str) -> list[str]:
    by_conversation: dict[str, list[Interval]] = defaultdict(list)
    for interval in intervals:
        by_conversation[interval.conversation].append(interval)
    problems = []
    for conversation, found in by_conversation.items():
        found.sort(key=lambda interval: interval.start)
        for index, first in enumerate(found):
            for second in found[index + 1 :]:
                if second.agent != first.agent and first.overlaps(second):
                    problems.append(
                        f"conversation {conversation} {what} {first.agent} "
                        f"[{first.start:.3f}, {first.end:.3f}] and {second.agent} "
                        f"[{second.start:.3f}, {second.end:.3f}] at once"
                    )
    return problems


def held_twice(history: History) -> list[str]:
    """A conversation is never assigned to two agents at once."""
    return _overlapping(history.holds, "held by")


def offered_twice(history: History) -> list[str]:
    """No offer outstanding to two agents at once."""
    return _overlapping(history.offers, "offered to")


def replies_sent_wrongly(history: History, provider_bodies: list[str]) -> list[str]:
    """No reply sent to the provider twice; every acknowledged reply sent. A reply's text
    carries its client id (``reply <client_id>``), which is how the provider's copy is named."""
    sent = Counter(body.removeprefix("reply ") for body in provider_bodies)
    problems = [f"reply {key} sent to the provider {n} times" for key, n in sent.items() if n > 1]
    problems += [
        f"reply {reply.client_id} by {reply.agent} acknowledged at {reply.acked_at:.3f} never sent"
        for reply in history.acked_replies()
        if sent[reply.client_id] == 0
    ]
    unknown = set(sent) - set(history.replies)
    problems += [f"the provider got a reply nobody sent: {key}" for key in sorted(unknown)]
    return problems


def violations(history: History, stored: Counter[str], provider_bodies: list[str]) -> list[str]:
    return (
        lost_or_doubled_inbound(history, stored)
        + held_twice(history)
        + offered_twice(history)
        + replies_sent_wrongly(history, provider_bodies)
    )
