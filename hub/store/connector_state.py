"""What connector instances must remember across restarts (an IMAP mailbox position), as
small string values under keys of their own."""

from __future__ import annotations

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.store.database import Database
from hub.store.schema import connector_state


class ConnectorStates:
    """The connector_state table, by instance and key."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def get(self, instance: str, key: str) -> str | None:
        """A value connector ``instance`` saved under ``key``, or None."""
        async with self._db.read() as connection:
            row = (
                await connection.execute(
                    select(connector_state.c.value).where(
                        and_(connector_state.c.instance == instance, connector_state.c.key == key)
                    )
                )
            ).first()
        return None if row is None else str(row.value)

    async def save(self, instance: str, key: str, value: str) -> None:
        """Durably replace the value of ``key`` for connector ``instance``."""

        async def run(connection: AsyncConnection) -> None:
            where = and_(connector_state.c.instance == instance, connector_state.c.key == key)
            await connection.execute(connector_state.delete().where(where))
            await connection.execute(
                connector_state.insert(),
                {"instance": instance, "key": key, "value": value, "updated_at": self._db.clock()},
            )

        await self._db.writer.call(run)

    async def delete(self, instance: str, key: str) -> None:
        """Forget ``key`` of connector ``instance``."""

        async def run(connection: AsyncConnection) -> None:
            await connection.execute(
                connector_state.delete().where(
                    and_(connector_state.c.instance == instance, connector_state.c.key == key)
                )
            )

        await self._db.writer.call(run)

    async def keys(self, instance: str, prefix: str) -> list[str]:
        """The keys connector ``instance`` saved that start with ``prefix``, sorted."""
        async with self._db.engine.connect() as connection:
            rows = await connection.execute(
                select(connector_state.c.key)
                .where(
                    and_(
                        connector_state.c.instance == instance,
                        connector_state.c.key.startswith(prefix, autoescape=True),
                    )
                )
                .order_by(connector_state.c.key)
            )
            return [str(row.key) for row in rows]
