"""The decision the rules engine hands to dispatch."""

from __future__ import annotations

import enum

import msgspec


class Priority(enum.StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"

    @property
    def rank(self) -> int:
        """Higher is more urgent; used to order waiting work."""
        return _RANKS[self]


_RANKS = {Priority.LOW: 0, Priority.NORMAL: 1, Priority.HIGH: 2, Priority.URGENT: 3}


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """Where a message goes and what the agent must be told about it.

    ``rules`` names the rules that fired, in order, so routing can be explained later.
    """

    queue: str
    priority: Priority = Priority.NORMAL
    sla_seconds: int | None = None
    skills: tuple[str, ...] = ()
    agent: str | None = None  # offered to this agent first, if they are free in time
    instructions: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    auto_reply: str | None = None
    rules: tuple[str, ...] = ()
    revision: str | None = None  # sha256 of the rules file that decided


def passthrough(default_queue: str) -> Decision:
    """The decision used while no rules are configured: everything to the default queue."""
    return Decision(queue=default_queue)
