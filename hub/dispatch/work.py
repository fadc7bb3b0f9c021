"""Dispatch's work in flight: every action being carried out is a task here, and the bus
follower waits while there are too many (backpressure instead of memory growing)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class InFlight:
    """The tasks carrying out actions; :meth:`room` waits while ``limit`` or more run."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.tasks: set[asyncio.Future[Any]] = set()
        self._room = asyncio.Event()  # set while fewer than ``limit`` run

    def __len__(self) -> int:
        return len(self.tasks)

    def track(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run ``work`` as a task that :meth:`cancel_all` stops."""
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self._done)
        return task

    async def room(self) -> None:
        """Return at once, or once fewer than ``limit`` tasks run."""
        if len(self.tasks) >= self.limit:
            # the bus queue (bounded) fills meanwhile and ingest waits for room
            self._room.clear()
            await self._room.wait()

    def _done(self, task: asyncio.Future[Any]) -> None:
        self.tasks.discard(task)
        if len(self.tasks) < self.limit:
            self._room.set()
