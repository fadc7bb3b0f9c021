"""Runs dispatch in the one hub process holding the dispatch lease (the distributed mode).

The thin I/O shell around ``hub.lease``: claim the lease, let :func:`step` say whether
this process's term began, goes on or ended, and call ``on_gain(token)`` / ``on_loss()``
accordingly. Every claim's outcome is decided from clock readings taken around it, so the
loop is tested with a fake clock and a fake sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from hub.lease import Change, Decision, Held, next_claim_in, step

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
        #: False: claim no more (a holder that lost its term and cannot start another)
        self.bidding = True
        self.stopping = False  # set by stop(): a term ending now is the process shutting down
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
        self.stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.held is not None:
            self.held = None
            await self._lost()
            await self._release()

    async def run(self) -> None:
        while True:
            await self.tick()
            wait = next_claim_in(self.held, self.monotonic(), self.ttl, self.poll)
            await self.sleep(wait)

    async def tick(self) -> Change:
        """One claim and what it changed."""
        if not self.bidding and self.held is None:
            return Change.NONE
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
            if not self.bidding:  # retired by the loss: hand the new term straight back
                self.held = None
                await self._release()
                return Change.LOST
            self.changes += 1
            log.warning("%s lease taken with fencing token %d", self.name, result.held.token)
            try:
                await self.on_gain(result.held.token)
            except Exception:  # e.g. the store went away while rebuilding: let another try
                log.exception("starting under the %s lease failed; giving it up", self.name)
                self.held = None
                await self._lost()
                await self._release()
                return Change.LOST
        return result.change

    async def _release(self) -> None:
        try:
            await self.store.release_lease(self.name, self.holder)
        except Exception as exc:  # it lapses by itself
            log.warning("giving up the %s lease failed: %s", self.name, exc)

    async def _lost(self) -> None:
        self.changes += 1
        log.warning("%s lease lost or given up: stopping", self.name)
        try:
            await self.on_loss()
        except Exception:
            log.exception("stopping after the %s lease ended failed", self.name)


def restart_process() -> None:
    """Shut this process down gracefully (SIGTERM), for its supervisor to start it again
    (compose ``restart: unless-stopped``, systemd ``Restart=always``)."""
    os.kill(os.getpid(), signal.SIGTERM)


class Dispatching(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Fenced(LeaseStore, Protocol):
    def fence_dispatch(self, token: int) -> None: ...


def dispatch_leadership(
    store: Fenced,
    dispatch: Dispatching,
    holder: str,
    *,
    ttl: float,
    margin: float,
    poll: float,
    on_retired: Callable[[], None],
    on_change: Callable[[str], None] = lambda _change: None,
) -> Leadership:
    """Run ``dispatch`` only while this process holds the dispatch lease.

    Until then the store's dispatch writes carry token 0, which the store always refuses, so
    a standby's console can never change who holds what. A term's writes carry its token. A
    process whose term ends (paused or cut off from PostgreSQL past its lease) stops
    dispatching, bids no more and calls ``on_retired`` (the app: :func:`restart_process`):
    dispatch state is rebuilt by starting afresh, the way a standby starts, while another
    process takes dispatch over.
    """
    store.fence_dispatch(0)
    running = False

    async def gained(token: int) -> None:
        nonlocal running
        store.fence_dispatch(token)
        on_change("gained")
        await dispatch.start()  # rebuilds from the store: assignments, then the backlog
        running = True

    async def lost() -> None:
        nonlocal running
        on_change("lost")
        leadership.bidding = False
        if running:
            running = False
            await dispatch.stop()
        if not leadership.stopping:
            log.error("this process's dispatch term ended; it restarts to become a standby")
            on_retired()

    leadership = Leadership(
        store,
        "dispatch",
        holder,
        ttl=ttl,
        margin=margin,
        poll=poll,
        on_gain=gained,
        on_loss=lost,
    )
    return leadership
