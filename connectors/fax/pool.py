"""The fax line's worker processes: documents read, previews drawn, OCR and replies rendered
off the event loop, each job within a time limit.

A ``ProcessPoolExecutor`` cannot stop a job, so a job over its limit has the whole pool
replaced (its stuck process killed with it); jobs queued behind it start again in the new one.
With no workers configured, jobs run in a thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import os
from collections.abc import Callable
from typing import TypeVar

from connectors.shared.workers import die_with_parent

T = TypeVar("T")


class DocumentPool:
    """``workers`` processes (0: a thread) between :meth:`start` and :meth:`close`."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    def start(self) -> None:
        self._pool = self._new()

    def close(self) -> None:
        """Stop the processes without waiting for their jobs (a stuck page is not waited for)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def _new(self) -> concurrent.futures.ProcessPoolExecutor | None:
        if not self.workers:
            return None
        # forkserver: a clean child, not a fork of a process with running threads; its workers
        # end with the hub even when it is killed (die_with_parent)
        return concurrent.futures.ProcessPoolExecutor(
            self.workers,
            mp_context=multiprocessing.get_context("forkserver"),
            initializer=die_with_parent,
            initargs=(os.getpid(),),
        )

    async def run(self, job: Callable[[], T], *, limit: float) -> T:
        """Run ``job`` in a worker; on timeout the pool is replaced (its stuck process with it)."""
        loop = asyncio.get_running_loop()
        pool = self._pool
        future = loop.run_in_executor(pool, job) if pool is not None else asyncio.to_thread(job)
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
            # that arrives as the job finishes, and stop() then waited forever for this task
            async with asyncio.timeout(limit):
                return await future
        except TimeoutError:
            if pool is not None and pool is self._pool:
                self._pool = self._new()
                for process in list(getattr(pool, "_processes", {}).values()):
                    process.kill()
                pool.shutdown(wait=False, cancel_futures=True)
            raise
