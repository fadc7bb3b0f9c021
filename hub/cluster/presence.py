"""Who holds which agent's sockets, as the dispatch owner and each node see it. Pure.

The owner's :class:`PresenceTable` counts an agent connected once per node holding at least
one of its sockets (dispatch's core counts connections the same way). Each node numbers the
changes of each agent's presence on it (:class:`LocalPresence`); calls and beats carry the
number, and the table applies a view only if it is newer than the one it has, so a beat
overtaken by a later call (they travel on different streams) changes nothing. A node not
heard from for ``timeout`` is dead: its agents leave.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Change:
    """Dispatch must count one connection of ``agent`` more (``joined``) or less."""

    agent: str
    joined: bool


@dataclass(slots=True)
class _Node:
    last_seen: float
    present: set[str] = field(default_factory=set)
    versions: dict[str, int] = field(default_factory=dict)


class PresenceTable:
    """The owner's view of every node (``local``: its own, never expires)."""

    def __init__(self, local: str) -> None:
        self.local = local
        self._nodes: dict[str, _Node] = {}
        self._holders: dict[str, set[str]] = {}  # agent: nodes holding a socket of it

    def holders(self, agent: str) -> frozenset[str]:
        return frozenset(self._holders.get(agent, ()))

    def nodes(self) -> list[str]:
        return sorted(self._nodes)

    def apply(self, node: str, agent: str, present: bool, version: int, now: float) -> list[Change]:
        """One node's view of one agent (a call); what dispatch must count."""
        state = self._node(node, now)
        if version <= state.versions.get(agent, -1):
            return []
        state.versions[agent] = version
        return self._set(node, state, agent, present)

    def beat(
        self, node: str, present: set[str], versions: dict[str, int], now: float
    ) -> list[Change]:
        """A node's whole view; agents whose number is older than the table's are skipped."""
        state = self._node(node, now)
        changes: list[Change] = []
        for agent in sorted(set(versions) | state.present):
            version = versions.get(agent, 0)
            if version < state.versions.get(agent, 0):
                continue
            state.versions[agent] = version
            changes += self._set(node, state, agent, agent in present)
        return changes

    def expire(self, now: float, timeout: float) -> tuple[list[str], list[Change]]:
        """Forget nodes silent for ``timeout``: the dead nodes and what dispatch must count."""
        dead = [
            name
            for name, state in self._nodes.items()
            if name != self.local and now - state.last_seen >= timeout
        ]
        changes: list[Change] = []
        for name in sorted(dead):
            state = self._nodes.pop(name)
            for agent in sorted(state.present):
                changes += self._leave(name, agent)
        return sorted(dead), changes

    def _node(self, node: str, now: float) -> _Node:
        state = self._nodes.get(node)
        if state is None:
            state = self._nodes[node] = _Node(last_seen=now)
        state.last_seen = max(state.last_seen, now)
        return state

    def _set(self, node: str, state: _Node, agent: str, present: bool) -> list[Change]:
        if present and agent not in state.present:
            state.present.add(agent)
            self._holders.setdefault(agent, set()).add(node)
            return [Change(agent, joined=True)]
        if not present and agent in state.present:
            state.present.discard(agent)
            return self._leave(node, agent)
        return []

    def _leave(self, node: str, agent: str) -> list[Change]:
        holders = self._holders.get(agent, set())
        holders.discard(node)
        if not holders:
            self._holders.pop(agent, None)
        return [Change(agent, joined=False)]


class LocalPresence:
    """A node's own sockets per agent and the number of each agent's last change."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.versions: dict[str, int] = {}

    def opened(self, agent: str) -> tuple[bool, int]:
        """A socket of ``agent`` opened: (present, version) to tell the owner."""
        self.counts[agent] = self.counts.get(agent, 0) + 1
        return True, self._bump(agent)

    def closed(self, agent: str) -> tuple[bool, int]:
        count = max(0, self.counts.get(agent, 0) - 1)
        if count:
            self.counts[agent] = count
        else:
            self.counts.pop(agent, None)
        return bool(count), self._bump(agent)

    def present(self) -> set[str]:
        return set(self.counts)

    def _bump(self, agent: str) -> int:
        self.versions[agent] = version = self.versions.get(agent, 0) + 1
        return version
