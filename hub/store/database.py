"""The async engine and the single writer that group-commits every write.

SQLite allows one writer at a time; instead of letting coroutines fight over the lock, all writes
go through one :class:`Writer` task. It drains whatever jobs are waiting, runs them in one
transaction and commits once, so the fsync cost is shared by the whole batch. Every caller's
future resolves only after the commit: nothing is acknowledged before it is durable. If a batch
fails, each job is retried in a transaction of its own so one bad job cannot sink its neighbours.
Driver errors reach callers as the typed errors of ``hub.store.failures``; the writer remembers
whether its last commit failed because the database could not write (``failing``), which is what
``/readyz`` reports. :class:`Database` bundles the engine, its writer and the clock that the
store's aggregates (``hub.store.conversations``, ``hub.store.outbox``, …) share.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Table, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.sqlite.aiosqlite import SQLiteDialect_aiosqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.expression import Executable

from hub.errors import HubError, StoreError, StoreUnavailable
from hub.store import migrate
from hub.store.failures import translate
from hub.store.sqlite_inline import inline_creator

log = logging.getLogger(__name__)

T = TypeVar("T")
Clock = Callable[[], float]
BatchHandler = Callable[[AsyncConnection, list[Any]], Awaitable[Sequence[Any]]]


#: connections each pool keeps (and never exceeds)
SQLITE_READERS = 15
POSTGRES_CONNECTIONS = 20


def create_engine(
    url: str, *, sqlite_synchronous: str = "full", sqlite_calls: str = "inline"
) -> AsyncEngine:
    """An engine for ``sqlite+aiosqlite://`` or ``postgresql+asyncpg://`` with our pragmas.

    ``sqlite_calls``: ``inline`` runs SQLite's calls in the event loop's thread, only lock
    waits and commits in a worker thread (``hub.store.sqlite_inline``); ``thread`` is
    aiosqlite's thread per connection with a hop per call."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            from pathlib import Path

            Path(database).parent.mkdir(parents=True, exist_ok=True)
        # readers kept open, never overflowing: an overflow connection is a new aiosqlite
        # thread, a file open and the pragmas, thrown away when it is returned (measured as
        # churn under load); WAL readers are cheap to keep. Same ceiling as the default (15).
        options: dict[str, Any] = {}
        if sqlite_calls == "inline":
            args, kwargs = SQLiteDialect_aiosqlite().create_connect_args(parsed)
            options["async_creator"] = inline_creator(args, kwargs, busy_timeout=30.0)
        engine = create_async_engine(
            url,
            connect_args={"timeout": 30},
            pool_size=SQLITE_READERS,
            max_overflow=0,
            **options,
        )
        synchronous = "FULL" if sqlite_synchronous == "full" else "NORMAL"

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute("PRAGMA foreign_keys=ON")
            if sqlite_calls != "inline":  # inline: no wait on the loop (see sqlite_inline)
                cursor.execute("PRAGMA busy_timeout=30000")
            # freed space is zeroed: erased personal data leaves no copy in the file
            cursor.execute("PRAGMA secure_delete=ON")
            cursor.close()

        return engine
    if parsed.get_backend_name() == "postgresql":
        # the same ceiling as before (20), all kept: an overflow connection is a new TCP
        # connection and authentication, dropped again when returned
        return create_async_engine(
            url, pool_size=POSTGRES_CONNECTIONS, max_overflow=0, pool_pre_ping=True
        )
    raise StoreError(f"unsupported storage URL scheme {parsed.drivername!r}")


@dataclass(slots=True)
class _Job:
    handler: BatchHandler
    item: Any
    future: asyncio.Future[Any] = field(repr=False)


async def _run_single(connection: AsyncConnection, items: list[Any]) -> list[Any]:
    return [await item(connection) for item in items]


