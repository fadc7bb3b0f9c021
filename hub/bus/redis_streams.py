"""``redis://``: the bus every hub process shares, on Redis Streams.

One stream per topic (``{prefix}:{topic}``), bounded with ``XADD … MAXLEN ~``. A work
subscription is a consumer in the topic's consumer group for its purpose: ``XREADGROUP``,
``XACK`` after handling (batched), and a reclaim pass that takes over entries another consumer
left unacknowledged for ``reclaim_idle`` (``XAUTOCLAIM``); an entry delivered more than
``max_deliveries`` times, or one that is not an event at all, goes to ``{prefix}:{topic}:dead``.
A broadcast subscription reads with ``XREAD`` from its last id and notices when it lost events
(the stream was trimmed past it, or Redis restarted). Subscriptions reconnect by themselves,
with exponential backoff and jitter; ``publish`` raises :class:`BusUnavailable` at once.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import socket
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from hub.bus.events import BusEvent, encode_event
from hub.bus.redis_subscriptions import (
    BroadcastSubscription,
    StreamSubscription,
    WorkSubscription,
)
from hub.bus.streams import (
    dead_letter_key,
    is_unavailable,
    redacted,
    stream_key,
)
from hub.errors import BusUnavailable
from hub.metrics import Metrics
from hub.settings import BusSettings

# XADD of many entries in one command: KEYS[i] is the stream of entry i, ARGV[i + 1] its event,
# ARGV[1] the MAXLEN bound. One command instead of a pipeline of many saves the client most of
# its per-command work (measured: 20 µs an entry in a pipeline of 64, 4 µs here). Each entry's
# outcome is its own (pcall): an error for one stream does not fail the others. The field
# name is streams.EVENT_FIELD.
_PUBLISH = """
local ids = {}
for i = 1, #KEYS do
  ids[i] = redis.pcall('XADD', KEYS[i], 'MAXLEN', '~', ARGV[1], '*', 'event', ARGV[i + 1])
end
return ids
"""

# Forget consumers idle longer than ARGV[2] ms with nothing pending (every restart of a node
# leaves its old consumers behind). In a script so that no entry can be delivered to one
# between the check and the deletion (deleting a consumer drops what it has pending).
_FORGET_CONSUMERS = """
local forgotten = 0
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local name, pending, idle
  for i = 1, #consumer, 2 do
    local key = consumer[i]
    if key == 'name' then name = consumer[i + 1]
    elseif key == 'pending' then pending = consumer[i + 1]
    elseif key == 'idle' then idle = consumer[i + 1] end
  end
  if pending == 0 and idle > tonumber(ARGV[2]) and name ~= ARGV[3] then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
    forgotten = forgotten + 1
  end
end
return forgotten
"""


class RedisStreamsBus:
    """The :class:`hub.bus.Bus` on Redis Streams; see the module docstring and
    ``docs/scaling.md``."""

    def __init__(
        self,
        settings: BusSettings,
        metrics: Metrics | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.rng = rng or random.Random()
        # one immediate retry: a pooled connection that Redis closed (it restarted) fails once
        # and the command goes out on a new one; beyond that the caller hears BusUnavailable
        self.redis: Any = aioredis.Redis.from_url(
            settings.url,
            socket_timeout=settings.timeout,
            socket_connect_timeout=settings.timeout,
            retry=Retry(NoBackoff(), 1),
        )
        self.forget_consumers = self.redis.register_script(_FORGET_CONSUMERS)
        self._publish = self.redis.register_script(_PUBLISH)
        self._node = f"{socket.gethostname()}-{os.getpid()}"
        self._numbers = itertools.count(1)
        self._open: set[StreamSubscription] = set()
        self._closing: set[asyncio.Task[None]] = set()
        self._published: dict[str, Any] = {}  # topic: its published counter
        self._outgoing: list[tuple[str, bytes, asyncio.Future[None]]] = []
        self._sender: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        return f"RedisStreamsBus({redacted(self.settings.url)!r})"

    def key(self, topic: str) -> str:
        return stream_key(self.settings.prefix, topic)

    def dead_key(self, topic: str) -> str:
        return dead_letter_key(self.settings.prefix, topic)

    def consumer_name(self) -> str:
        """Unique per subscription: host, process and a counter (readable in XINFO)."""
        return f"{self._node}-{next(self._numbers)}"

    async def publish(self, topic: str, event: BusEvent) -> None:
        """Returns once Redis has the entry. Publishes made while others are on their way go
        out together in one command (as the store commits in groups): one round trip for
        many concurrent ingests instead of one each."""
        done = asyncio.get_running_loop().create_future()
        self._outgoing.append((topic, encode_event(event), done))
        if self._sender is None:
            self._sender = asyncio.ensure_future(self._send())
        await done

    async def _send(self) -> None:
        try:
            while self._outgoing:
                batch, self._outgoing = self._outgoing, []
                try:
                    results = await self._publish(
                        keys=[self.key(topic) for topic, _data, _done in batch],
                        args=[self.settings.maxlen, *(data for _topic, data, _done in batch)],
                    )
                except (RedisError, OSError) as exc:
                    results = [exc] * len(batch)
                for (topic, _data, done), result in zip(batch, results, strict=True):
                    if not done.done():  # the publisher may have been cancelled
                        self._settle(topic, done, result)
        finally:
            self._sender = None

    def _settle(self, topic: str, done: asyncio.Future[None], result: object) -> None:
        if not isinstance(result, BaseException):
            counter = self._published.get(topic)
            if counter is None:
                counter = self._published[topic] = self.metrics.bus_published.labels(topic)
            counter.inc()
            done.set_result(None)
        elif is_unavailable(result):
            self.metrics.bus_publish_failed.labels(topic).inc()
            failure = BusUnavailable(
                f"the bus at {redacted(self.settings.url)} cannot take events now: {result}"
            )
            failure.__cause__ = result
            done.set_exception(failure)
        else:
            done.set_exception(result)

    def subscribe(self, topic: str, group: str | None = None) -> StreamSubscription:
        subscription: StreamSubscription
        if group is None:
            subscription = BroadcastSubscription(self, topic)
        else:
            subscription = WorkSubscription(self, topic, group)
        self._open.add(subscription)
        return subscription

    def retire(  # a subscription closed; its last acknowledgements are on their way
        self, subscription: StreamSubscription, last_words: asyncio.Task[None] | None
    ) -> None:
        self._open.discard(subscription)
        if last_words is not None:
            self._closing.add(last_words)
            last_words.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """Close every subscription, write their last acknowledgements (briefly), disconnect."""
        for subscription in list(self._open):
            subscription.close()
        pending = [*self._closing, *([self._sender] if self._sender is not None else [])]
        if pending:
            await asyncio.wait(pending, timeout=self.settings.timeout)
        await self.redis.aclose()
