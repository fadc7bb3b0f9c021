"""Customers in the store: CSV import, value recomputation, the context rules and agents see."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.customers import valuation
from hub.customers.context import customer_context
from hub.customers.csvimport import CustomerRecord, InvoiceRecord, OrderRecord, ParsedFile
from hub.customers.identity import InvalidAddress, normalize_email, normalize_phone
from hub.customers.merge import merge, unmerge
from hub.ids import new_id
from hub.store.schema import (
    customer_stats,
    customers,
    identities,
    invoices,
    orders,
)
from hub.store.store import Store

DAY = 86_400.0
DEFAULT_THRESHOLDS = valuation.Thresholds()


@dataclass
class ImportReport:
    kind: str
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    merged: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)


class Customers:
    def __init__(
        self,
        store: Store,
        *,
        default_region: str = "DE",
        thresholds: valuation.Thresholds = DEFAULT_THRESHOLDS,
    ) -> None:
        self.store = store
        self.default_region = default_region
        self.thresholds = thresholds

    # -- import ------------------------------------------------------------------------------

    async def import_file(self, parsed: ParsedFile) -> ImportReport:
        """Upsert the parsed records in one transaction; bad rows are reported, not stored."""
        report = ImportReport(parsed.kind, errors=list(parsed.errors))

        async def run(connection: AsyncConnection) -> None:
            if parsed.kind == "customers":
                await self._import_customers(connection, parsed.records, report)
            else:
                await self._import_ledger(connection, parsed, report)

        await self.store.writer.call(run)
        report.errors.sort()
        return report

    async def _import_customers(
        self, connection: AsyncConnection, records: Sequence[Any], report: ImportReport
    ) -> None:
        now = self.store.clock()
        existing = {
            row.external_id: row
            for row in await connection.execute(
                select(customers).where(
                    customers.c.external_id.in_([r.external_id for r in records])
                )
            )
        }
        for record in records:
            assert isinstance(record, CustomerRecord)
            try:
                addresses = self._addresses(record)
            except InvalidAddress as exc:
                report.errors.append((record.line, str(exc)))
                continue
            values = {
                "name": record.name,
                "company": record.company or None,
                "tier_override": record.tier,
                "tags": list(record.tags),
            }
            row = existing.get(record.external_id)
            if row is None:
                customer_id = new_id(now)
                await connection.execute(
                    customers.insert(),
                    {
                        "id": customer_id,
                        "kind": "customer",
                        "external_id": record.external_id,
                        "created_at": now,
                        "updated_at": now,
                        "attributes": {},
                        **values,
                    },
                )
                report.created += 1
            else:
                customer_id = row.id
                current = {key: getattr(row, key) for key in values}
                current["tags"] = list(current["tags"] or [])
                if current != values or row.kind != "customer":
                    await connection.execute(
                        update(customers)
                        .where(customers.c.id == customer_id)
                        .values(kind="customer", updated_at=now, **values)
                    )
                    report.updated += 1
                else:
                    report.unchanged += 1
            problem = await self._attach(connection, customer_id, addresses, now, report)
            if problem:
                report.errors.append((record.line, problem))

    def _addresses(self, record: CustomerRecord) -> list[tuple[str, str]]:
        addresses = []
        if record.email:
            addresses.append(("email", normalize_email(record.email)))
        if record.phone:
            addresses.append(("phone", normalize_phone(record.phone, self.default_region)))
        return addresses

    async def _attach(
        self,
        connection: AsyncConnection,
        customer_id: str,
        addresses: list[tuple[str, str]],
        now: float,
        report: ImportReport,
    ) -> str | None:
        """Give the customer its identities; a prospect already using one is merged in (an
        exact identity match); one used by another customer is a conflict to report."""
        for kind, address in addresses:
            owner = (
                await connection.execute(
                    select(identities.c.customer_id, customers.c.kind)
                    .join(customers, customers.c.id == identities.c.customer_id)
                    .where(and_(identities.c.kind == kind, identities.c.address == address))
                )
            ).first()
            if owner is None:
                await connection.execute(
                    identities.insert(),
                    {
                        "id": new_id(now),
                        "customer_id": customer_id,
                        "kind": kind,
                        "address": address,
                        "created_at": now,
                    },
                )
            elif owner.customer_id == customer_id:
                continue
            elif owner.kind == "prospect":
                await merge(
                    connection,
                    owner.customer_id,
                    customer_id,
                    now=now,
                    reason=f"exact {kind} match on import",
                )
                report.merged += 1
            else:
                return f"{kind} {address} already belongs to another customer"
        return None

    async def _import_ledger(
        self, connection: AsyncConnection, parsed: ParsedFile, report: ImportReport
    ) -> None:
        table = orders if parsed.kind == "orders" else invoices
        records = parsed.records
        owners = dict(
            (
                await connection.execute(
                    select(customers.c.external_id, customers.c.id).where(
                        customers.c.external_id.in_({r.customer for r in records})  # type: ignore[union-attr]
                    )
                )
            ).all()
        )
        existing = {
            row.external_id: row
            for row in await connection.execute(
                select(table).where(table.c.external_id.in_([r.external_id for r in records]))
            )
        }
        now = self.store.clock()
        for record in records:
            assert isinstance(record, OrderRecord | InvoiceRecord)
            customer_id = owners.get(record.customer)
            if customer_id is None:
                report.errors.append(
                    (
                        record.line,
                        f"unknown customer_id {record.customer!r}; import customers first",
                    )
                )
                continue
            if isinstance(record, OrderRecord):
                values: dict[str, Any] = {
                    "customer_id": customer_id,
                    "ordered_at": record.ordered_at,
                    "amount_cents": record.amount_cents,
                    "product": record.product or None,
                }
            else:
                values = {
                    "customer_id": customer_id,
                    "issued_at": record.issued_at,
                    "due_at": record.due_at,
                    "paid_at": record.paid_at,
                    "amount_cents": record.amount_cents,
                }
            row = existing.get(record.external_id)
            if row is None:
                await connection.execute(
                    table.insert(),
                    {"id": new_id(now), "external_id": record.external_id, **values},
                )
                report.created += 1
            elif {key: getattr(row, key) for key in values} != values:
                await connection.execute(update(table).where(table.c.id == row.id).values(**values))
                report.updated += 1
            else:
                report.unchanged += 1

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
        await self.recompute()
        return merge_id

    async def unmerge(self, merge_id: int, *, actor: str | None = None) -> dict[str, Any]:
        async def run(connection: AsyncConnection) -> dict[str, Any]:
            return await unmerge(connection, merge_id, now=self.store.clock(), actor=actor)

        result: dict[str, Any] = await self.store.writer.call(run)
        await self.recompute()
        return result

    # -- value -------------------------------------------------------------------------------

    async def recompute(self) -> int:
        """Recompute every customer's stats (ABC, RFM, punctuality); returns how many."""
        now = self.store.clock()
        async with self.store.engine.connect() as connection:
            ids = (
                (
                    await connection.execute(
                        select(customers.c.id).where(customers.c.kind == "customer")
                    )
                )
                .scalars()
                .all()
            )
            order_rows = (
                await connection.execute(
                    select(
                        orders.c.customer_id,
                        orders.c.ordered_at,
                        orders.c.amount_cents,
                        orders.c.product,
                    )
                )
            ).all()
            invoice_rows = (
                await connection.execute(
                    select(
                        invoices.c.customer_id,
                        invoices.c.due_at,
                        invoices.c.amount_cents,
                        invoices.c.paid_at,
                    )
                )
            ).all()
        # pure Python over every order: off the event loop
        stats = await asyncio.to_thread(
            valuation.compute,
            ids,
            (
                valuation.Order(r.customer_id, r.ordered_at, r.amount_cents, r.product or "")
                for r in order_rows
            ),
            (
                valuation.Invoice(r.customer_id, r.due_at, r.amount_cents, r.paid_at)
                for r in invoice_rows
            ),
            now,
            self.thresholds,
        )
        rows = [
            {
                "customer_id": s.customer_id,
                "lifetime_value_cents": s.lifetime_value_cents,
                "revenue_window_cents": s.revenue_window_cents,
                "orders_12m": s.orders_12m,
                "last_order_at": s.last_order_at,
                "last_purchase": s.last_purchase or None,
                "payment_punctuality": s.payment_punctuality,
                "overdue_invoices": s.overdue_invoices,
                "abc": s.abc,
                "rfm_r": s.r,
                "rfm_f": s.f,
                "rfm_m": s.m,
                "computed_at": now,
            }
            for s in stats.values()
        ]

        async def replace(connection: AsyncConnection) -> None:
            await connection.execute(delete(customer_stats))
            if rows:
                await connection.execute(customer_stats.insert(), rows)

        await self.store.writer.call(replace)
        return len(rows)

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
        async with self.store.engine.connect() as connection:
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

    async def context(self, customer_id: str, *, history: int = 20) -> dict[str, Any]:
        """Everything an agent (and ``customers show``) sees of a customer."""
        async with self.store.engine.connect() as connection:
            return await customer_context(
                connection, customer_id, self.store.clock(), history=history
            )
