"""Agent sessions as stored: only a token's hash, with the fingerprint of the credential it
was made with (what a session means is decided in ``hub.sessions``)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.store.audit import record_event
from hub.store.database import Database
from hub.store.records import StoredSession
from hub.store.schema import sessions


def token_hash(token: str) -> str:
    """What the store keeps of a session token (never the token itself)."""
    return hashlib.sha256(token.encode()).hexdigest()


class AgentSessions:
    """The sessions table: create, look up, end and purge."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def create(self, agent: str, ttl: float, credential: str) -> str:
        """A new opaque session token for ``agent``; only its hash is stored, with the
        fingerprint of the credential it was made with (``hub.sessions``)."""
        token = secrets.token_urlsafe(32)

        async def run(connection: AsyncConnection) -> None:
            now = self._db.clock()
            await connection.execute(
                sessions.insert(),
                {
                    "token_hash": token_hash(token),
                    "agent": agent,
                    "created_at": now,
                    "expires_at": now + ttl,
                    "credential": credential,
                },
            )
            await record_event(connection, now, "agent.login", agent=agent)

        await self._db.writer.call(run)
        return token

    async def find(self, token_hashes: Collection[str]) -> dict[str, StoredSession]:
        """The stored sessions among ``token_hashes`` (expired ones included), by hash."""
        if not token_hashes:
            return {}
        async with self._db.read() as connection:
            rows = (
                await connection.execute(
                    select(sessions).where(sessions.c.token_hash.in_(list(token_hashes)))
                )
            ).all()
        return {
            row.token_hash: StoredSession(
                token_hash=row.token_hash,
                agent=row.agent,
                credential=row.credential,
                expires_at=row.expires_at,
            )
            for row in rows
        }

    async def delete(
        self, *, token_hash: str | None = None, agent: str | None = None, reason: str
    ) -> list[str]:
        """Remove one session (by token hash) or all of an agent's; returns the removed hashes
        and records ``agent.logout`` for each."""
        if (token_hash is None) == (agent is None):
            raise ValueError("give either token_hash or agent")
        which = (
            sessions.c.token_hash == token_hash
            if token_hash is not None
            else sessions.c.agent == agent
        )

        async def run(connection: AsyncConnection) -> list[str]:
            rows = (
                await connection.execute(
                    select(sessions.c.token_hash, sessions.c.agent).where(which)
                )
            ).all()
            if rows:
                await connection.execute(sessions.delete().where(which))
            now = self._db.clock()
            for row in rows:
                await record_event(
                    connection, now, "agent.logout", agent=row.agent, data={"reason": reason}
                )
            return [row.token_hash for row in rows]

        removed: list[str] = await self._db.writer.call(run)
        return removed

    async def purge(self, before: float) -> int:
        """Forget sessions that expired before ``before``; returns how many."""

        async def run(connection: AsyncConnection) -> int:
            result = await connection.execute(
                sessions.delete().where(sessions.c.expires_at < before)
            )
            return int(result.rowcount or 0)

        count: int = await self._db.writer.call(run)
        return count
