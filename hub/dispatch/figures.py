"""Per-queue figures for the live board and the queue-depth gauge, kept up to date as work
comes, moves and goes, so reading them never walks all waiting work."""

from __future__ import annotations

import bisect
from typing import Any

from hub.dispatch.deadlines import Deadlines, Entry
from hub.dispatch.model import Waiting

AT_RISK = 0.8  # at risk: four fifths of the first-response target are gone (or all of it)
_LAST = "\U0010ffff"  # sorts after every conversation id


class QueueFigures:
    def __init__(self, waiting: dict[str, Waiting]) -> None:
        self._all = waiting
        self.waiting: dict[str, int] = {}
        self.offered: dict[str, int] = {}
        self._ages: dict[str, Deadlines] = {}  # queue -> (queued_at, id), the oldest first
        self._risk: dict[str, list[tuple[float, str]]] = {}  # queue -> (at risk from, id) sorted

    def joined(self, waiting: Waiting) -> None:
        """``waiting`` (placed, its SLA set) starts waiting in its queue."""
        queue = waiting.queue
        self.waiting[queue] = self.waiting.get(queue, 0) + 1
        ages = self._ages.get(queue)
        if ages is None:
            ages = self._ages[queue] = Deadlines(self._oldest_live(queue))
        ages.push(waiting.queued_at, 0, waiting.conversation_id)
        if waiting.sla is not None:
            bisect.insort(self._risk.setdefault(queue, []), self._risk_key(waiting))

    def left(self, waiting: Waiting) -> None:
        """``waiting`` was assigned (or moves on: see :meth:`moved`)."""
        self.waiting[waiting.queue] -= 1
        if waiting.sla is not None:
            keys = self._risk.get(waiting.queue, [])
            key = self._risk_key(waiting)
            position = bisect.bisect_left(keys, key)
            if position < len(keys) and keys[position] == key:
                del keys[position]

    def moved(self, waiting: Waiting, to: str) -> None:
        """``waiting`` moves to queue ``to`` (its ``queue`` is still the old one)."""
        self.left(waiting)
        waiting.queue = to
        self.joined(waiting)

    def offer(self, queue: str, change: int) -> None:
        self.offered[queue] = self.offered.get(queue, 0) + change

    def board(self, now: float, queues: list[str]) -> list[dict[str, Any]]:
        """The ``queues`` part of a queue_state frame: configured queues, and any other queue
        work waits in, by name."""
        names = set(queues) | {queue for queue, count in self.waiting.items() if count}
        rows = []
        for name in sorted(names):
            ages = self._ages.get(name)
            oldest = ages.first() if ages is not None and self.waiting.get(name) else None
            risk = self._risk.get(name, [])
            rows.append(
                {
                    "name": name,
                    "waiting": self.waiting.get(name, 0),
                    "offered": self.offered.get(name, 0),
                    "oldest_wait": 0.0 if oldest is None else max(0.0, round(now - oldest, 1)),
                    "sla_at_risk": bisect.bisect_right(risk, (now, _LAST)),
                }
            )
        return rows

    @staticmethod
    def _risk_key(waiting: Waiting) -> tuple[float, str]:
        assert waiting.sla is not None
        return (waiting.queued_at + AT_RISK * waiting.sla, waiting.conversation_id)

    def _oldest_live(self, queue: str) -> Any:
        def live(entry: Entry) -> bool:
            waiting = self._all.get(entry[3])
            return waiting is not None and waiting.queue == queue and waiting.queued_at == entry[0]

        return live
