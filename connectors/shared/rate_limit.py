"""Rate limits per key, with the time passed in. Pure.

* :class:`TokenBucket` / :class:`Buckets`: ``burst`` at once, then ``rate`` per second (a web
  chat visitor typing fast).
* :class:`WindowCap`: at most ``count`` per sliding ``window`` of seconds (automatic replies to
  one sender).
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass


@dataclass(slots=True)
class TokenBucket:
    """Allows ``burst`` messages at once and ``rate`` per second after that."""

    rate: float
    burst: float
    tokens: float
    updated: float

    @classmethod
    def full(cls, rate: float, burst: int, now: float) -> TokenBucket:
        return cls(rate, float(burst), float(burst), now)

    def take(self, now: float) -> bool:
        """Spend one token if there is one (True), else refuse (False)."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Buckets:
    """A :class:`TokenBucket` per key, full when the key is first seen."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, TokenBucket] = {}

    def allow(self, key: str, now: float) -> bool:
        """Whether one more event of ``key`` is allowed at ``now`` (it is counted if so)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket.full(self.rate, self.burst, now)
        return bucket.take(now)

    def forget(self, key: str) -> None:
        """Drop ``key``'s bucket (the visitor left); it starts full next time."""
        self._buckets.pop(key, None)


class WindowCap:
    """At most ``count`` events per key in any ``window`` seconds."""

    def __init__(self, count: int, window: float) -> None:
        self.count = count
        self.window = window
        self._events: defaultdict[str, deque[float]] = defaultdict(deque)

    def allow(self, key: str, now: float) -> bool:
        """Whether one more event of ``key`` fits at ``now`` (it is counted if so)."""
        events = self._events[key]
        while events and events[0] <= now - self.window:
            events.popleft()
        if len(events) >= self.count:
            return False
        events.append(now)
        return True
