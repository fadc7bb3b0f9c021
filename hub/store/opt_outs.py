"""Addresses that asked one inbox to send nothing more (SMS STOP), and asked again (START)."""

from __future__ import annotations

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.envelope import Identity
from hub.store.audit import record_event
from hub.store.database import Database
from hub.store.schema import opt_outs


class OptOuts:
    """The opt_outs table, by inbox and address."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def set(self, inbox: str, identity: Identity, opted_out: bool, keyword: str) -> None:
        """Record that ``identity`` wants nothing more from ``inbox`` (or wants it again)."""
        keyword = keyword[:32]

        async def run(connection: AsyncConnection) -> None:
            now = self._db.clock()
            key = and_(
                opt_outs.c.inbox == inbox,
                opt_outs.c.kind == identity.kind,
                opt_outs.c.address == identity.address,
            )
            await connection.execute(opt_outs.delete().where(key))
            if opted_out:
                await connection.execute(
                    opt_outs.insert(),
                    {
                        "inbox": inbox,
                        "kind": identity.kind,
                        "address": identity.address,
                        "keyword": keyword,
                        "at": now,
                    },
                )
            await record_event(
                connection,
                now,
                "consent.opt_out" if opted_out else "consent.opt_in",
                data={
                    "inbox": inbox,
                    "kind": identity.kind,
                    "address": identity.address,
                    "keyword": keyword,
                },
            )

        await self._db.writer.call(run)

    async def keyword(self, inbox: str, identity: Identity) -> str | None:
        """The keyword ``identity`` opted out of ``inbox`` with, or None."""
        async with self._db.read() as connection:
            row = (
                await connection.execute(
                    select(opt_outs.c.keyword).where(
                        and_(
                            opt_outs.c.inbox == inbox,
                            opt_outs.c.kind == identity.kind,
                            opt_outs.c.address == identity.address,
                        )
                    )
                )
            ).first()
        return row.keyword if row else None
