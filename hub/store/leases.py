"""Leases in the database: one holder at a time per name, with a fencing token.

The decision is ``hub.lease``'s; this reads the row locked, applies the decision and
commits, so two processes claiming at once are serialized by the row lock and only one can
take a lease. Claims run in a transaction of their own, not in the group-committing writer: a
renewal must not wait behind a long queue of writes, and it locks only the lease row.

:func:`fencing_token` is what a fenced write compares its token with, inside its own
transaction (locked for share on PostgreSQL: a takeover waits for that commit, and every
write after the takeover sees the new token).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.lease import Decision, LeaseRow, Verdict, decide, released
from hub.store.database import Database, insert_ignoring_conflicts
from hub.store.failures import translate
from hub.store.schema import leases

DISPATCH = "dispatch"


async def _locked(connection: AsyncConnection, name: str) -> LeaseRow:
    await connection.execute(
        insert_ignoring_conflicts(connection, leases),
        {"name": name, "holder": None, "token": 0, "expires_at": 0.0},
    )
    row = (
        await connection.execute(
            select(leases.c.holder, leases.c.token, leases.c.expires_at)
            .where(leases.c.name == name)
            .with_for_update()
        )
    ).one()
    return LeaseRow(row.holder, int(row.token), float(row.expires_at))


async def fencing_token(connection: AsyncConnection, name: str = DISPATCH) -> int | None:
    """The lease's current token (None: never held), read locked against a takeover."""
    token = await connection.scalar(
        select(leases.c.token).where(leases.c.name == name).with_for_update(read=True)
    )
    return None if token is None else int(token)


class Leases:
    """Claims and gives up leases; see the module docstring."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def claim(self, name: str, holder: str, ttl: float) -> Decision:
        """Take, renew or find the lease ``name`` held by another (what the decision was)."""

        async with self._transaction() as connection:
            found = await _locked(connection, name)
            decision = decide(found, holder, self._db.clock(), ttl)
            if decision.verdict is not Verdict.WAIT:
                await _write(connection, name, decision.row)
            return decision

    async def release(self, name: str, holder: str) -> bool:
        """End ``holder``'s lease now so a standby takes over at once; whether it held it."""

        async with self._transaction() as connection:
            row = released(await _locked(connection, name), holder, self._db.clock())
            if row is not None:
                await _write(connection, name, row)
            return row is not None

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        """A transaction of its own; driver errors leave as the store's typed errors."""
        try:
            async with self._db.engine.begin() as connection:
                yield connection
        except Exception as exc:
            error = translate(exc)
            if error is None:
                raise
            raise error from exc


async def _write(connection: AsyncConnection, name: str, row: LeaseRow) -> None:
    await connection.execute(
        update(leases)
        .where(leases.c.name == name)
        .values(holder=row.holder, token=row.token, expires_at=row.expires_at)
    )
