"""One agent websocket's outgoing side: a bounded queue of frames and its own writer task.

Dispatch, delivery reports and the socket's own command handler only put frames in this queue;
none of them waits for the client to read. So a console that stops reading (a frozen tab, a
network path that went dead without a reset) cannot hold up offers and messages for everyone
else. Past its budget (more than ``max_bytes`` waiting, or one frame or the close handshake not
taken within ``send_timeout``) the connection is dropped: its transport is aborted, because a
graceful close would wait for the very buffer that is full. The console reconnects and resyncs
from the snapshot every new socket gets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from aiohttp import web

log = logging.getLogger(__name__)


class Dropped(StrEnum):
    """Why a connection was dropped (the ``reason`` label of the dropped-sockets metric)."""

    QUEUE_FULL = "queue_full"
    SEND_TIMEOUT = "send_timeout"


@dataclass(frozen=True, slots=True)
class SendBudget:
    """How far one agent socket may fall behind before it is dropped
    (``server.agent_queue_bytes``, ``server.agent_send_timeout``)."""

    max_bytes: int = 4 * 1024 * 1024
    send_timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class _Close:
    code: int
    message: bytes


class AgentLink:
    """Queues frames for one websocket and sends them, in order, from its own task."""

    def __init__(
        self,
        socket: web.WebSocketResponse,
        transport: asyncio.Transport | None,
        budget: SendBudget,
        *,
        name: str = "",
        on_drop: Callable[[Dropped], None] | None = None,
    ) -> None:
        self.socket = socket
        self.name = name
        self._transport = transport
        self._budget = budget
        self._on_drop = on_drop
        self._queue: deque[tuple[str, int] | _Close] = deque()
        self._queued_bytes = 0
        self._ready = asyncio.Event()
        self._closing = False  # no more frames are taken
        self.dropped: Dropped | None = None
        self._task = asyncio.create_task(self._write(), name=f"agent-link {name}")

    @property
    def open(self) -> bool:
        """Whether frames queued now can still reach the client."""
        return not self._closing and self.dropped is None and not self.socket.closed

    def send(self, data: bytes) -> bool:
        """Queue one frame without waiting; False if it will not go out (the socket is closing,
        or this frame would put it over budget: then the connection is dropped)."""
        if not self.open:
            return False
        size = len(data)
        if self._queue and self._queued_bytes + size > self._budget.max_bytes:
            self._drop(Dropped.QUEUE_FULL)
            return False
        self._queue.append((data.decode(), size))
        self._queued_bytes += size
        self._ready.set()
        return True

    def close(self, code: int, message: bytes) -> None:
        """Send what is queued, then close the websocket with ``code``; take nothing more."""
        if self._closing or self.dropped is not None:
            return
        self._closing = True
        self._queue.append(_Close(code, message))
        self._ready.set()

    async def finish(self) -> None:
        """Let queued frames (and a requested close) go out within the send timeout, else drop
        the connection; never leaves a socket behind that the server's own close would wait
        on forever. Call it when the socket's handler ends; safe to call more than once."""
        self._closing = True
        self._ready.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), self._budget.send_timeout)
        except TimeoutError:
            self._drop(Dropped.SEND_TIMEOUT)
        transport = self._transport
        if (
            self.dropped is None
            and transport is not None
            and not transport.is_closing()
            and transport.get_write_buffer_size() > 0
            and self.socket.closed
        ):
            # closed by the heartbeat or by us, but the client reads nothing: a graceful close
            # of the transport would wait for its buffer forever
            self._drop(Dropped.SEND_TIMEOUT)

    async def _write(self) -> None:
        while True:
            while not self._queue:
                if self._closing:
                    return
                self._ready.clear()
                await self._ready.wait()
            item = self._queue.popleft()
            try:
                async with asyncio.timeout(self._budget.send_timeout):
                    if isinstance(item, _Close):
                        await self.socket.close(code=item.code, message=item.message)
                        return
                    text, size = item
                    self._queued_bytes -= size
                    await self.socket.send_str(text)
            except TimeoutError:
                self._drop(Dropped.SEND_TIMEOUT)
                return
            except (ConnectionError, RuntimeError) as exc:  # the socket is going away
                log.debug("agent socket %s: not sent (%s)", self.name, exc)
                self._closing = True
                self._queue.clear()
                self._queued_bytes = 0
                return

    def _drop(self, reason: Dropped) -> None:
        if self.dropped is not None:
            return
        self.dropped = reason
        self._closing = True
        self._queue.clear()
        self._queued_bytes = 0
        log.warning(
            "agent socket %s dropped (%s): the console stopped reading; it resyncs when it "
            "reconnects",
            self.name,
            reason,
        )
        if self._transport is not None:
            self._transport.abort()
        if self._on_drop is not None:
            with contextlib.suppress(Exception):
                self._on_drop(reason)
        if asyncio.current_task() is not self._task:
            self._task.cancel()
