"""Which conversations a caller may find and open read-only (``conversations.read``). Pure.

Supervisors and admins: all. An agent: those in the queues they serve (every queue when their
``queues`` is empty) and those assigned to them. The search statement applies it in SQL
(``hub.search.sql``), the websocket's ``open`` to one conversation (:meth:`Scope.covers`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hub.permissions import Action, Role, needs_relation


@dataclass(frozen=True, slots=True)
class Scope:
    everything: bool
    agent: str = ""
    queues: frozenset[str] = frozenset()

    def covers(self, queue: str | None, assignee: str | None) -> bool:
        """Whether a conversation in ``queue`` held by ``assignee`` is within the scope."""
        return self.everything or queue in self.queues or (assignee == self.agent != "")


def scope_of(role: Role, agent: str, served: Iterable[str], all_queues: Iterable[str]) -> Scope:
    """The scope of ``agent`` with ``role`` who serves ``served`` (empty: every queue)."""
    if not needs_relation(role, Action.READ_CONVERSATIONS):
        return Scope(everything=True)
    return Scope(everything=False, agent=agent, queues=frozenset(served) or frozenset(all_queues))
