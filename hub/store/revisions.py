"""Every rules file the hub accepted, kept once per content, so a conversation's
``rules_digest`` always names the text that routed it."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.store.audit import record_event
from hub.store.database import Database
from hub.store.records import RulesRevision
from hub.store.schema import rule_revisions


class RulesRevisions:
    """The rule_revisions table."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def record(self, digest: str, path: str, text: str) -> bool:
        """Keep an accepted rules file (once per content); True if it was new."""

        async def run(connection: AsyncConnection) -> bool:
            known = (
                await connection.execute(
                    select(rule_revisions.c.digest).where(rule_revisions.c.digest == digest)
                )
            ).first()
            if known is not None:
                return False
            now = self._db.clock()
            await connection.execute(
                rule_revisions.insert(),
                {"digest": digest, "path": path, "loaded_at": now, "text": text},
            )
            await record_event(
                connection, now, "rules.loaded", data={"digest": digest, "path": path}
            )
            return True

        result: bool = await self._db.writer.call(run)
        return result

    async def get(self, digest: str) -> RulesRevision | None:
        """The rules file whose SHA-256 is ``digest``, if it was ever accepted."""
        async with self._db.read() as connection:
            row = (
                await connection.execute(
                    select(
                        rule_revisions.c.digest,
                        rule_revisions.c.path,
                        rule_revisions.c.loaded_at,
                        rule_revisions.c.text,
                    ).where(rule_revisions.c.digest == digest)
                )
            ).first()
        if row is None:
            return None
        return RulesRevision(
            digest=row.digest, path=row.path, loaded_at=row.loaded_at, text=row.text
        )
