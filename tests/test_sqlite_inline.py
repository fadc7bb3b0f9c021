"""SQLite calls in the event loop's thread (``hub.store.sqlite_inline``): the same answers as
aiosqlite's thread per connection, and what may wait (another process's write lock, the commit)
still waits off the loop."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from hub.store.database import Database


@pytest.mark.parametrize("calls", ["inline", "thread"])
async def test_reads_writes_streams_and_autocommit_agree(tmp_path: Path, calls: str) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/hub.db", sqlite_calls=calls)
    await database.start(run_migrations=False)
    try:

        async def create(connection: object) -> None:
            await connection.execute(text("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)"))  # type: ignore[attr-defined]

        await database.writer.call(create)  # type: ignore[arg-type]

        async def fill(connection: object) -> int:
            result = await connection.execute(  # type: ignore[attr-defined]
                text("INSERT INTO t (k, v) VALUES (:k, :v)"),
                [{"k": k, "v": f"v{k}"} for k in range(50)],
            )
            return int(result.rowcount)

        assert await database.writer.call(fill) == 50  # type: ignore[arg-type]
        async with database.read() as connection:
            rows = (await connection.execute(text("SELECT k, v FROM t ORDER BY k"))).all()
            assert [tuple(row) for row in rows[:2]] == [(0, "v0"), (1, "v1")]
            streamed = [row.k async for row in await connection.stream(text("SELECT k FROM t"))]
            assert sorted(streamed) == list(range(50))
        async with database.read() as connection:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.execute(text("DELETE FROM t WHERE k >= 10"))
        async with database.read() as connection:
            assert (await connection.execute(text("SELECT count(*) FROM t"))).scalar_one() == 10

        async def broken(connection: object) -> None:
            await connection.execute(text("INSERT INTO t (k, v) VALUES (1, 'again')"))  # type: ignore[attr-defined]

        with pytest.raises(Exception, match="UNIQUE"):
            await database.writer.call(broken)  # type: ignore[arg-type]
        async with database.read() as connection:  # the failed batch left nothing behind
            assert (
                await connection.execute(text("SELECT v FROM t WHERE k = 1"))
            ).scalar_one() == "v1"
    finally:
        await database.close()


async def test_a_write_waiting_for_another_process_lock_does_not_hold_the_loop(
    tmp_path: Path,
) -> None:
    """Another process holds SQLite's write lock: the hub's write waits for it in a worker
    thread while the loop goes on serving; it is committed once the lock is released."""
    path = tmp_path / "hub.db"
    database = Database(f"sqlite+aiosqlite:///{path}")
    await database.start(run_migrations=False)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:

        async def create(connection: object) -> None:
            await connection.execute(text("CREATE TABLE t (k INTEGER PRIMARY KEY)"))  # type: ignore[attr-defined]

        await database.writer.call(create)  # type: ignore[arg-type]
        other.execute("BEGIN IMMEDIATE")  # the other process's write transaction
        fallback = threading.Timer(20.0, other.rollback)  # a blocked loop must not hang the test
        fallback.start()

        async def write(connection: object) -> None:
            await connection.execute(text("INSERT INTO t (k) VALUES (1)"))  # type: ignore[attr-defined]

        pending = asyncio.ensure_future(database.writer.call(write))  # type: ignore[arg-type]
        beats = 0
        while beats < 20:  # the loop keeps running while the write waits for the lock
            await asyncio.sleep(0.01)
            beats += 1
        written_during_lock = pending.done()
        other.rollback()
        fallback.cancel()
        await pending
        assert not written_during_lock
        async with database.read() as connection:
            assert (await connection.execute(text("SELECT count(*) FROM t"))).scalar_one() == 1
    finally:
        other.close()
        await database.close()
