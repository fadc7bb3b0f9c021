"""Runs dispatch in the one hub process holding the dispatch lease (the distributed mode).

The thin I/O shell around ``hub.dispatch.lease``: claim the lease, let :func:`step` say whether
this process's term began, goes on or ended, and call ``on_gain(token)`` / ``on_loss()``
accordingly. Every claim's outcome is decided from clock readings taken around it, so the
loop is tested with a fake clock and a fake sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from hub.dispatch.lease import Change, Decision, Held, next_claim_in, step

log = logging.getLogger(__name__)


class LeaseStore(Protocol):
    async def claim_lease(self, name: str, holder: str, ttl: float) -> Decision: ...

    async def release_lease(self, name: str, holder: str) -> bool: ...


class Leadership:
    """Holds (or waits for) one lease and reports when this process's term begins and ends.

    ``on_gain(token)`` starts the work under the new fencing token; ``on_loss()`` stops it. A
    ``SWITCHED`` term (our lease expired and we took it again) is a loss then a gain.
    """

    def __init__(
        self,
        store: LeaseStore,
        name: str,
        holder: str,
        *,
        ttl: float,
        margin: float,
        poll: float,
        on_gain: Callable[[int], Awaitable[None]],
        on_loss: Callable[[], Awaitable[None]],
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.store = store
        self.name = name
        self.holder = holder
        self.ttl = ttl
        self.margin = margin
        self.poll = poll
        self.on_gain = on_gain
        self.on_loss = on_loss
        self.monotonic = monotonic
        self.sleep = sleep
        self.held: Held | None = None
        self.changes = 0  # terms begun and ended, for /metrics and tests
        self._task: asyncio.Task[None] | None = None

    @property
    def token(self) -> int | None:
        """The fencing token of the current term (None: not holding)."""
        return None if self.held is None else self.held.token

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name=f"lease-{self.name}")

    async def stop(self) -> None:
        """Stop claiming; a holder ends its term and gives the lease up for a fast takeover."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.held is not None:
            self.held = None
            await self._lost()
            try:
                await self.store.release_lease(self.name, self.holder)
            except Exception as exc:  # it lapses by itself
                log.warning("giving up the %s lease failed: %s", self.name, exc)

    async def run(self) -> None:
        while True:
            await self.tick()
            wait = next_claim_in(self.held, self.monotonic(), self.ttl, self.poll)
            await self.sleep(wait)

    async def tick(self) -> Change:
        """One claim and what it changed."""
        asked_at = self.monotonic()
        outcome: Decision | None
        try:
            outcome = await self.store.claim_lease(self.name, self.holder, self.ttl)
        except Exception as exc:
            log.warning("claiming the %s lease failed: %s", self.name, exc)
            outcome = None
        result = step(
            self.held, outcome, self.holder, asked_at, self.monotonic(), self.ttl, self.margin
        )
        self.held = result.held
        if result.change in (Change.LOST, Change.SWITCHED):
            await self._lost()
        if result.change in (Change.GAINED, Change.SWITCHED):
            assert result.held is not None
            self.changes += 1
            log.warning("%s lease taken with fencing token %d", self.name, result.held.token)
            await self.on_gain(result.held.token)
        return result.change

    async def _lost(self) -> None:
        self.changes += 1
        log.warning("%s lease lost or given up: stopping", self.name)
        try:
            await self.on_loss()
        except Exception:
            log.exception("stopping after the %s lease ended failed", self.name)
