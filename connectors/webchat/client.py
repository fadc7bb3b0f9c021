"""The other end of web chat: the visitors' open chat windows (websockets), I/O.

Web chat has no provider API; its "provider" is the visitor's browser. This module is how the
connector talks to it: the windows open per visitor (a reply goes to all of them), and sending
and receiving frames on one socket. What the frames mean is :mod:`connectors.webchat.parse`.
"""

from __future__ import annotations

import contextlib

from aiohttp import WSMsgType, web

from connectors.webchat import parse


class Windows:
    """Every open chat window per visitor id."""

    def __init__(self) -> None:
        self._sockets: dict[str, set[web.WebSocketResponse]] = {}

    def count(self, visitor: str) -> int:
        """How many windows ``visitor`` has open."""
        return len(self._sockets.get(visitor, ()))

    def add(self, visitor: str, socket: web.WebSocketResponse) -> bool:
        """Count ``socket`` as one of ``visitor``'s windows; True if it is the first one."""
        sockets = self._sockets.setdefault(visitor, set())
        sockets.add(socket)
        return len(sockets) == 1

    def discard(self, visitor: str, socket: web.WebSocketResponse) -> bool:
        """``socket`` closed; True if it was ``visitor``'s last window."""
        sockets = self._sockets.get(visitor)
        if sockets is None:
            return False
        sockets.discard(socket)
        if sockets:
            return False
        del self._sockets[visitor]
        return True

    async def push(self, visitor: str, text: str) -> int:
        """Send frame ``text`` to every open window of ``visitor``; how many took it."""
        delivered = 0
        for socket in list(self._sockets.get(visitor, ())):
            if await send_frame(socket, text):
                delivered += 1
        return delivered

    async def close_all(self, code: int, message: bytes) -> None:
        """Close every window (the hub is stopping)."""
        for sockets in list(self._sockets.values()):
            for socket in list(sockets):
                await socket.close(code=code, message=message)


async def send_frame(socket: web.WebSocketResponse, text: str) -> bool:
    """Send one frame; False if the socket is closed or breaks meanwhile."""
    if socket.closed:
        return False
    with contextlib.suppress(ConnectionError, RuntimeError):
        await socket.send_str(text)
        return True
    return False


async def send_error(
    socket: web.WebSocketResponse, code: str, message: str, client_id: str | None = None
) -> None:
    """Tell the visitor what went wrong (nothing if the window is gone)."""
    await send_frame(socket, parse.encode("error", code=code, message=message, client_id=client_id))


async def receive_hello(
    socket: web.WebSocketResponse, *, max_chars: int, wait: float
) -> parse.Hello | None:
    """The visitor's first frame, which must be ``hello`` within ``wait`` seconds; None
    after closing the socket with a 44xx code if it is not."""
    try:
        message = await socket.receive(timeout=wait)
    except TimeoutError:
        await socket.close(code=4408, message=b"hello expected")
        return None
    if message.type is not WSMsgType.TEXT:
        await socket.close(code=4400, message=b"hello expected")
        return None
    try:
        command = parse.parse_frame(message.data, max_chars=max_chars)
    except parse.ChatProtocolError as exc:
        await socket.send_str(parse.encode("error", code=exc.code, message=exc.message))
        await socket.close(code=4400, message=b"hello expected")
        return None
    if not isinstance(command, parse.Hello):
        await socket.send_str(
            parse.encode("error", code="hello_expected", message="send hello first")
        )
        await socket.close(code=4400, message=b"hello expected")
        return None
    return command
