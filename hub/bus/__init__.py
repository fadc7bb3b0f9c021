"""The event bus between ingest, dispatch, the consoles and the outbox, behind a small interface.

``memory://`` (:mod:`hub.bus.memory`) serves one process; ``redis://``
(:mod:`hub.bus.redis_streams`) shares events between processes on Redis Streams. Events are
msgspec Structs (:mod:`hub.bus.events`), so every implementation serializes them the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub.bus.events import (
    DELIVERIES,
    MESSAGES,
    OUTBOX,
    TOPICS,
    AttachmentListed,
    BusEvent,
    CallUpdated,
    CustomerPresence,
    DeliveryUpdated,
    MessageStored,
    OutboxReady,
    decode_event,
    encode_event,
)
from hub.bus.interface import Bus, Received, Subscription
from hub.bus.memory import MemoryBus
from hub.errors import BusUnavailable
from hub.settings import BusSettings

if TYPE_CHECKING:
    from hub.metrics import Metrics

__all__ = [
    "DELIVERIES",
    "MESSAGES",
    "OUTBOX",
    "TOPICS",
    "AttachmentListed",
    "Bus",
    "BusEvent",
    "BusUnavailable",
    "CallUpdated",
    "CustomerPresence",
    "DeliveryUpdated",
    "MemoryBus",
    "MessageStored",
    "OutboxReady",
    "Received",
    "Subscription",
    "create_bus",
    "decode_event",
    "encode_event",
]


def create_bus(settings: BusSettings | str, metrics: Metrics | None = None) -> Bus:
    """The bus for the ``bus`` settings (or just a ``bus.url``). Redis is imported only
    when asked for, and not contacted here: subscriptions connect when they start reading."""
    if isinstance(settings, str):
        settings = BusSettings(url=settings)
    if settings.url.startswith("memory://"):
        return MemoryBus()
    from hub.bus.redis_streams import RedisStreamsBus

    return RedisStreamsBus(settings, metrics)
