"""Inbound path: validate → normalize → CRM lookup → store (``hub.ingest``) → publish.

Connectors call :meth:`Pipeline.ingest` through the :class:`connectors.base.Sink` interface.
``hub.ingest`` finds the customer, has the rules decide (outside any transaction), then
dedupes, threads and persists in the store's batched transaction; the pipeline publishes what
the plan says on the bus after the commit, so dispatch never sees a message that is not durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

import msgspec
import nh3

from connectors.base import Accepted, HistoryItem
from hub.bus import DELIVERIES, MESSAGES, Bus, CallUpdated, CustomerPresence, DeliveryUpdated
from hub.customers.context import CustomerRef
from hub.customers.identity import InvalidAddress, normalize_identity
from hub.customers.providers import ContextProvider
from hub.envelope import CallEvent, Delivery, Direction, Envelope, Identity
from hub.errors import HubError
from hub.ingest.stages import Ingest
from hub.metrics import Metrics
from hub.store.store import Store
from rules.decision import Decision, passthrough

MAX_KEY_LENGTH = 512
_HTML_ON_LOOP = 4096  # longer HTML is sanitized in a thread (about 25 µs per KB)


class InvalidEnvelope(HubError):
    """A connector handed over an envelope the hub cannot store."""


class Decider(Protocol):
    """The rules hook: a pure function of the message and its customer."""

    def __call__(self, envelope: Envelope, customer: CustomerRef) -> Decision: ...


class PassthroughDecider:
    """Routes everything to the default queue until the rules engine is configured."""

    def __init__(self, default_queue: str) -> None:
        self._decision = passthrough(default_queue)

    def __call__(self, envelope: Envelope, customer: CustomerRef) -> Decision:
        return self._decision


def check_envelope(envelope: Envelope) -> None:
    """Reject envelopes that would corrupt the store or threading."""
    if envelope.direction is not Direction.INBOUND:
        raise InvalidEnvelope("connectors may only ingest inbound messages")
    if not envelope.idempotency_key or len(envelope.idempotency_key) > MAX_KEY_LENGTH:
        raise InvalidEnvelope("idempotency_key must be 1 to 512 characters")
    if not envelope.sender.address or len(envelope.sender.address) > 512:
        raise InvalidEnvelope("sender address must be 1 to 512 characters")


class EarlyReports:
    """Provider reports that arrived before the send that caused them was recorded.

    A fast provider can call the status webhook before its API call has even returned; such a
    report is parked here (bounded, for ``ttl`` seconds) and applied once the outbox records the
    provider id.
    """

    def __init__(self, limit: int = 10_000, ttl: float = 600.0) -> None:
        self.limit = limit
        self.ttl = ttl
        self._parked: OrderedDict[tuple[str, str], list[tuple[float, Delivery]]] = OrderedDict()

    def park(self, inbox: str, provider_id: str, delivery: Delivery, now: float) -> None:
        self._parked.setdefault((inbox, provider_id), []).append((now, delivery))
        while len(self._parked) > self.limit:
            self._parked.popitem(last=False)

    def take(self, inbox: str, provider_id: str, now: float) -> list[Delivery]:
        parked = self._parked.pop((inbox, provider_id), [])
        return [delivery for at, delivery in parked if now - at <= self.ttl]


class Pipeline:
    """The hub's :class:`~connectors.base.Sink` and :class:`~connectors.base.HistorySource`."""

    def __init__(
        self,
        store: Store,
        bus: Bus,
        decide: Decider,
        metrics: Metrics,
        *,
        default_region: str = "DE",
        provider: ContextProvider | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.clock = clock
        self.bus = bus
        self.decide = decide
        self.inbound = Ingest(store, decide)
        self.metrics = metrics
        self.default_region = default_region
        self.provider = provider
        self.early_reports = EarlyReports()

    async def ingest(self, envelope: Envelope) -> Accepted:
        check_envelope(envelope)
        envelope = self._normalized(envelope)
        if envelope.html is not None:
            # defence in depth: whatever a connector did, stored HTML is sanitized here; nh3
            # releases the GIL, so a long mail body is cleaned beside the loop, not on it
            html = envelope.html
            clean = (
                await asyncio.to_thread(nh3.clean, html)
                if len(html) > _HTML_ON_LOOP
                else nh3.clean(html)
            )
            envelope = msgspec.structs.replace(envelope, html=clean)
        external = await self.provider.lookup(envelope.sender) if self.provider else None
        stored = await self.inbound.ingest(envelope, external)
        if stored.duplicate:
            self.metrics.messages_duplicate.labels(envelope.channel).inc()
            return Accepted(
                message_id=stored.message_id,
                conversation_id=stored.conversation_id,
                duplicate=True,
            )
        self.metrics.messages_in.labels(envelope.channel).inc()
        for topic, event in stored.publish:
            await self.bus.publish(topic, event)
        return Accepted(message_id=stored.message_id, conversation_id=stored.conversation_id)

    def _normalized(self, envelope: Envelope) -> Envelope:
        """One spelling per address (E.164 numbers, lower-case email domains), so the same
        person is found whatever channel or client wrote the address. An address that does not
        parse is kept as it came: the message is never refused for it."""
        claimed = []
        for identity in envelope.claimed:  # unproven addresses that do not parse are dropped
            with contextlib.suppress(InvalidAddress):
                claimed.append(normalize_identity(identity, self.default_region))
        try:
            sender = normalize_identity(envelope.sender, self.default_region)
        except InvalidAddress:
            sender = envelope.sender
        if sender is envelope.sender and tuple(claimed) == envelope.claimed:
            return envelope
        return msgspec.structs.replace(envelope, sender=sender, claimed=tuple(claimed))

    async def redelivered(self, channel: str, inbox: str, idempotency_key: str) -> None:
        # a connector's own cache answered it: the same count as a duplicate found in the store
        self.metrics.messages_duplicate.labels(channel).inc()

    async def customer_presence(self, inbox: str, session: str, present: bool) -> None:
        await self.bus.publish(
            MESSAGES,
            CustomerPresence(inbox=inbox, session=session, present=present, at=self.clock()),
        )

    async def delivery_update(self, inbox: str, provider_id: str, delivery: Delivery) -> bool:
        change = await self.store.update_delivery(inbox, provider_id, delivery)
        if change is None:
            self.early_reports.park(inbox, provider_id, delivery, self.clock())
            return False
        if change.changed:
            await self.bus.publish(
                DELIVERIES,
                DeliveryUpdated(
                    conversation_id=change.conversation_id,
                    message_id=change.message_id,
                    status=change.status,
                    error=change.error,
                ),
            )
        return True

    async def apply_early_reports(self, inbox: str, provider_id: str) -> None:
        """Apply reports that came before the outbox recorded ``provider_id``."""
        for delivery in self.early_reports.take(inbox, provider_id, self.clock()):
            await self.delivery_update(inbox, provider_id, delivery)

    async def call_event(self, inbox: str, session: str, event: CallEvent) -> bool:
        recorded = await self.store.record_call_event(inbox, session, event)
        if recorded is None:
            return False
        if recorded.new:
            self.metrics.call_events.labels(event.state).inc()
            await self.bus.publish(
                DELIVERIES, CallUpdated(conversation_id=recorded.conversation_id, event=event)
            )
        return True

    async def opt_out(self, inbox: str, identity: Identity, opted_out: bool, keyword: str) -> None:
        with contextlib.suppress(InvalidAddress):
            identity = normalize_identity(identity, self.default_region)
        await self.store.set_opt_out(inbox, identity, opted_out, keyword)

    async def history(self, inbox: str, session: str, limit: int = 200) -> list[HistoryItem]:
        return await self.store.history(inbox, session, limit)
