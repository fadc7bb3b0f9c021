"""``memory://``: the bus of one process.

Each subscription has its own bounded queue. A broadcast subscription gets every event of its
topic; a work group's events are handed round robin to its members. Acknowledgements are
no-ops: an event lives only as long as the process, and the store is what survives a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import AsyncIterator

from hub.bus.events import BusEvent
from hub.bus.interface import Received

log = logging.getLogger(__name__)


class _MemorySubscription:
    def __init__(self, bus: MemoryBus, topic: str, group: str | None, maxsize: int) -> None:
        self._bus = bus
        self._topic = topic
        self.group = group
        self.queue: asyncio.Queue[BusEvent | None] = asyncio.Queue(maxsize)
        self.room = asyncio.Event()  # set when the subscriber took something (or closed)
        self.closed = False
        self.queued = 0  # events put into the queue so far
        self._taken = 0
        self._gaps: deque[int] = deque()  # numbers of the events that came after a drop

    async def __aiter__(self) -> AsyncIterator[Received]:
        while True:
            event = await self.queue.get()
            self.room.set()
            if event is None or self.closed:
                return
            number, self._taken = self._taken, self._taken + 1
            missed = False
            while self._gaps and self._gaps[0] <= number:
                self._gaps.popleft()
                missed = True
            yield Received(event, missed=missed)

    async def ready(self) -> None:
        """Subscribed already: events go into the queue from the moment of ``subscribe``."""

    def close(self) -> None:
        """Stop: iteration ends, what is still queued is dropped, and a publisher waiting for
        room goes on."""
        self._bus._remove(self._topic, self)
        self.closed = True
        self.room.set()
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)

    async def offer(self, event: BusEvent, patience: float) -> bool:
        """Queue ``event``, waiting up to ``patience`` seconds for room; False if there was none."""
        deadline = asyncio.get_running_loop().time() + patience
        while self.queue.full():
            if self.closed:
                return True  # nobody will read it: nothing to wait for
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                self._gaps.append(self.queued)
                return False
            self.room.clear()
            with contextlib.suppress(TimeoutError):  # looks again now and then: a reader of
                # .queue itself (tests) takes without telling
                await asyncio.wait_for(self.room.wait(), min(remaining, 0.05))
        if not self.closed:
            self.queue.put_nowait(event)
            self.queued += 1
        return True


class _Group:
    """The members of one work group on a topic, served round robin (skipping full ones)."""

    def __init__(self) -> None:
        self.members: list[_MemorySubscription] = []
        self._turn = itertools.count()

    def pick(self) -> _MemorySubscription:
        start = next(self._turn)
        count = len(self.members)
        for step in range(count):
            member = self.members[(start + step) % count]
            if not member.queue.full():
                return member
        return self.members[start % count]


class MemoryBus:
    """In-process bus: each subscriber gets its own bounded queue of its topic's events.

    Backpressure: when a subscriber is ``maxsize`` events behind, ``publish`` waits for room, so
    the publisher (ingest) slows down to what dispatch keeps up with instead of memory growing.
    A subscriber that makes no room within ``patience`` seconds is stuck (a bug in this
    process): the event is dropped for it and logged loudly rather than blocking ingest forever,
    and its next event says ``missed``.
    """

    def __init__(self, maxsize: int = 10_000, patience: float = 10.0) -> None:
        self._subscribers: dict[str, list[_MemorySubscription]] = {}
        self._groups: dict[str, dict[str, _Group]] = {}
        self._maxsize = maxsize
        self._patience = patience

    async def publish(self, topic: str, event: BusEvent) -> None:
        targets = list(self._subscribers.get(topic, ()))
        groups = self._groups.get(topic)
        if groups:
            targets += [group.pick() for group in groups.values()]
        for subscription in targets:
            if subscription.queue.full():
                queued = await subscription.offer(event, self._patience)
            else:
                subscription.queue.put_nowait(event)
                subscription.queued += 1
                queued = True
            if not queued:
                log.error(
                    "bus subscriber on %r is %d events behind and made no room in %.0f s; "
                    "event dropped",
                    topic,
                    self._maxsize,
                    self._patience,
                )

    def subscribe(self, topic: str, group: str | None = None) -> _MemorySubscription:
        subscription = _MemorySubscription(self, topic, group, self._maxsize)
        if group is None:
            self._subscribers.setdefault(topic, []).append(subscription)
        else:
            groups = self._groups.setdefault(topic, {})
            groups.setdefault(group, _Group()).members.append(subscription)
        return subscription

    def _remove(self, topic: str, subscription: _MemorySubscription) -> None:
        if subscription.group is None:
            listeners = self._subscribers.get(topic, [])
            if subscription in listeners:
                listeners.remove(subscription)
            return
        groups = self._groups.get(topic, {})
        group = groups.get(subscription.group)
        if group is not None and subscription in group.members:
            group.members.remove(subscription)
            if not group.members:
                del groups[subscription.group]

    async def close(self) -> None:
        everyone = [s for listeners in self._subscribers.values() for s in listeners]
        everyone += [
            member
            for groups in self._groups.values()
            for group in groups.values()
            for member in group.members
        ]
        for subscription in everyone:
            subscription.close()
