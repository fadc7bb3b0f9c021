"""Whether the store can serve now: a trivial read, and a test write while writes fail."""

from __future__ import annotations

import secrets

from sqlalchemy import and_, text
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.errors import StoreError
from hub.ids import new_id
from hub.store.database import Database
from hub.store.schema import connector_state

PROBE_BYTES = 64 * 1024  # room a readiness test write needs while writes have been failing
_HUB_STATE = "_hub"  # connector_state rows of the hub itself (no instance may be named so)


class Readiness:
    """What ``/readyz`` asks of the store."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def ping(self) -> None:
        """Raise :class:`StoreUnavailable` if the database cannot answer a trivial query."""
        async with self._db.read() as connection:
            await connection.execute(text("SELECT 1"))

    async def write_problem(self) -> str | None:
        """Why the store cannot write now, or None. While the writer's last commit failed for
        want of the database (disk full, read-only, gone), a test write of
        :data:`PROBE_BYTES` of fresh space is made first, so readiness comes back once there
        is room for real work again, not merely for a tiny row."""
        writer = self._db.writer
        if not writer.running:
            return "the store writer is not running"
        if writer.failing is None:
            return None
        try:
            await writer.call(self._probe)
        except StoreError as exc:
            return str(exc)
        return None

    async def _probe(self, connection: AsyncConnection) -> None:
        # the new row is written before the old one is freed: it needs new space
        key = f"write_probe:{new_id(self._db.clock())}"
        await connection.execute(
            connector_state.insert(),
            {
                "instance": _HUB_STATE,
                "key": key,
                "value": secrets.token_hex(PROBE_BYTES // 2),  # incompressible
                "updated_at": self._db.clock(),
            },
        )
        await connection.execute(
            connector_state.delete().where(
                and_(
                    connector_state.c.instance == _HUB_STATE,
                    connector_state.c.key.like("write_probe:%"),
                    connector_state.c.key != key,
                )
            )
        )
