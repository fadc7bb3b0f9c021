"""The queued backlog at start-up: taken in page by page while the hub already works.

Every waiting conversation is a few long-lived objects; taking in 100,000 of them would run a
full garbage collection each time their number grew by a quarter (4 s of stalls measured), and
every later full collection would walk them all again. So: no collections while they come in
(reference counting still frees what dies), and a large backlog is frozen out of later
collections (as the app does with the rules).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable

from hub.store.records import ConversationSummary
from rules.decision import Priority

log = logging.getLogger(__name__)

FREEZE_BACKLOG = 10_000  # a backlog this large is kept out of later garbage collections
# the order the backlog is read in: most urgent priority first (the store is told, it does not
# know the rules' priorities), an unknown one as normal
URGENCY = {str(priority): priority.rank for priority in Priority}
DEFAULT_URGENCY = Priority.NORMAL.rank

Row = ConversationSummary


class Backlog:
    """Reads the store's queued conversations once; :attr:`loaded` is set when all are in."""

    def __init__(self) -> None:
        #: set once every conversation the store had queued at start is in memory
        self.loaded = asyncio.Event()
        self.size = 0
        # conversations this process took in or settled while the backlog was being read: a
        # page read earlier must not bring them back as waiting
        self._settled: set[str] | None = set()

    def settle(self, conversation_id: str) -> None:
        """``conversation_id`` is known now (queued from the bus, offered, closed): a page
        read before must not queue it again."""
        if self._settled is not None:
            self._settled.add(conversation_id)

    async def load(
        self, pages: AsyncIterator[list[Row]], take: Callable[[list[Row]], None]
    ) -> None:
        """Hand each page's rows that were not settled meanwhile to ``take``, most urgent and
        oldest first (the order of ``pages``), letting the hub answer between pages."""
        began = time.monotonic()
        collecting = gc.isenabled()
        gc.disable()
        try:
            async for page in pages:
                settled = self._settled or set()
                take([row for row in page if row.id not in settled])
                self.size += len(page)
                await asyncio.sleep(0)  # let the hub answer between pages
        except Exception:
            log.exception("reading the queued backlog failed; restart to take in the rest")
            raise
        finally:
            if collecting:
                gc.enable()
            self._settled = None
            self.loaded.set()
        if self.size >= FREEZE_BACKLOG:
            gc.freeze()
        log.info(
            "dispatch backlog in memory: %d queued conversations in %.1f s",
            self.size,
            time.monotonic() - began,
        )
