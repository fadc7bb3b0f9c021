"""A heap of moments the dispatch core must act at, with lazy deletion.

The core pushes an entry whenever it sets a deadline (an offer's expiry, a cooldown, a grace
period …) and never looks for old entries when a deadline changes or goes away: an entry is
*live* only while the state it was made from still says the same moment, which the caller's
``live`` function checks when the entry reaches the top. So finding the next deadline costs
O(log n) amortized and a tick touches only what is due, however much work waits.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

#: (at, serial, kind, key, extra): the serial keeps pushes of the same moment in push order
Entry = tuple[float, int, int, str, str]
Live = Callable[[Entry], bool]

_MIN_COMPACT = 1024


class Deadlines:
    def __init__(self, live: Live) -> None:
        self._heap: list[Entry] = []
        self._live = live
        self._serial = 0
        self._compact_at = _MIN_COMPACT

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, at: float, kind: int, key: str, extra: str = "") -> None:
        self._serial += 1
        heapq.heappush(self._heap, (at, self._serial, kind, key, extra))
        if len(self._heap) > self._compact_at:
            self._compact()

    def first(self) -> float | None:
        """The earliest live moment (dead entries on top are dropped on the way)."""
        heap = self._heap
        while heap and not self._live(heap[0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def due(self, now: float) -> list[Entry]:
        """Take out every live entry at or before ``now``, earliest first (a list: acting on
        them may push new entries)."""
        heap = self._heap
        taken: list[Entry] = []
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            if self._live(entry):
                taken.append(entry)
        return taken

    def _compact(self) -> None:
        """Drop dead entries and duplicates once the heap doubled since the last time, so it
        stays within a small multiple of the deadlines that are really pending."""
        seen: set[tuple[float, int, str, str]] = set()
        kept: list[Entry] = []
        for entry in self._heap:
            identity = (entry[0], entry[2], entry[3], entry[4])
            if identity not in seen and self._live(entry):
                seen.add(identity)
                kept.append(entry)
        heapq.heapify(kept)
        self._heap = kept
        self._compact_at = max(_MIN_COMPACT, 2 * len(kept))
