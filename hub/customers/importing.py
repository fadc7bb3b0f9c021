"""CSV import of customers, orders and invoices (parsed by ``hub.customers.csvimport``):
upserts in one writer transaction, bad rows reported, not stored."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.customers.csvimport import CustomerRecord, InvoiceRecord, OrderRecord, ParsedFile
from hub.customers.identity import InvalidAddress, normalize_email, normalize_phone
from hub.customers.merge import merge
from hub.customers.storage import Storage
from hub.ids import new_id
from hub.store.identities import identity_owner
from hub.store.schema import customers, identities, invoices, orders


@dataclass
class ImportReport:
    kind: str
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    merged: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    notes: list[tuple[int, str]] = field(default_factory=list)  # imported rows worth a look
    touched: set[str] = field(default_factory=set)  # customers whose values may have changed


class Importer:
    def __init__(self, store: Storage, *, default_region: str) -> None:
        self.store = store
        self.default_region = default_region

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
        rejected = {line for line, _ in report.errors}
        report.notes = sorted(note for note in parsed.notes if note[0] not in rejected)
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
                report.touched.add(customer_id)
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
                    report.touched.add(customer_id)
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
        if record.fax:
            addresses.append(("fax", normalize_phone(record.fax, self.default_region)))
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
            owner = await identity_owner(connection, kind, address)
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
                report.touched.add(customer_id)
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
                report.touched.add(customer_id)
            elif {key: getattr(row, key) for key in values} != values:
                await connection.execute(update(table).where(table.c.id == row.id).values(**values))
                report.updated += 1
                report.touched.update({customer_id, row.customer_id})
            else:
                report.unchanged += 1
