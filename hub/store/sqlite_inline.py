"""SQLite for SQLAlchemy's ``aiosqlite`` dialect without a thread hop per call.

aiosqlite runs every call (cursor, execute, fetch, close, commit) in the connection's own
thread and wakes the event loop for each result: four hops per statement. In
``bench/pipeline.py`` that hand-off took about half of the hub's samples (py-spy: the queue
put, the thread switch, the loop's self-pipe), more than the statements themselves. This
shim gives the dialect the same interface but runs the ``sqlite3`` calls in the loop's own
thread, except the two that can wait:

- ``commit``, which fsyncs (and may checkpoint the WAL), and
- a statement SQLite answers with "busy": the connection's own busy timeout is 0, so a write
  that finds another *process* holding the write lock (the hub's own writes are serialized
  by the store's writer, so inside one hub it never does) fails at once and is run again in
  a worker thread that waits up to the configured timeout.

So a batch of writes costs one hop (its commit) instead of four per statement. Reads run
inline: in WAL mode a reader does not wait for a writer. A long read (an export, a report)
holds the loop for its duration, as it held the GIL before.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any

_SQLITE_BUSY = 5  # the primary result code of "database is locked"


def _busy(exc: sqlite3.OperationalError) -> bool:
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF == _SQLITE_BUSY


class InlineCursor:
    """An aiosqlite-like cursor over a ``sqlite3`` cursor; see the module docstring."""

    def __init__(self, connection: InlineConnection) -> None:
        self._owner = connection
        self._cursor = connection._conn.cursor()

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._cursor.close()

    async def execute(
        self, operation: str, parameters: Sequence[Any] | None = None
    ) -> InlineCursor:
        arguments = () if parameters is None else parameters
        try:
            self._cursor.execute(operation, arguments)
        except sqlite3.OperationalError as exc:
            if not _busy(exc):
                raise
            await self._owner._waiting(self._cursor.execute, operation, arguments)
        return self

    async def executemany(
        self, operation: str, seq_of_parameters: Iterable[Sequence[Any]]
    ) -> InlineCursor:
        rows = list(seq_of_parameters)  # a retry needs them again
        try:
            self._cursor.executemany(operation, rows)
        except sqlite3.OperationalError as exc:
            if not _busy(exc):
                raise
            await self._owner._waiting(self._cursor.executemany, operation, rows)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        if size is None:
            return self._cursor.fetchmany()
        return self._cursor.fetchmany(size)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def nextset(self) -> None:
        return None

    async def setinputsizes(self, *sizes: Any) -> None:
        return None

    async def close(self) -> None:
        self._cursor.close()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._rows()

    async def _rows(self) -> AsyncIterator[Any]:
        for row in self._cursor:
            yield row

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class _Immediate:
    """What the dialect's isolation-level setter puts work into (aiosqlite's request queue):
    here the work runs at once."""

    @staticmethod
    def put_nowait(request: tuple[asyncio.Future[Any], Callable[[], Any]]) -> None:
        future, function = request
        try:
            result = function()
        except Exception as exc:
            future.set_exception(exc)
        else:
            future.set_result(result)


class InlineConnection:
    """An aiosqlite-like connection over a ``sqlite3`` connection; see the module docstring."""

    def __init__(self, connection: sqlite3.Connection, busy_timeout: float) -> None:
        self._conn = connection
        self._busy_timeout_ms = int(busy_timeout * 1000)
        self._connection: sqlite3.Connection | None = connection  # the dialect checks it
        self._tx = _Immediate()

    def cursor(self) -> InlineCursor:
        if self._connection is None:
            raise ValueError("no active connection")
        return InlineCursor(self)

    async def _waiting(self, call: Callable[..., Any], *args: Any) -> None:
        """Run ``call`` again in a worker thread, where SQLite may wait for its lock."""

        def wait_and_call() -> None:
            self._conn.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
            try:
                call(*args)
            finally:
                self._conn.execute("PRAGMA busy_timeout=0")

        await asyncio.to_thread(wait_and_call)

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    async def commit(self) -> None:
        if self._conn.in_transaction:  # nothing written: nothing to fsync
            await asyncio.to_thread(self._conn.commit)

    async def rollback(self) -> None:
        self._conn.rollback()

    async def close(self) -> None:
        if self._connection is not None:
            self._connection = None
            self._conn.close()

    def stop(self) -> None:
        """Close at once (the dialect's forced termination)."""
        if self._connection is not None:
            self._connection = None
            self._conn.close()

    async def create_function(self, *args: Any, **kw: Any) -> None:
        self._conn.create_function(*args, **kw)


def inline_creator(
    args: Sequence[Any], kwargs: Mapping[str, Any], *, busy_timeout: float
) -> Callable[[], Any]:
    """An ``async_creator`` for ``create_async_engine``: ``sqlite3.connect(*args, **kwargs)``
    (what the dialect would pass to aiosqlite) wrapped for the dialect. The connection itself
    never waits for a lock (busy timeout 0: the engine must not set another); a statement
    that finds one held waits up to ``busy_timeout`` seconds in a worker thread."""

    async def connect() -> InlineConnection:
        options = {**kwargs, "check_same_thread": False, "timeout": 0.0}
        return InlineConnection(sqlite3.connect(*args, **options), busy_timeout)

    return connect