class Writer:
    """Serializes and batches writes; see the module docstring."""

    def __init__(self, engine: AsyncEngine, *, batch_max: int = 256) -> None:
        self._engine = engine
        self._batch_max = batch_max
        self._queue: asyncio.Queue[_Job | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.jobs = 0
        #: why the last commit failed, while the database cannot write (None: it can)
        self.failing: StoreUnavailable | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="store-writer")

    async def close(self) -> None:
        """Finish every queued job, then stop."""
        if self._task is not None:
            self._queue.put_nowait(None)
            await self._task
            self._task = None

    async def submit(self, handler: BatchHandler, item: Any) -> Any:
        """Queue ``item`` for ``handler`` and wait until it is committed."""
        return await self.enqueue(handler, item)

    def enqueue(self, handler: BatchHandler, item: Any) -> asyncio.Future[Any]:
        """Queue ``item`` for ``handler`` at once; the future resolves after the commit.

        Writes are committed in the order of these calls, so a caller that must not wait (the
        dispatch service) still gets its writes applied in the order it decided them.
        """
        if self._task is None:
            raise StoreUnavailable("the store writer is not running")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(handler, item, future))
        return future

    async def call(self, fn: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run ``fn`` inside the writer's transaction and return its result after commit."""
        result: T = await self.submit(_run_single, fn)
        return result

    async def _loop(self) -> None:
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is None:
                break
            jobs = [first]
            while len(jobs) < self._batch_max and not self._queue.empty():
                job = self._queue.get_nowait()
                if job is None:
                    stopping = True
                    break
                jobs.append(job)
            await self._commit(jobs)

    @property
    def running(self) -> bool:
        """Whether the writer task is there to take jobs."""
        return self._task is not None and not self._task.done()

    async def _commit(self, jobs: list[_Job]) -> None:
        try:
            results = await self._transaction(jobs)
        except Exception as exc:
            if len(jobs) == 1:
                self._fail(jobs[0], exc)
                return
            log.warning("batch of %d writes failed (%s); retrying one by one", len(jobs), exc)
            for job in jobs:
                try:
                    results = await self._transaction([job])
                except Exception as single_exc:
                    self._fail(job, single_exc)
                else:
                    self._resolve([job], results)
            return
        self._resolve(jobs, results)

    async def _transaction(self, jobs: list[_Job]) -> list[Any]:
        results: list[Any] = []
        async with self._engine.begin() as connection:
            start = 0
            while start < len(jobs):
                handler = jobs[start].handler
                end = start
                # == not "is": a bound method is a new object at every attribute access
                while end < len(jobs) and jobs[end].handler == handler:
                    end += 1
                group = jobs[start:end]
                outcome = await handler(connection, [job.item for job in group])
                if len(outcome) != len(group):
                    raise StoreError("a batch handler returned the wrong number of results")
                results.extend(outcome)
                start = end
        self.batches += 1
        self.jobs += len(jobs)
        if self.failing is not None:
            log.warning("the store takes writes again")
            self.failing = None
        return results

    @staticmethod
    def _resolve(jobs: list[_Job], results: list[Any]) -> None:
        for job, result in zip(jobs, results, strict=True):
            if not job.future.done():
                job.future.set_result(result)

    def _fail(self, job: _Job, exc: BaseException) -> None:
        error: BaseException | None = exc if isinstance(exc, HubError) else translate(exc)
        if error is None:
            error = StoreError(f"write failed: {exc.__class__.__name__}: {exc}")
        if error is not exc:
            error.__cause__ = exc
        if isinstance(error, StoreUnavailable):
            if self.failing is None:
                log.error("the store cannot write: %s", error)
            self.failing = error
        if not job.future.done():
            job.future.set_exception(error)


def insert_ignoring_conflicts(connection: AsyncConnection, table: Table) -> Executable:
    """INSERT … ON CONFLICT DO NOTHING on both SQLite and PostgreSQL."""
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


class Database:
    """The engine, its one writer and the clock, shared by every aggregate of the store.

    Reads take a pooled connection (:meth:`read`); writes go through :attr:`writer`, so they are
    group-committed whichever aggregate makes them.
    """

    def __init__(
        self,
        url: str,
        *,
        sqlite_synchronous: str = "full",
        sqlite_calls: str = "inline",
        batch_max: int = 256,
        clock: Clock = time.time,
    ) -> None:
        self.engine: AsyncEngine = create_engine(
            url, sqlite_synchronous=sqlite_synchronous, sqlite_calls=sqlite_calls
        )
        self.writer = Writer(self.engine, batch_max=batch_max)
        self.clock = clock

    async def start(self, *, run_migrations: bool = True) -> None:
        """Apply pending migrations and start the writer."""
        if run_migrations:
            await migrate.upgrade(self.engine)
        self.writer.start()

    async def close(self) -> None:
        """Commit what is queued, stop the writer and close the pool."""
        await self.writer.close()
        await self.engine.dispose()

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A pooled connection for reads. What the driver raises inside leaves as the typed
        errors of ``hub.store.failures`` (:class:`StoreUnavailable` when the database cannot
        answer); the hub's own errors pass through."""
        try:
            async with self.engine.connect() as connection:
                yield connection
        except Exception as exc:
            error = translate(exc)
            if error is None:
                raise
            raise error from exc
