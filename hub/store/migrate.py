"""Apply the Alembic migrations shipped inside the package to a live async engine."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).with_name("migrations")
# Any fixed 64-bit key: hub processes starting together on a fresh PostgreSQL database wait for
# each other here instead of racing to create the same tables.
MIGRATION_LOCK = 0x6368_6875_625F_6D67  # "chhub_mg"


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the schema to ``revision``; a no-op when it is there already.

    On PostgreSQL the migration runs under a transaction-scoped advisory lock, so several
    processes started at once (a cluster, compose) migrate one after the other: the first
    applies the migrations, the others find the schema at ``revision`` and do nothing."""
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK}
            )
        await connection.run_sync(lambda sync: command.upgrade(_config(sync), revision))


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at, or None before the first migration."""
    from alembic.runtime.migration import MigrationContext

    async with engine.connect() as connection:
        return await connection.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )
