"""``hub.store.failures.translate``: real driver errors, provoked on SQLite and PostgreSQL, each
mapped to the typed error callers act on (issue 14, item 4)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from hub.errors import NotFound, StoreConflict, StoreError, StoreUnavailable
from hub.store.failures import translate
from tests.conftest import pg_database

Statement = Callable[[AsyncConnection], Awaitable[object]]


async def _raised(url: str, statement: Statement, **engine: object) -> BaseException:
    """What running ``statement`` on ``url`` raises (through SQLAlchemy, as the store runs it)."""
    created = create_async_engine(url, **engine)  # type: ignore[arg-type]
    try:
        async with created.begin() as connection:
            await statement(connection)
    except Exception as exc:
        return exc
    finally:
        await created.dispose()
    raise AssertionError("nothing was raised")


async def _table(connection: AsyncConnection) -> None:
    await connection.execute(text("CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v TEXT)"))


async def _duplicate(connection: AsyncConnection) -> None:
    await _table(connection)
    await connection.execute(text("INSERT INTO t VALUES (1, 'a')"))
    await connection.execute(text("INSERT INTO t VALUES (1, 'b')"))


async def _typo(connection: AsyncConnection) -> None:
    await connection.execute(text("SELEC 1"))


async def _fill(connection: AsyncConnection) -> None:
    """SQLite's own 'database or disk is full', from a page limit the file cannot grow past."""
    await _table(connection)
    pages = (await connection.execute(text("PRAGMA page_count"))).scalar_one()
    await connection.execute(text(f"PRAGMA max_page_count = {pages}"))
    for index in range(2, 200):
        await connection.execute(
            text("INSERT INTO t VALUES (:k, :v)"), {"k": index, "v": "x" * 4000}
        )


async def _write(connection: AsyncConnection) -> None:
    await _table(connection)
    await connection.execute(text("INSERT INTO t (v) VALUES ('w')"))


async def test_sqlite_failures(tmp_path: Path) -> None:
    database = tmp_path / "a.db"
    url = f"sqlite+aiosqlite:///{database}"
    assert isinstance(translate(await _raised(url, _duplicate)), StoreConflict)
    typo = translate(await _raised(url, _typo))
    assert type(typo) is StoreError  # a bug in a statement, not an outage
    full = translate(await _raised(url, _fill))
    assert isinstance(full, StoreUnavailable) and "full" in str(full), full
    read_only = f"sqlite+aiosqlite:///file:{database}?mode=ro&uri=true"
    assert isinstance(translate(await _raised(read_only, _write)), StoreUnavailable)
    (tmp_path / "dir.db").mkdir()  # a directory where the file should be
    gone = translate(await _raised(f"sqlite+aiosqlite:///{tmp_path / 'dir.db'}", _write))
    assert isinstance(gone, StoreUnavailable) and "unable to open" in str(gone), gone
    # aiosqlite stops a connection that failed to open without waiting for its thread
    for thread in threading.enumerate():
        if "_connection_worker_thread" in thread.name:
            await asyncio.to_thread(thread.join, 5)


async def test_postgresql_failures() -> None:
    url, drop = await pg_database()
    try:
        assert isinstance(translate(await _raised(url, _duplicate)), StoreConflict)
        assert type(translate(await _raised(url, _typo))) is StoreError
        missing = url.rsplit("/", 1)[0] + f"/chtest_missing_{uuid.uuid4().hex[:8]}"
        assert isinstance(translate(await _raised(missing, _write)), StoreUnavailable)  # 3D000
        refused = "postgresql+asyncpg://postgres@127.0.0.1:1/test"  # nothing listens on port 1
        assert isinstance(translate(await _raised(refused, _write)), StoreUnavailable)
    finally:
        await drop()


def test_what_is_not_a_database_failure_passes_through() -> None:
    assert translate(NotFound("no such conversation")) is None
    assert translate(ValueError("a bug")) is None
    assert isinstance(translate(ConnectionResetError("peer reset")), StoreUnavailable)
