"""Worker processes for pure, CPU-heavy jobs (parsing mail) with a time budget per job.

``concurrent.futures.ProcessPoolExecutor`` cannot stop a job: when ``wait_for`` gives up, the
worker goes on computing, and every job queued behind it waits too (and runs out of its own
time). Here each job runs in a worker of its own for the time it takes; a job over its budget
gets its worker killed and a fresh one started, so it costs the others at most that budget.

Jobs and results cross a pipe pickled, in a thread of the pool's own: the event loop only
waits. Workers are started from the ``forkserver`` (a clean process, not a fork of one with
running threads), and die with the hub even when it is killed with SIGKILL
(:func:`die_with_parent`, also usable as a ``ProcessPoolExecutor`` initializer).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import importlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext
from typing import Any, TypeVar

T = TypeVar("T")


class WorkerError(Exception):
    """A job did not produce a result: it overran its budget or its worker died."""


class JobTimeout(WorkerError, TimeoutError):
    """The job ran past its budget; its worker was killed and replaced."""


class WorkerLost(WorkerError):
    """The worker died during the job (killed from outside, out of memory, a crash)."""


_PR_SET_PDEATHSIG = 1  # linux/prctl.h
WATCH_INTERVAL = 1.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # there, but someone else's (a reused pid): not ours any more
        return False
    return True


def _watch(parent: int, hub: int) -> None:
    while True:
        time.sleep(WATCH_INTERVAL)
        if os.getppid() != parent or not _alive(hub):
            os._exit(1)


def _release_forkserver() -> None:
    """Close this process's copy of the forkserver's "alive" pipe (multiprocessing keeps it in
    a private attribute; nothing here starts processes through the forkserver)."""
    with contextlib.suppress(AttributeError, OSError, TypeError):
        from multiprocessing import forkserver

        server = forkserver._forkserver
        alive = getattr(server, "_forkserver_alive_fd", None)
        if isinstance(alive, int):
            os.close(alive)
            server._forkserver_alive_fd = None  # type: ignore[attr-defined]


def die_with_parent(hub: int) -> None:
    """End this worker process when the hub (pid ``hub``) ends, however it ends.

    Call it first thing in a worker. A killed hub runs no cleanup, and a worker blocked on its
    job queue or busy with a job would live on, re-parented to init. A worker's parent is the
    forkserver, which exits once every holder of its "alive" pipe has gone: the hub and, as
    multiprocessing hands it to them, every worker. So the worker lets go of it here, the
    forkserver exits with the hub, and on Linux the kernel then sends the worker SIGKILL
    (``prctl(PR_SET_PDEATHSIG)``), even in the middle of a job. Everywhere, and in case prctl
    is unavailable, a daemon thread checks every second that the parent and the hub are still
    there."""
    _release_forkserver()
    parent = os.getppid()
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent or not _alive(hub):  # it died before we asked to follow it
        os._exit(1)
    threading.Thread(target=_watch, args=(parent, hub), daemon=True, name="watch-hub").start()


def serve(connection: Connection, preload: tuple[str, ...], hub: int) -> None:
    """A worker's life: run ``(function, args)`` jobs from ``connection`` until it closes."""
    die_with_parent(hub)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the hub's to handle
    for name in preload:  # pay for imports now, not in the first job's budget
        importlib.import_module(name)
    while True:
        try:
            function, args = connection.recv()
        except (EOFError, OSError):
            return
        try:
            outcome: tuple[bool, Any] = (True, function(*args))
        except BaseException as exc:  # everything goes back to the caller, typed
            outcome = (False, exc)
        try:
            connection.send(outcome)
        except Exception as exc:  # an unpicklable result or exception
            connection.send((False, RuntimeError(f"worker could not return its result: {exc!r}")))


