"""Schema migrations: several processes migrating one fresh database at once."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import create_async_engine

from hub.store.migrate import current_revision, upgrade


async def test_processes_starting_together_migrate_a_fresh_database_one_after_another(
    pg_url: str,
) -> None:
    """Three engines (as three hub processes of a cluster) upgrade the same fresh PostgreSQL
    database at the same moment: without the advisory lock they race to create the same
    tables and block or fail each other; with it the first migrates and the others find it
    done."""
    engines = [create_async_engine(pg_url) for _ in range(3)]
    try:
        async with asyncio.timeout(60):  # without the lock they can wait on each other forever
            results = await asyncio.gather(
                *(upgrade(engine) for engine in engines), return_exceptions=True
            )
        assert [r for r in results if isinstance(r, BaseException)] == []
        heads = {await current_revision(engine) for engine in engines}
        assert len(heads) == 1 and None not in heads, heads
    finally:
        for engine in engines:
            await engine.dispose()
