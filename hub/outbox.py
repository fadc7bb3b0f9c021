"""Delivers queued replies through their channel, at least once, with retries and backoff.

A reply is written to the outbox in the same transaction as the message, so a crash between
"agent clicked send" and "provider accepted it" loses nothing: the entry is still pending at the
next start and is sent again under the same idempotency key, which connectors pass to providers
that deduplicate (and the web chat client deduplicates by message id).

Several hub processes share the outbox by claiming due replies for ``claim_hold`` seconds (see
``hub.store.outbox``): each reply is sent by the process that claimed it, and a dead process's
claims lapse and are taken over, the retry looking for the earlier attempt's message first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

import msgspec

from connectors.base import Connector, SendError
from hub.bus import DELIVERIES, OUTBOX, Bus, DeliveryUpdated, Subscription
from hub.envelope import Delivery, DeliveryStatus
from hub.errors import ProviderIdTaken, StoreUnavailable
from hub.metrics import Metrics
from hub.node import node_id
from hub.store.records import Attempt, OutboxItem
from hub.store.store import Store

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
POLL_SECONDS = 1.0
CONCURRENCY = 16
MAX_FOREIGN = 5  # other replies' messages one send may find before it waits for a retry
CLAIM_HOLD = 120.0  # seconds a claimed reply is ours: longer than any send may take
RECORD_PAUSE_MAX = 2.0  # longest pause between tries to record a send's outcome


def backoff(attempts: int) -> float:
    """Seconds before retry number ``attempts + 1``: 2, 4, 8 … capped at 10 minutes."""
    return float(min(600, 2 ** (attempts + 1)))


class OutboxWorker:
    def __init__(
        self,
        store: Store,
        bus: Bus,
        connectors: Mapping[str, Connector],
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
        on_recorded: Callable[[str, str], Awaitable[None]] | None = None,
        *,
        holder: str | None = None,
        claim_hold: float = CLAIM_HOLD,
    ) -> None:
        """``on_recorded(inbox, provider_id)`` runs after a send's provider id is stored (the
        pipeline applies status reports that arrived before it). ``holder`` names this process
        in outbox claims (default: :func:`hub.node.node_id`); ``claim_hold`` must exceed the
        longest send, or a slow send's reply could be taken over while it is still going."""
        self.store = store
        self.holder = holder or node_id()
        self.claim_hold = claim_hold
        self.on_recorded = on_recorded
        self.bus = bus
        self.connectors = connectors
        self.metrics = metrics
        self.clock = clock
        self._in_flight: set[str] = set()
        self._semaphore = asyncio.Semaphore(CONCURRENCY)
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._wake_task: asyncio.Task[None] | None = None
        self._subscription: Subscription | None = None
        self._stopping = False

    def start(self) -> None:
        self._subscription = self.bus.subscribe(OUTBOX, "outbox")  # a hint: one node wakes
        self._loop_task = asyncio.create_task(self._run(), name="outbox")
        self._wake_task = asyncio.create_task(self._follow(), name="outbox-bus")

    async def stop(self, grace: float = 10.0) -> None:
        """Start no new send, and wait up to ``grace`` seconds for the sends in progress to
        finish and be recorded. Call it before connectors stop (a stopped connector cuts its
        provider requests off); calling it again waits for what is still running."""
        self._stopping = True
        if self._subscription is not None:
            self._subscription.close()
        for task in (self._loop_task, self._wake_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=grace)
        if not self._tasks:  # nothing of ours is being sent: what we claimed is anyone's now
            with contextlib.suppress(Exception):
                await self.store.release_outbox_claims(self.holder)

    async def _follow(self) -> None:
        assert self._subscription is not None
        async for received in self._subscription:
            self._wake.set()  # the rows are in the store: the hint is handled once taken
            await received.ack()

    async def _release_predecessors(self) -> None:
        """One process on SQLite: claims in the file are a dead predecessor's, free them now."""
        if self.store.engine.dialect.name != "sqlite":
            return  # other live processes hold claims there: they lapse by themselves
        try:
            await self.store.release_outbox_claims()
        except Exception as exc:  # they lapse anyway
            log.warning("releasing earlier outbox claims failed: %s", exc)

    async def _run(self) -> None:
        await self._release_predecessors()
        while True:
            self._wake.clear()
            try:
                due = await self.store.claim_outbox(self.holder, self.claim_hold)
            except StoreUnavailable as exc:
                log.warning("reading the outbox failed (retrying): %s", exc)
                due = []
            except Exception:
                log.exception("reading the outbox failed")
                due = []
            for item in due:
                if item.message_id in self._in_flight:
                    continue
                self._in_flight.add(item.message_id)
                task = asyncio.create_task(self._deliver(item))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)

    async def _deliver(self, item: OutboxItem) -> None:
        outbound = item.outbound
        retry_at: float | None = None
        try:
            async with self._semaphore:
                if self._stopping:  # not begun: it stays pending for the next start
                    return
                # a claim: the due list may be older than a delivery that just finished
                attempt = await self.store.begin_attempt(
                    item.message_id, after=item.attempts, holder=self.holder, hold=self.claim_hold
                )
                if attempt is None:  # sent or retried since it was read: not ours to send
                    return
                connector = self.connectors.get(outbound.inbox)
                opted_out = await self.store.opted_out(outbound.inbox, outbound.recipient)
                if connector is None:
                    delivery = Delivery(
                        status=DeliveryStatus.FAILED,
                        error_code="no_channel",
                        error_message=f"channel instance {outbound.inbox!r} is not configured",
                    )
                    await self.store.record_delivery(item.message_id, delivery)
                elif opted_out is not None:
                    delivery = Delivery(
                        status=DeliveryStatus.FAILED,
                        error_code="opted_out",
                        error_message=f"the customer opted out ({opted_out}); nothing was sent",
                    )
                    await self.store.record_delivery(item.message_id, delivery)
                else:
                    sent = await self._send(connector, item, attempt)
                    if sent is None:
                        return
                    delivery, retry_at = sent
            channel = connector.channel if connector else "unknown"
            if retry_at is None:
                self.metrics.messages_out.labels(channel, str(delivery.status)).inc()
            await self.bus.publish(
                DELIVERIES,
                DeliveryUpdated(
                    conversation_id=outbound.conversation_id,
                    message_id=item.message_id,
                    status="queued" if retry_at is not None else str(delivery.status),
                    error=(
                        f"{delivery.error_code}: {delivery.error_message or ''}".strip()
                        if delivery.error_code
                        else delivery.error_message
                    ),
                ),
            )
            if delivery.provider_id and self.on_recorded is not None:
                # after our own event, so the agent's last word is the provider's newer report
                await self.on_recorded(outbound.inbox, delivery.provider_id)
        except StoreUnavailable as exc:  # nothing is sent before its attempt is counted
            log.warning("delivering %s waits for the store: %s", item.message_id, exc)
        except Exception:
            log.exception("delivering %s failed; it stays in the outbox", item.message_id)
        finally:
            self._in_flight.discard(item.message_id)

    async def _record_sent(
        self, message_id: str, delivery: Delivery, retry_at: float | None
    ) -> None:
        """Record what a send did, however long the store takes to answer again.

        The send has happened: dropping its outcome because the database was unreachable would
        leave the reply claimed and pending, to be sent again once the claim lapsed (a second
        message for connectors that cannot find the first). So the outcome is retried here,
        with backoff, while the claim keeps the reply ours; if this process dies first the
        next attempt's adoption applies, as after any crash mid-send."""
        pause = 0.1
        while True:
            try:
                await self.store.record_delivery(message_id, delivery, retry_at=retry_at)
                return
            except StoreUnavailable as exc:
                log.warning("recording the send of %s waits for the store: %s", message_id, exc)
                await asyncio.sleep(pause)
                pause = min(pause * 2, RECORD_PAUSE_MAX)

    async def _send(
        self, connector: Connector, item: OutboxItem, attempt: Attempt
    ) -> tuple[Delivery, float | None] | None:
        """Send and record one reply; the recorded delivery and when to retry (None: done).

        A connector that found "its" earlier message may have found another reply's (same
        recipient, same text): the store refuses a provider id another reply holds, and the
        send is made again with that id excluded, so a reply is never recorded as sent under
        someone else's message.
        """
        foreign: tuple[str, ...] = ()
        while True:
            outbound = msgspec.structs.replace(
                item.outbound,
                attempt=attempt.number,
                first_attempt_at=attempt.first_at,
                foreign_provider_ids=foreign,
            )
            retry_at: float | None = None
            try:
                delivery = await connector.send(outbound)
            except SendError as exc:
                delivery = Delivery(
                    status=DeliveryStatus.FAILED, error_code=exc.code, error_message=str(exc)
                )
                if exc.retryable and attempt.number < MAX_ATTEMPTS:
                    retry_at = self.clock() + backoff(attempt.number - 1)
            except Exception as exc:
                log.exception("connector %s crashed while sending", outbound.inbox)
                delivery = Delivery(
                    status=DeliveryStatus.FAILED,
                    error_code="connector_error",
                    error_message=f"{exc.__class__.__name__}: {exc}",
                )
                if attempt.number < MAX_ATTEMPTS:
                    retry_at = self.clock() + backoff(attempt.number - 1)
            try:
                await self._record_sent(item.message_id, delivery, retry_at)
            except ProviderIdTaken as exc:
                assert delivery.provider_id is not None
                log.warning("reply %s: %s; sending it again", item.message_id, exc)
                foreign += (delivery.provider_id,)
                if len(foreign) <= MAX_FOREIGN and attempt.number < MAX_ATTEMPTS:
                    again = await self.store.begin_attempt(
                        item.message_id,
                        after=attempt.number,
                        holder=self.holder,
                        hold=self.claim_hold,
                    )
                    if again is None:  # another worker has taken it over
                        return None
                    attempt = again
                    continue
                delivery = Delivery(
                    status=DeliveryStatus.FAILED,
                    error_code="provider_id_taken",
                    error_message=str(exc),
                )
                retry_at = (
                    self.clock() + backoff(attempt.number - 1)
                    if attempt.number < MAX_ATTEMPTS
                    else None
                )
                await self.store.record_delivery(item.message_id, delivery, retry_at=retry_at)
            return delivery, retry_at
