"""One storing task per idempotency key, and a memory of the keys stored lately.

Providers redeliver what they think was not acknowledged, sometimes while the first copy is
still being stored (a webhook retried after a timeout, a gateway that posts twice). The hub's
ingest is idempotent, but a second copy would still cost a media download or an OCR run, and two
copies stored concurrently race for the same key. So a connector runs the work for a key
through :meth:`SingleFlight.run`: a copy that arrives while the first is running waits for it and
shares its outcome (its result, or its exception: then neither is acknowledged and the provider
retries), and a copy of a key remembered as done is answered at once.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """The running work per key, and the last ``remember`` keys whose work is done."""

    def __init__(self, remember: int) -> None:
        self._limit = remember
        self._running: dict[str, asyncio.Future[T]] = {}
        self._done: OrderedDict[str, None] = OrderedDict()

    def remembered(self, key: str) -> bool:
        """Whether the work for ``key`` finished lately (a copy of it needs nothing done)."""
        return key in self._done

    def running(self, key: str) -> bool:
        """Whether the work for ``key`` is running now."""
        return key in self._running

    def remember(self, key: str) -> None:
        """Mark ``key`` done; the oldest keys are forgotten beyond ``remember`` of them."""
        self._done[key] = None
        self._done.move_to_end(key)
        while len(self._done) > self._limit:
            self._done.popitem(last=False)

    def waiting(self) -> list[asyncio.Future[T]]:
        """The outcomes of the work running now (to wait until all of it is done)."""
        return list(self._running.values())

    async def run(
        self, key: str, work: Callable[[], Awaitable[T]], *, remember: bool = True
    ) -> tuple[T, bool]:
        """``work()``'s result for ``key``, and whether this call ran it (True) or waited for
        a call already running it (False). The work's exception, cancellation included, is
        raised to its caller and to every call waiting for it. With ``remember`` a successful
        key is remembered as done; pass False to :meth:`remember` it later yourself (when the
        work only began what has to be finished)."""
        running = self._running.get(key)
        if running is not None:
            return await asyncio.shield(running), False
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._running[key] = future
        try:
            result = await work()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it themselves
            raise
        finally:
            self._running.pop(key, None)
        future.set_result(result)
        if remember:
            self.remember(key)
        return result, True
