"""Publishing committed events on the bus, and the relay that publishes what could not be.

Events announcing a committed change (a stored message) are rows of the event outbox, written
in the same transaction (``hub.store.event_outbox``). :meth:`EventRelay.publish` sends them
right after the commit and deletes the rows; when the bus refuses (:class:`BusUnavailable`),
the rows stay and the relay loop, which runs on every hub process, publishes them once the bus
is back. If the process dies between commit and publish, its claim on the rows lapses after
``hold`` seconds and any process's relay publishes them. So an acknowledged message's events
reach the bus at least once whatever fails; the bus's handlers are idempotent.

Events whose change was committed without a row (a reply's frame, a delivery status) go
through :meth:`EventRelay.publish_or_defer`: when the bus refuses, they are written to the
event outbox then, so the relay publishes them later instead of the caller failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Sequence

from hub.bus import OUTBOX, Bus, BusEvent, OutboxReady, Subscription
from hub.errors import BusUnavailable
from hub.ids import new_id
from hub.metrics import Metrics
from hub.store.event_outbox import PendingEvent
from hub.store.store import Store

log = logging.getLogger(__name__)

BATCH = 100


class EventRelay:
    """Publishes event-outbox rows: right after their commit, and later in a loop."""

    def __init__(
        self,
        store: Store,
        bus: Bus,
        metrics: Metrics,
        *,
        holder: str,
        hold: float = 5.0,
        poll: float = 1.0,
        backoff_initial: float = 0.1,
        backoff_max: float = 10.0,
    ) -> None:
        """``holder`` names this process on the rows it claims; ``hold`` is how long a claim
        lasts (the committing process's, then a relay's while it publishes); ``poll`` how often
        the loop looks for rows nobody holds; the backoff bounds its waits while the bus
        refuses."""
        self.store = store
        self.bus = bus
        self.metrics = metrics
        self.holder = holder
        self.hold = hold
        self.poll = poll
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # the bus refused the last publish: commits are acknowledged without waiting for it
        # (a partitioned Redis would hold each for bus.timeout) until the relay gets through
        self.bus_down = False

    async def publish(self, events: Sequence[PendingEvent]) -> bool:
        """Publish committed rows in order and delete them; False if the bus refused, when the
        rest are released for the relay. Never raises for the bus: the rows are durable."""
        if self.bus_down:  # the relay publishes them (ours: it takes them without waiting)
            for pending in events:
                self.metrics.event_outbox_deferred.labels(pending.topic).inc()
            self._wake.set()
            return False
        published: list[str] = []
        try:
            for pending in events:
                await self.bus.publish(pending.topic, pending.event)
                published.append(pending.id)
        except BusUnavailable as exc:
            rest = events[len(published) :]
            for pending in rest:
                self.metrics.event_outbox_deferred.labels(pending.topic).inc()
            log.warning("%d events wait for the bus in the event outbox: %s", len(rest), exc)
            self.bus_down = True
            self.store.events_done(published)
            with contextlib.suppress(Exception):  # else their claim lapses after hold
                await self.store.release_events([pending.id for pending in rest])
            self._wake.set()
            return False
        self.store.events_done(published)
        return True

    async def publish_or_defer(self, publications: Sequence[tuple[str, BusEvent]]) -> None:
        """Publish events of a change committed without event rows; if the bus refuses, write
        the rest to the event outbox for the relay (all of them at once while the bus is known
        to be down). Raises only if the store refuses too."""
        for index, (topic, event) in enumerate(publications):
            try:
                if self.bus_down:
                    raise BusUnavailable("the bus refused the last publish")
                await self.bus.publish(topic, event)
            except BusUnavailable as exc:
                rest = publications[index:]
                log.warning("%d events wait for the bus in the event outbox: %s", len(rest), exc)
                base = new_id(self.store.clock())
                await self.store.add_events(
                    [
                        PendingEvent(f"{base}{number:05d}", later_topic, later)
                        for number, (later_topic, later) in enumerate(rest)
                    ],
                    self.holder,
                    0.0,  # anyone's at once
                )
                for later_topic, _ in rest:
                    self.metrics.event_outbox_deferred.labels(later_topic).inc()
                self._wake.set()
                return

    # -- the loop --------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event-relay")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _release_predecessors(self) -> None:
        """One process on SQLite: the rows' claims are a dead predecessor's; free them now."""
        if self.store.engine.dialect.name != "sqlite":
            return  # other live processes hold claims there: they lapse by themselves
        try:
            await self.store.release_events()
        except Exception as exc:  # they lapse anyway
            log.warning("releasing earlier event claims failed: %s", exc)

    async def _run(self) -> None:
        await self._release_predecessors()
        delay = self.backoff_initial
        while True:
            self._wake.clear()
            try:
                relayed = await self.relay_once()
            except BusUnavailable:
                relayed = -1
            except Exception as exc:  # the store down: the rows are still there later
                log.warning("the event relay waits for the store: %s", exc)
                relayed = -1
            if relayed < 0:  # back off with jitter, so processes do not come back in step
                await asyncio.sleep(random.uniform(delay / 2, delay))
                delay = min(self.backoff_max, delay * 2)
                continue
            delay = self.backoff_initial
            if relayed >= BATCH:
                continue  # more are waiting
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll)

    async def relay_once(self) -> int:
        """Claim the rows nobody holds and publish them; how many were published. Raises
        :class:`BusUnavailable` (the rest released) when the bus refuses."""
        down = self.bus_down
        claimed = await self.store.claim_events(self.holder, self.hold, BATCH, own=down)
        if not claimed:
            self.bus_down = down and await self._bus_still_down()
            return 0
        published: list[str] = []
        try:
            for pending in claimed:
                await self.bus.publish(pending.topic, pending.event)
                published.append(pending.id)
                self.metrics.event_outbox_relayed.labels(pending.topic).inc()
        except BusUnavailable:
            self.bus_down = True
            self.store.events_done(published)
            done = set(published)
            with contextlib.suppress(Exception):
                await self.store.release_events([p.id for p in claimed if p.id not in done])
            raise
        self.store.events_done(published)
        self.bus_down = False
        log.info("the event relay published %d events", len(published))
        return len(published)

    async def _bus_still_down(self) -> bool:
        """Nothing to relay while the bus was down: whether it still is (asked with a wake-up
        hint on the outbox topic, which its handler takes as harmless)."""
        try:
            await self.bus.publish(OUTBOX, OutboxReady(message_id=""))
        except BusUnavailable:
            return True
        return False


class DeferringBus:
    """The bus for code that publishes after its own commit (console replies, the outbox's
    delivery states): a publish the bus refuses is written to the event outbox for the relay,
    so the caller, whose change is durable, does not fail for it."""

    def __init__(self, bus: Bus, relay: EventRelay) -> None:
        self._bus = bus
        self._relay = relay

    async def publish(self, topic: str, event: BusEvent) -> None:
        await self._relay.publish_or_defer([(topic, event)])

    def subscribe(self, topic: str, group: str | None = None) -> Subscription:
        return self._bus.subscribe(topic, group)

    async def close(self) -> None:
        """Nothing: the bus is closed by its owner."""
