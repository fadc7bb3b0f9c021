"""Which agent websockets are open in this process, and sending frames to them."""

from __future__ import annotations

import logging

from aiohttp import web

log = logging.getLogger(__name__)


class AgentConnections:
    """Agent id -> open websockets (an agent may have several tabs)."""

    def __init__(self) -> None:
        self._sockets: dict[str, set[web.WebSocketResponse]] = {}

    def add(self, agent: str, socket: web.WebSocketResponse) -> None:
        self._sockets.setdefault(agent, set()).add(socket)

    def remove(self, agent: str, socket: web.WebSocketResponse) -> int:
        """Forget a socket; return how many the agent still has open."""
        sockets = self._sockets.get(agent, set())
        sockets.discard(socket)
        if not sockets:
            self._sockets.pop(agent, None)
        return len(sockets)

    def count(self, agent: str) -> int:
        return len(self._sockets.get(agent, ()))

    async def send(self, agent: str, data: bytes) -> int:
        """Send one frame to every socket of ``agent``; return how many took it."""
        sent = 0
        text = data.decode()
        for socket in list(self._sockets.get(agent, ())):
            if socket.closed:
                continue
            try:
                await socket.send_str(text)
                sent += 1
            except (ConnectionError, RuntimeError) as exc:
                log.debug("dropping frame to a closing socket of %s: %s", agent, exc)
        return sent

    async def close_all(self, code: int, message: bytes) -> None:
        for sockets in list(self._sockets.values()):
            for socket in list(sockets):
                await socket.close(code=code, message=message)
