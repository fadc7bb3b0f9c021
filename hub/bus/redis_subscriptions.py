"""The two kinds of subscription of the Redis Streams bus (:mod:`hub.bus.redis_streams`).

:class:`WorkSubscription`: a consumer of a group (XREADGROUP, batched XACK, XAUTOCLAIM of idle
entries, dead letters). :class:`BroadcastSubscription`: XREAD from its last id, noticing what
it missed. Both read in a task of their own (so closing stops a blocked read) and reconnect
with backoff and jitter.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import random
from collections import deque
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

from redis.exceptions import RedisError, ResponseError

from hub.bus.events import BusEvent
from hub.bus.interface import Received
from hub.bus.streams import (
    BROADCAST,
    Undecodable,
    as_text,
    dead_letter_fields,
    decode_entry,
    is_missing_group,
    is_missing_key,
    is_unavailable,
    parse_id,
    reconnect_delay,
)
from hub.errors import BusUnavailable
from hub.metrics import Metrics
from hub.settings import BusSettings

log = logging.getLogger(__name__)

Entries = Sequence[tuple[bytes, dict[bytes, bytes] | None]]


class StreamsBus(Protocol):
    """What a subscription uses of its bus (:class:`hub.bus.redis_streams.RedisStreamsBus`,
    which imports this module: named here so the two modules do not import each other)."""

    redis: Any
    settings: BusSettings
    metrics: Metrics
    rng: random.Random
    forget_consumers: Any  # the registered Lua script

    def key(self, topic: str) -> str: ...

    def dead_key(self, topic: str) -> str: ...

    def consumer_name(self) -> str: ...

    def retire(
        self, subscription: StreamSubscription, last_words: asyncio.Task[None] | None
    ) -> None: ...


class StreamSubscription(abc.ABC):
    """What both kinds share: the buffer of entries read, iteration, reconnecting."""

    group_label = BROADCAST

    def __init__(self, bus: StreamsBus, topic: str) -> None:
        self.bus = bus
        self.redis: Any = bus.redis
        self.settings = bus.settings
        self.topic = topic
        self.key = bus.key(topic)
        self.buffer: deque[Received] = deque()
        self.closed = False
        self._filling: asyncio.Task[None] | None = None
        self._failures = 0
        self._block_ms = max(1, round(self.settings.block * 1000))
        metrics = bus.metrics
        self._delivered = metrics.bus_delivered.labels(topic, self.group_label)
        self._undecodable = metrics.bus_undecodable.labels(topic, self.group_label)
        self._reconnects = metrics.bus_reconnects.labels(topic, self.group_label)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.key} {self.group_label}>"

    async def __aiter__(self) -> AsyncIterator[Received]:
        while not self.closed:
            if self.buffer:
                received = self.buffer.popleft()
                self._delivered.inc()
                yield received
                continue
            # a task of its own, so that close() can stop a blocked read or a backoff sleep
            self._filling = asyncio.ensure_future(self._fill())
            try:
                await self._filling
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if self.closed and (current is None or not current.cancelling()):
                    return
                raise
            finally:
                self._filling = None

    @abc.abstractmethod
    async def ready(self) -> None:
        """Return once the subscription reads from where it should (its group exists, its
        start id is known)."""

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._filling is not None:
            self._filling.cancel()
        self.bus.retire(self, self._last_words())

    def _last_words(self) -> asyncio.Task[None] | None:
        return None

    async def _fill(self) -> None:
        """Read until the buffer holds something; never raises (but is cancelled by close)."""
        while not self.closed and not self.buffer:
            try:
                await self._step()
            except Exception as exc:
                await self._failed(exc)
            else:
                if self._failures:
                    log.info(
                        "bus: %s is back on Redis after %d failed attempts", self, self._failures
                    )
                    self._reconnects.inc()
                    self._failures = 0

    @abc.abstractmethod
    async def _step(self) -> None:
        """One read into the buffer; raises what Redis raised."""

    async def _failed(self, exc: Exception) -> None:
        if self._failures == 0:
            if is_unavailable(exc):
                log.warning("bus: %s lost Redis (%s); reconnecting", self, exc)
            else:  # a bug, or a key that is not a stream: keep trying, never crash the reader
                log.error("bus: %s failed; retrying", self, exc_info=exc)
        else:
            log.debug("bus: %s still failing: %s", self, exc)
        delay = reconnect_delay(
            self._failures,
            self.settings.reconnect_initial,
            self.settings.reconnect_max,
            self.bus.rng,
        )
        self._failures += 1
        await asyncio.sleep(delay)

    def _decoded(self, raw_id: bytes, fields: dict[bytes, bytes] | None) -> BusEvent | None:
        try:
            return decode_entry(fields)
        except Undecodable as exc:
            self._undecodable.inc()
            log.warning("bus: entry %s of %s is not an event (%s)", as_text(raw_id), self.key, exc)
            return None


class WorkSubscription(StreamSubscription):
    """One consumer of the group ``group``: each entry goes to one consumer of the group."""

    def __init__(self, bus: StreamsBus, topic: str, group: str) -> None:
        self.group = self.group_label = group
        super().__init__(bus, topic)
        self.consumer = bus.consumer_name()
        self.dead_key = bus.dead_key(topic)
        self._acks: list[str] = []
        self._acks_since = 0.0
        self._group_ready = False
        # where the group starts if this subscription creates it: a new purpose starts now
        # (as a new in-memory subscriber does); after Redis lost the group (it restarted
        # without persistence), everything in the new stream is unread
        self._start_at = "$"
        self._idle_ms = max(1, round(self.settings.reclaim_idle * 1000))
        self._reclaim_every = max(0.01, self.settings.reclaim_idle / 2)
        self._next_reclaim = 0.0  # at once: take over what a dead predecessor left
        self._cursor: bytes | str = "0-0"
        self._forget_every = max(self._reclaim_every, self.settings.consumer_expiry / 2)
        self._next_forget = 0.0
        metrics = bus.metrics
        self._acked = metrics.bus_acked.labels(topic, group)
        self._reclaimed = metrics.bus_reclaimed.labels(topic, group)
        self._lost = metrics.bus_lost.labels(topic, group)

    def __repr__(self) -> str:
        return f"<WorkSubscription {self.key} group {self.group} consumer {self.consumer}>"

    async def ready(self) -> None:
        try:
            await self._ensure_group()
        except (RedisError, OSError) as exc:
            if is_unavailable(exc):
                raise BusUnavailable(
                    f"cannot join group {self.group} on {self.key}: {exc}"
                ) from exc
            raise

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            await self.redis.xgroup_create(self.key, self.group, id=self._start_at, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    async def _step(self) -> None:
        try:
            await self._ensure_group()
            now = asyncio.get_running_loop().time()
            if now >= self._next_reclaim:
                self._next_reclaim = now + self._reclaim_every
                await self.flush()
                await self._reclaim(now)
                if self.buffer:
                    return
            reply = await self._acknowledge_and_read()
        except ResponseError as exc:
            if not is_missing_group(exc):
                raise
            log.warning(
                "bus: group %s of %s is gone (Redis lost its data?); recreating it from the "
                "stream's start",
                self.group,
                self.key,
            )
            self._group_ready = False
            self._start_at = "0"
            self._cursor = "0-0"
            return
        for _key, entries in reply or ():
            await self._take(entries, {})

    async def _acknowledge_and_read(self) -> Any:
        """The acknowledgements gathered so far and the next read, in one round trip."""
        ids, self._acks = self._acks, []
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                if ids:
                    pipe.xack(self.key, self.group, *ids)
                pipe.xreadgroup(
                    self.group,
                    self.consumer,
                    {self.key: ">"},
                    count=self.settings.batch,
                    block=self._block_ms,
                )
                results = await pipe.execute(raise_on_error=False)
        except BaseException:
            self._acks = ids + self._acks
            raise
        if ids:
            self._written(ids, results[0])
        if isinstance(results[-1], Exception):
            raise results[-1]
        return results[-1]

    def _written(self, ids: list[str], result: object) -> None:
        if not isinstance(result, Exception):
            self._acked.inc(len(ids))
        elif not is_missing_group(result):  # a lost group took what was pending with it
            self._acks = ids + self._acks

    async def _take(self, entries: Entries, deliveries: dict[bytes, int]) -> None:
        for raw_id, fields in entries:
            if fields is None:
                continue  # deleted while pending: XAUTOCLAIM reports it
            event = self._decoded(raw_id, fields)
            if event is None:
                await self._dead_letter(raw_id, fields, "undecodable", deliveries.get(raw_id, 1))
                continue
            self.buffer.append(Received(event, as_text(raw_id), ack=self._ack))

    async def _dead_letter(
        self, raw_id: bytes, fields: dict[bytes, bytes] | None, reason: str, deliveries: int
    ) -> None:
        """Move the entry to the dead-letter stream and acknowledge it, in one transaction."""
        entry = dead_letter_fields(
            fields,
            source_id=raw_id,
            group=self.group,
            consumer=self.consumer,
            reason=reason,
            deliveries=deliveries,
        )
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(self.dead_key, entry, maxlen=self.settings.maxlen, approximate=True)
            pipe.xack(self.key, self.group, raw_id)
            await pipe.execute()
        self.bus.metrics.bus_dead_lettered.labels(self.topic, self.group, reason).inc()
        log.error(
            "bus: entry %s of %s (group %s) moved to %s: %s after %d deliveries",
            as_text(raw_id),
            self.key,
            self.group,
            self.dead_key,
            reason,
            deliveries,
        )

    async def _reclaim(self, now: float) -> None:
        """Take over entries unacknowledged for reclaim_idle (a dead or stuck consumer's, or
        this one's own that its handler never acknowledged); dead-letter the ones delivered
        too often; refresh the stream's gauges; now and then forget long-gone consumers."""
        reply = await self.redis.xautoclaim(
            self.key,
            self.group,
            self.consumer,
            min_idle_time=self._idle_ms,
            start_id=self._cursor,
            count=self.settings.batch,
        )
        self._cursor = reply[0]
        claimed = [(raw_id, fields) for raw_id, fields in reply[1] if fields is not None]
        trimmed = reply[2] if len(reply) > 2 else []
        if trimmed:
            self._lost.inc(len(trimmed))
            log.error(
                "bus: %d unacknowledged entries of %s (group %s) were trimmed off the stream "
                "before a retry; raise bus.maxlen",
                len(trimmed),
                self.key,
                self.group,
            )
        if claimed:
            deliveries = await self._deliveries([raw_id for raw_id, _fields in claimed])
            retry: list[tuple[bytes, dict[bytes, bytes] | None]] = []
            for raw_id, fields in claimed:
                if deliveries.get(raw_id, 0) > self.settings.max_deliveries:
                    await self._dead_letter(raw_id, fields, "max_deliveries", deliveries[raw_id])
                else:
                    retry.append((raw_id, fields))
            if retry:
                self._reclaimed.inc(len(retry))
                log.info(
                    "bus: took over %d idle entries of %s (group %s)",
                    len(retry),
                    self.key,
                    self.group,
                )
            await self._take(retry, deliveries)
        await self._observe()
        if now >= self._next_forget:
            self._next_forget = now + self._forget_every
            expiry_ms = round(self.settings.consumer_expiry * 1000)
            forgotten = await self.bus.forget_consumers(
                keys=[self.key], args=[self.group, expiry_ms, self.consumer]
            )
            if forgotten:
                log.info(
                    "bus: forgot %d idle consumers of %s group %s", forgotten, self.key, self.group
                )

    async def _deliveries(self, ids: list[bytes]) -> dict[bytes, int]:
        """How often each pending entry was delivered (XAUTOCLAIM counted this time)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for raw_id in ids:
                pipe.xpending_range(self.key, self.group, min=raw_id, max=raw_id, count=1)
            replies = await pipe.execute()
        counts: dict[bytes, int] = {}
        for reply in replies:
            for pending in reply:
                counts[pending["message_id"]] = int(pending["times_delivered"])
        return counts

    async def _observe(self) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xlen(self.key)
            pipe.xinfo_groups(self.key)
            length, groups = await pipe.execute()
        metrics = self.bus.metrics
        metrics.bus_stream_length.labels(self.topic).set(length)
        for group in groups:
            if as_text(group["name"]) != self.group:
                continue
            metrics.bus_group_pending.labels(self.topic, self.group).set(group["pending"])
            if group.get("lag") is not None:  # Redis 7; unknown after some deletions
                metrics.bus_group_lag.labels(self.topic, self.group).set(group["lag"])

    async def _ack(self, entry_id: str) -> None:
        if not self._acks:
            self._acks_since = asyncio.get_running_loop().time()
        self._acks.append(entry_id)
        # written with the next read; at once when closed, or when the consumer holds on to
        # its events (it reads no more) long enough to risk their reclaim
        overdue = asyncio.get_running_loop().time() - self._acks_since > self._reclaim_every / 2
        if self.closed or overdue or len(self._acks) >= 4 * self.settings.batch:
            try:
                await self.flush()
            except Exception as exc:  # kept, and written with the next read (or redelivered)
                log.debug("bus: acknowledging on %s failed for now: %s", self, exc)

    async def flush(self) -> None:
        """Write the acknowledgements gathered so far (they are batched: one XACK for many)."""
        if not self._acks:
            return
        ids, self._acks = self._acks, []
        try:
            await self.redis.xack(self.key, self.group, *ids)
        except Exception as exc:
            self._written(ids, exc)
            if not is_missing_group(exc):
                raise
            return
        self._acked.inc(len(ids))

    def _last_words(self) -> asyncio.Task[None] | None:
        if not self._acks:
            return None
        return asyncio.ensure_future(self._flush_quietly())

    async def _flush_quietly(self) -> None:
        try:
            await self.flush()
        except Exception as exc:
            log.warning(
                "bus: %s closed with %d acknowledgements unwritten (%s); those events "
                "will be delivered again",
                self,
                len(self._acks),
                exc,
            )


class BroadcastSubscription(StreamSubscription):
    """Every entry of the stream from the moment of subscribing, read with XREAD."""

    def __init__(self, bus: StreamsBus, topic: str) -> None:
        super().__init__(bus, topic)
        self._last: str | None = None  # the id read last; None until positioned
        # how many entries the stream had ever held up to and including _last (XINFO's
        # entries-added, Redis 7): more entries trimmed off its head than that is a gap.
        # None: not known (Redis 6, or just after a restart), learnt at the next look
        self._number: int | None = None
        self._server: str | None = None  # Redis's run id when positioned
        self._suspect = False  # a failure happened: did Redis restart meanwhile?
        self._gap = False  # the next event says missed
        self._gaps = bus.metrics.bus_gaps.labels(topic)

    async def ready(self) -> None:
        try:
            await self._position()
        except (RedisError, OSError) as exc:
            if is_unavailable(exc):
                raise BusUnavailable(f"cannot follow {self.key}: {exc}") from exc
            raise

    async def _position(self) -> None:
        if self._last is not None:
            return
        self._server = await self._run_id()
        try:
            info = await self.redis.xinfo_stream(self.key)
        except ResponseError as exc:
            if not is_missing_key(exc):
                raise
            self._last, self._number = "0-0", 0
        else:
            self._last = as_text(info["last-generated-id"])
            self._number = info.get("entries-added")

    async def _run_id(self) -> str | None:
        info = await self.redis.info("server")
        run_id = info.get("run_id")
        return None if run_id is None else str(run_id)

    def _missed(self, why: str) -> None:
        self._gap = True
        self._gaps.inc()
        log.warning("bus: %s may have missed events: %s", self, why)

    async def _failed(self, exc: Exception) -> None:
        self._suspect = True
        await super()._failed(exc)

    async def _step(self) -> None:
        await self._position()
        assert self._last is not None
        if self._suspect:
            server = await self._run_id()
            if server != self._server:
                self._missed("Redis restarted; what it had not persisted is gone")
                self._server = server
                self._number = None
            self._suspect = False
        # read and look at the stream in one transaction: entries after our position that
        # were trimmed off before this read are ones we will never see
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xread({self.key: self._last}, count=self.settings.batch)
            pipe.xinfo_stream(self.key)
            read, info = await pipe.execute(raise_on_error=False)
        if isinstance(read, Exception):
            raise read
        if isinstance(info, Exception):
            if not is_missing_key(info):
                raise info
            if self._last != "0-0":
                self._missed("the stream is gone (Redis lost its data?)")
                self._last, self._number = "0-0", 0
            return
        if parse_id(info["last-generated-id"]) < parse_id(self._last):
            self._missed("the stream restarted below this subscriber's position")
            self._last, self._number = "0-0", 0
            return
        added = info.get("entries-added")
        if added is not None:
            trimmed = added - info["length"]
            if self._number is None:
                self._number = trimmed
            elif trimmed > self._number:
                self._missed("the stream was trimmed past this subscriber (raise bus.maxlen)")
                self._number = trimmed
        entries: Entries = read[0][1] if read else []
        if not entries:
            reply = await self.redis.xread(
                {self.key: self._last}, count=self.settings.batch, block=self._block_ms
            )
            entries = reply[0][1] if reply else []
        if self._number is not None:
            self._number += len(entries)
        for raw_id, fields in entries:
            self._last = as_text(raw_id)
            event = self._decoded(raw_id, fields)
            if event is None:
                continue  # skipped: work groups dead-letter such entries, one copy is enough
            missed, self._gap = self._gap, False
            self.buffer.append(Received(event, self._last, missed=missed))