class _Worker:
    def __init__(self, context: ForkServerContext, preload: tuple[str, ...]) -> None:
        ours, theirs = context.Pipe()
        self.connection = ours
        self.process = context.Process(
            target=serve,
            args=(theirs, preload, os.getpid()),
            daemon=True,
            name="channelhub-worker",
        )
        self.process.start()
        theirs.close()

    def call(self, function: Callable[..., Any], args: tuple[Any, ...]) -> tuple[bool, Any]:
        """Send a job and wait for its outcome (blocking: runs in the pool's threads)."""
        self.connection.send((function, args))
        outcome: tuple[bool, Any] = self.connection.recv()
        return outcome

    def signal_kill(self) -> None:
        """SIGKILL the worker (does not block: the thread waiting in :meth:`call` gets EOF)."""
        with contextlib.suppress(OSError, ValueError):
            self.process.kill()

    def kill(self) -> None:
        """Stop the worker and reap it (blocking)."""
        self.signal_kill()
        self.process.join(5)
        self.connection.close()

    def close(self, timeout: float) -> None:
        """Let the worker finish and exit (its pipe closes), killing it after ``timeout``."""
        self.connection.close()
        self.process.join(timeout)
        if self.process.is_alive():
            self.kill()

    @property
    def pid(self) -> int:
        return int(self.process.pid or 0)


class WorkerPool:
    """``size`` worker processes; :meth:`run` gives a job one of them for at most its budget.

    Jobs wait for a free worker (first come, first served); the budget starts when the job
    reaches its worker. ``preload`` names modules each worker imports when it starts."""

    def __init__(self, size: int, *, preload: tuple[str, ...] = (), name: str = "worker") -> None:
        if size < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.size = size
        self.preload = preload
        self._context = multiprocessing.get_context("forkserver")
        # one thread per worker waits for its job, as many again start and reap workers: a
        # replacement never waits for a thread held by a busy worker
        self._threads = concurrent.futures.ThreadPoolExecutor(2 * size + 1, thread_name_prefix=name)
        self._idle: asyncio.Queue[_Worker] = asyncio.Queue()
        self._workers: set[_Worker] = set()
        self._closed = False

    async def start(self) -> None:
        """Start every worker (they import ``preload`` beside the loop)."""
        for _ in range(self.size):
            await self._add()

    @property
    def pids(self) -> list[int]:
        """Process ids of the live workers (for tests and diagnostics)."""
        return sorted(worker.pid for worker in self._workers)

    async def _add(self) -> None:
        loop = asyncio.get_running_loop()
        worker = await loop.run_in_executor(self._threads, _Worker, self._context, self.preload)
        if self._closed:
            await loop.run_in_executor(self._threads, worker.kill)
            return
        self._workers.add(worker)
        self._idle.put_nowait(worker)

    async def _replace(self, worker: _Worker) -> None:
        self._workers.discard(worker)
        worker.signal_kill()
        await asyncio.get_running_loop().run_in_executor(self._threads, worker.kill)
        if not self._closed:
            await self._add()

    async def run(self, function: Callable[..., T], *args: Any, budget: float) -> T:
        """``function(*args)`` in a worker; :class:`JobTimeout` after ``budget`` seconds (the
        worker is killed and replaced), :class:`WorkerLost` if it died, else the job's own
        result or exception. ``function`` and ``args`` must pickle."""
        if self._closed:
            raise WorkerError("the worker pool is closed")
        worker = await self._idle.get()
        loop = asyncio.get_running_loop()
        call = loop.run_in_executor(self._threads, worker.call, function, args)
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
            # that arrives as the job finishes
            async with asyncio.timeout(budget):
                ok, value = await asyncio.shield(call)
        except TimeoutError:
            call.add_done_callback(_ignore_outcome)
            await self._replace(worker)
            raise JobTimeout(
                f"the job ran past its {budget:g} s budget; its worker was killed"
            ) from None
        except (EOFError, OSError) as exc:
            await self._replace(worker)
            raise WorkerLost(f"the worker died during the job ({exc.__class__.__name__})") from None
        except BaseException:  # cancelled: the worker is mid-job and cannot be reused
            call.add_done_callback(_ignore_outcome)
            await asyncio.shield(self._replace(worker))
            raise
        self._idle.put_nowait(worker)
        if ok:
            return value  # type: ignore[no-any-return]
        raise value

    async def close(self, grace: float = 2.0) -> None:
        """Stop every worker: idle ones exit at once, busy ones are killed after ``grace``."""
        self._closed = True
        loop = asyncio.get_running_loop()
        workers, self._workers = list(self._workers), set()
        await asyncio.gather(
            *(loop.run_in_executor(self._threads, worker.close, grace) for worker in workers)
        )
        self._threads.shutdown(wait=False, cancel_futures=True)


def _ignore_outcome(future: asyncio.Future[Any]) -> None:
    """Collect the outcome of a call nobody waits for any more (its worker was killed)."""
    if not future.cancelled():
        future.exception()
