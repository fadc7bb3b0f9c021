"""Which agent websockets are open in this process, and queueing frames for them."""

from __future__ import annotations

import asyncio

from hub.console.link import AgentLink


class AgentConnections:
    """Agent id -> the outgoing links of their open websockets (an agent may have several tabs).

    :meth:`send` never waits for a client: each link has its own queue and writer task
    (``hub.console.link``), so one console that stops reading holds up nobody else.
    """

    def __init__(self) -> None:
        self._links: dict[str, set[AgentLink]] = {}

    def add(self, agent: str, link: AgentLink) -> None:
        self._links.setdefault(agent, set()).add(link)

    def remove(self, agent: str, link: AgentLink) -> int:
        """Forget a link; return how many the agent still has open."""
        links = self._links.get(agent, set())
        links.discard(link)
        if not links:
            self._links.pop(agent, None)
        return len(links)

    def links(self) -> dict[str, set[AgentLink]]:
        """Every agent's open links (a copy)."""
        return {agent: set(links) for agent, links in self._links.items()}

    def count(self, agent: str) -> int:
        return len(self._links.get(agent, ()))

    async def send(self, agent: str, data: bytes) -> int:
        """Queue one frame for every socket of ``agent``; return how many took it. Returns at
        once (it is a coroutine for the dispatch's notifier interface)."""
        return sum(1 for link in list(self._links.get(agent, ())) if link.send(data))

    async def close_all(self, code: int, message: bytes) -> None:
        """Close every socket after what is queued for it (each within its send budget)."""
        links = [link for links in self._links.values() for link in links]
        for link in links:
            link.close(code, message)
        await asyncio.gather(*(link.finish() for link in links))
