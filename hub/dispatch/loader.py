"""Batched loads: many frames that each need a conversation cost a few statements together."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any


class BatchLoader:
    """Loads many keys with one call: a key asked for while a load runs waits for the next
    one, which takes every key asked for meanwhile (up to ``limit``). N concurrent frames
    cost a few statements instead of N times a few."""

    def __init__(
        self, fetch: Callable[[list[str]], Awaitable[dict[str, Any]]], limit: int = 256
    ) -> None:
        self._fetch = fetch
        self._limit = limit
        self._asked: dict[str, asyncio.Future[Any]] = {}
        self._running: asyncio.Task[None] | None = None

    async def get(self, key: str) -> Any:
        """What the fetch gave for ``key`` (None if it gave nothing)."""
        future = self._asked.get(key)
        if future is None:
            future = self._asked[key] = asyncio.get_running_loop().create_future()
            if self._running is None:
                self._running = asyncio.create_task(self._run(), name="dispatch-loads")
        # not shielded (a shield per call costs a future and callbacks): callers are cancelled
        # only when the service stops, and then nobody needs the answer
        return await future

    async def close(self) -> None:
        """Stop loading; whoever still waits gets CancelledError."""
        if self._running is not None:
            self._running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._running
        for future in self._asked.values():
            future.cancel()
        self._asked.clear()

    async def _run(self) -> None:
        try:
            while self._asked:
                keys = list(self._asked)[: self._limit]
                batch = {key: self._asked.pop(key) for key in keys}
                try:
                    found = await self._fetch(keys)
                except Exception as exc:
                    for future in batch.values():
                        if not future.done():
                            future.set_exception(exc)
                            future.exception()  # told to whoever waits; not "never retrieved"
                    continue
                except asyncio.CancelledError:
                    for future in batch.values():
                        future.cancel()
                    raise
                for key, future in batch.items():
                    if not future.done():
                        future.set_result(found.get(key))
        finally:
            self._running = None
