"""The event bus between ingest and dispatch, behind a small interface.

``memory://`` (this module) serves one process; a Redis implementation will share events between
processes. Events are msgspec Structs so any implementation can serialize them the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Protocol

import msgspec

log = logging.getLogger(__name__)


class AttachmentListed(msgspec.Struct, frozen=True, kw_only=True):
    """A stored attachment as the console lists it (no blob reference: the console fetches
    the file through the access-checked attachment path)."""

    id: str
    name: str
    content_type: str
    size: int
    sha256: str


class MessageStored(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """A message (inbound, reply or note) is durably stored in a conversation."""

    conversation_id: str
    message_id: str
    direction: str
    kind: str = "message"
    conversation_created: bool = False
    reopened: bool = False  # a closed conversation is queued again by this message
    status: str = "queued"
    assignee: str | None = None
    queue: str | None = None
    priority: str | None = None
    queued_at: float | None = None
    channel: str | None = None
    text: str = ""
    author: str | None = None
    created_at: float = 0.0
    customer_id: str | None = None
    skills: tuple[str, ...] = ()  # from the routing decision
    preferred_agent: str | None = None  # the rules asked for this agent
    sla: float | None = None  # first-response target from the rules
    # what the agent's live frame shows, carried here so dispatch reads nothing per message
    attachments: tuple[AttachmentListed, ...] = ()
    notes: tuple[str, ...] = ()


class DeliveryUpdated(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """An outbound message's delivery state changed."""

    conversation_id: str
    message_id: str
    status: str
    error: str | None = None


class OutboxReady(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """Something was put into the outbox: senders should look now instead of at their next poll."""

    message_id: str


class CustomerPresence(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """A customer on a live channel came or left (the last window closed)."""

    inbox: str
    session: str
    present: bool
    at: float


BusEvent = MessageStored | DeliveryUpdated | OutboxReady | CustomerPresence

MESSAGES = "messages"
DELIVERIES = "deliveries"
OUTBOX = "outbox"


class Subscription(Protocol):
    def __aiter__(self) -> AsyncIterator[BusEvent]: ...

    def close(self) -> None: ...


class Bus(Protocol):
    """Publish/subscribe of :data:`BusEvent` by topic name."""

    async def publish(self, topic: str, event: BusEvent) -> None: ...

    def subscribe(self, topic: str) -> Subscription: ...

    async def close(self) -> None: ...


class _MemorySubscription:
    def __init__(self, bus: MemoryBus, topic: str, maxsize: int) -> None:
        self._bus = bus
        self._topic = topic
        self.queue: asyncio.Queue[BusEvent | None] = asyncio.Queue(maxsize)
        self.room = asyncio.Event()  # set when the subscriber took something (or closed)
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[BusEvent]:
        while True:
            event = await self.queue.get()
            self.room.set()
            if event is None or self.closed:
                return
            yield event

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
                return False
            self.room.clear()
            with contextlib.suppress(TimeoutError):  # looks again now and then: a reader of
                # .queue itself (tests) takes without telling
                await asyncio.wait_for(self.room.wait(), min(remaining, 0.05))
        if not self.closed:
            self.queue.put_nowait(event)
        return True


class MemoryBus:
    """In-process bus: each subscriber gets its own bounded queue of every event on its topic.

    Backpressure: when a subscriber is ``maxsize`` events behind, ``publish`` waits for room, so
    the publisher (ingest) slows down to what dispatch keeps up with instead of memory growing.
    A subscriber that makes no room within ``patience`` seconds is stuck (a bug in this
    process): the event is dropped for it and logged loudly rather than blocking ingest forever.
    """

    def __init__(self, maxsize: int = 10_000, patience: float = 10.0) -> None:
        self._subscribers: dict[str, list[_MemorySubscription]] = {}
        self._maxsize = maxsize
        self._patience = patience

    async def publish(self, topic: str, event: BusEvent) -> None:
        for subscription in list(self._subscribers.get(topic, ())):
            if subscription.queue.full():
                queued = await subscription.offer(event, self._patience)
            else:
                subscription.queue.put_nowait(event)
                queued = True
            if not queued:
                log.error(
                    "bus subscriber on %r is %d events behind and made no room in %.0f s; "
                    "event dropped",
                    topic,
                    self._maxsize,
                    self._patience,
                )

    def subscribe(self, topic: str) -> _MemorySubscription:
        subscription = _MemorySubscription(self, topic, self._maxsize)
        self._subscribers.setdefault(topic, []).append(subscription)
        return subscription

    def _remove(self, topic: str, subscription: _MemorySubscription) -> None:
        listeners = self._subscribers.get(topic, [])
        if subscription in listeners:
            listeners.remove(subscription)

    async def close(self) -> None:
        for listeners in list(self._subscribers.values()):
            for subscription in list(listeners):
                subscription.close()


def create_bus(url: str) -> Bus:
    """The bus for a ``bus.url`` setting."""
    if url.startswith("memory://"):
        return MemoryBus()
    raise ValueError(f"unsupported bus URL {url!r}")
