"""What every bus offers: publish, and two kinds of subscription with acknowledgements.

A **work** subscription (``subscribe(topic, group="dispatch")``) shares the topic's events with
every other subscription of the same group, in this process or another: each event is handled
by one of them. A **broadcast** subscription (``subscribe(topic)``) sees every event, like every
other broadcast subscription on every node (frames for the agents a node holds).

Delivery is at least once: a handler acknowledges an event after handling it
(``await received.ack()``); one it does not acknowledge (its process died, or it failed) is
delivered again, to it or another member of the group, so handlers must be idempotent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

from hub.bus.events import BusEvent


class Received:
    """One event handed to a subscriber.

    ``missed`` says that events published before this one may never reach this subscriber
    (a stuck in-memory subscriber had events dropped; a broadcast stream was trimmed past its
    position or Redis lost its data): a subscriber that mirrors state resyncs it.
    """

    __slots__ = ("_ack", "event", "id", "missed")

    def __init__(
        self,
        event: BusEvent,
        id: str = "",
        *,
        missed: bool = False,
        ack: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.event = event
        self.id = id
        self.missed = missed
        self._ack = ack

    async def ack(self) -> None:
        """Handled: do not deliver it again. Never raises: an acknowledgement that cannot be
        written now is written later, or the event is delivered again (at least once)."""
        if self._ack is not None:
            await self._ack(self.id)

    def __repr__(self) -> str:
        return f"Received({self.event!r}, id={self.id!r}, missed={self.missed})"


class Subscription(Protocol):
    def __aiter__(self) -> AsyncIterator[Received]: ...

    async def ready(self) -> None:
        """Returns once every event published from now on reaches this subscription (or its
        group). Optional for callers: iteration starts the subscription as well."""
        ...

    def close(self) -> None:
        """Stop: iteration ends. Events taken but not acknowledged are delivered again to the
        group (a broadcast subscription simply stops)."""
        ...


class Bus(Protocol):
    """Publish/subscribe of :data:`BusEvent` by topic name."""

    async def publish(self, topic: str, event: BusEvent) -> None:
        """Hand ``event`` to the topic's subscribers; once this returns, the bus keeps it.
        Raises :class:`hub.errors.BusUnavailable` when the bus cannot take it now."""
        ...

    def subscribe(self, topic: str, group: str | None = None) -> Subscription:
        """A work subscription in ``group``, or a broadcast subscription without one."""
        ...

    async def close(self) -> None: ...
