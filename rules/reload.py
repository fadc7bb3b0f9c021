"""Hot reload: watch the rules file, compile changes off the event loop, swap atomically.

A valid change replaces the running :class:`RuleSet` in one assignment (evaluations in flight
keep the revision they started with); an invalid one is logged with the same messages as
``channelhub rules check`` and the previous rules keep serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import logging
import multiprocessing
import os
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from functools import partial

from rules.compiler import RuleSet
from rules.errors import ConfigError
from rules.loader import MAX_BYTES, check_rules, rebuild_rules

log = logging.getLogger(__name__)

Accepted = Callable[[RuleSet, str], Awaitable[None]]


def _rebuild_long_lived(
    checked: list[bytes],
    text: str,
    queues: set[str] | None,
    calendars: set[str] | None,
) -> RuleSet:
    """:func:`rebuild_rules` with the garbage collector paused, the result frozen out of later
    collections.

    Rebuilding allocates hundreds of thousands of objects, which would trigger full garbage
    collections that hold the GIL (and stall the event loop) for tens of milliseconds. The
    new rules live until the next reload, so they are frozen (``gc.freeze``) before the
    collector resumes: no collection ever scans them; reference counting frees them once
    replaced. Done here, in the reloader only a serving hub runs, not in the loader: the CLI,
    tests and tools load rules too, and their collector is not ours to change.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        return rebuild_rules(checked, text, queues=queues, calendars=calendars)
    finally:
        gc.freeze()
        if collecting:
            gc.enable()


class RulesHolder:
    """The current rules revision; reading ``current`` is always consistent."""

    def __init__(self, ruleset: RuleSet) -> None:
        self.current = ruleset


class RulesWatcher:
    def __init__(
        self,
        path: str,
        holder: RulesHolder,
        *,
        queues: set[str] | None,
        calendars: set[str] | None,
        interval: float = 2.0,
        on_accept: Accepted | None = None,
        worker_setup: Callable[[int], None] | None = None,
    ) -> None:
        self.path = path
        self.holder = holder
        self.queues = queues
        self.calendars = calendars
        self.interval = interval
        self.on_accept = on_accept
        # run first in the parsing worker with the parent's pid: the hub passes
        # connectors.shared.workers.die_with_parent, so the worker ends with it, also when the
        # hub is killed (rules/ imports neither hub/ nor connectors/)
        self.worker_setup = worker_setup
        self.last_problems: list[str] = []
        self.attempts = 0  # reloads finished, accepted or not (tests wait on it)
        self._stamp: tuple[float, int] | None = self._stat()
        self._task: asyncio.Task[None] | None = None
        self._pool: ProcessPoolExecutor | None = None

    def _stat(self) -> tuple[float, int] | None:
        try:
            info = os.stat(self.path)
        except OSError:
            return None
        return (info.st_mtime, info.st_size)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="rules-watcher")
        # start the parsing worker now, not in the middle of the first reload
        self._parser().submit(int)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            stamp = self._stat()
            if stamp is None or stamp == self._stamp:
                continue
            self._stamp = stamp
            await self.reload()

    async def reload(self) -> bool:
        """Load the file now; True if a new revision was swapped in."""
        try:
            return await self._reload()
        finally:
            self.attempts += 1

    async def _reload(self) -> bool:
        try:
            raw = await asyncio.to_thread(self._read)
        except OSError as exc:
            log.error("rules file %s unreadable: %s; keeping the running rules", self.path, exc)
            return False
        digest = hashlib.sha256(raw).hexdigest()
        if digest == self.holder.current.digest:
            return False
        text = raw.decode("utf-8", errors="replace")
        try:
            # Parsing a big file holds the GIL in long C calls (libyaml, pydantic-core), which
            # would stall the event loop even from a thread: parse in a worker process, then
            # compile (short Python steps) in a thread.
            checked = await asyncio.get_running_loop().run_in_executor(
                self._parser(),
                partial(check_rules, queues=self.queues, calendars=self.calendars),
                text,
                self.path,
            )
            ruleset = await asyncio.to_thread(
                _rebuild_long_lived, checked, text, self.queues, self.calendars
            )
        except ConfigError as exc:
            self.last_problems = exc.problems
            log.error(
                "rules file %s rejected, the running rules stay:\n%s",
                self.path,
                "\n".join(exc.problems),
            )
            return False
        self.last_problems = []
        self.holder.current = ruleset
        log.info(
            "rules reloaded from %s: %d rules, sha256 %s",
            self.path,
            len(ruleset.rules),
            ruleset.digest,
        )
        if self.on_accept is not None:
            await self.on_accept(ruleset, text)
        return True

    def _parser(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # forkserver: never fork the hub's own threads (database drivers, executors)
            self._pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("forkserver"),
                initializer=(
                    None if self.worker_setup is None else partial(self.worker_setup, os.getpid())
                ),
            )
        return self._pool

    def _read(self) -> bytes:
        with open(self.path, "rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
        if len(raw) > MAX_BYTES:
            raise OSError(f"larger than {MAX_BYTES} bytes")
        return raw
