"""Customers in the store: one object over the CSV import (``importing``), value
recomputation (``recompute``), merges, look-ups and the context agents see."""

from __future__ import annotations

import contextlib
from collections.abc import Collection
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.customers import valuation
from hub.customers.context import customer_context
from hub.customers.csvimport import ParsedFile
from hub.customers.identity import InvalidAddress, normalize_email, normalize_phone
from hub.customers.importing import Importer, ImportReport
from hub.customers.merge import merge, unmerge
from hub.customers.recompute import Valuer
from hub.customers.storage import Storage
from hub.store.schema import CLOSED, conversations, customers, identities

DEFAULT_THRESHOLDS = valuation.Thresholds()


class Customers:
    def __init__(
        self,
        store: Storage,
        *,
        default_region: str = "DE",
        thresholds: valuation.Thresholds = DEFAULT_THRESHOLDS,
    ) -> None:
        self.store = store
        self.default_region = default_region
        self.thresholds = thresholds
        self._importer = Importer(store, default_region=default_region)
        self._valuer = Valuer(store, thresholds=thresholds)

    async def import_file(self, parsed: ParsedFile) -> ImportReport:
        """Upsert the parsed records in one transaction; bad rows are reported, not stored."""
        return await self._importer.import_file(parsed)

    async def recompute(self, customer_ids: Collection[str] | None = None) -> int:
        """Recompute customer values; returns how many customers' figures were rebuilt
        (:meth:`hub.customers.recompute.Valuer.recompute`)."""
        return await self._valuer.recompute(customer_ids)

    # -- merging -----------------------------------------------------------------------------

    async def merge(self, source: str, target: str, *, actor: str | None = None) -> int:
        """Merge two customers (ids); returns the merge id to undo it with."""

        async def run(connection: AsyncConnection) -> int:
            return await merge(
                connection,
                source,
                target,
                now=self.store.clock(),
                reason="by hand",
                actor=actor,
            )

        merge_id: int = await self.store.writer.call(run)
        await self.recompute({source, target})
        return merge_id

    async def unmerge(self, merge_id: int, *, actor: str | None = None) -> dict[str, Any]:
        async def run(connection: AsyncConnection) -> dict[str, Any]:
            return await unmerge(connection, merge_id, now=self.store.clock(), actor=actor)

        result: dict[str, Any] = await self.store.writer.call(run)
        await self.recompute({result["restored"], result["from"]})
        return result

    # -- reading -----------------------------------------------------------------------------

    async def find(self, key: str) -> str | None:
        """A customer id from an id, a customer number, an email address or a phone number."""
        candidates: list[tuple[str, str]] = []
        with contextlib.suppress(InvalidAddress):
            candidates.append(("email", normalize_email(key)))
        try:
            phone = normalize_phone(key, self.default_region)
            candidates += [("phone", phone), ("whatsapp", phone), ("fax", phone)]
        except InvalidAddress:
            pass
        async with self.store.read() as connection:
            row = (
                await connection.execute(
                    select(customers.c.id).where(
                        or_(customers.c.id == key, customers.c.external_id == key)
                    )
                )
            ).first()
            if row is not None:
                return str(row.id)
            for kind, address in candidates:
                found = (
                    await connection.execute(
                        select(identities.c.customer_id).where(
                            and_(identities.c.kind == kind, identities.c.address == address)
                        )
                    )
                ).first()
                if found is not None:
                    return str(found.customer_id)
        return None

    async def open_conversations(self, customer_id: str) -> list[str]:
        """Ids of the customer's conversations that are not closed (who may read the customer
        depends on who works on these)."""
        async with self.store.read() as connection:
            rows = await connection.execute(
                select(conversations.c.id).where(
                    and_(
                        conversations.c.customer_id == customer_id,
                        conversations.c.status != CLOSED,
                    )
                )
            )
            return [str(row.id) for row in rows]

    async def context(self, customer_id: str, *, history: int = 20) -> dict[str, Any]:
        """Everything an agent (and ``customers show``) sees of a customer."""
        async with self.store.read() as connection:
            return await customer_context(
                connection, customer_id, self.store.clock(), history=history
            )
