"""Customers in the store: CSV import, value recomputation, the context rules and agents see."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol, TypeVar

from sqlalchemy import and_, bindparam, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hub.customers import valuation
from hub.customers.context import customer_context
from hub.customers.csvimport import CustomerRecord, InvoiceRecord, OrderRecord, ParsedFile
from hub.customers.identity import InvalidAddress, normalize_email, normalize_phone
from hub.customers.merge import merge, unmerge
from hub.ids import new_id
from hub.store.identities import identity_owner
from hub.store.schema import (
    CLOSED,
    conversations,
    customer_stats,
    customers,
    identities,
    invoices,
    orders,
)

DAY = 86_400.0
STATS_SLICE = 200  # customer figures written per writer job (a few milliseconds)
DEFAULT_THRESHOLDS = valuation.Thresholds()


T = TypeVar("T")


class Writes(Protocol):
    async def call(self, fn: Callable[[AsyncConnection], Awaitable[T]]) -> T: ...


class Storage(Protocol):
    """What customers need of the hub's store (``hub.store.store.Store``): pooled reads, the
    group-committing writer and the clock. A protocol, so that customers depend on the
    store's tables only, not on the facade that shows customers to the console."""

    @property
    def engine(self) -> AsyncEngine: ...

    @property
    def writer(self) -> Writes: ...

    @property
    def clock(self) -> Callable[[], float]: ...

    def read(self) -> AbstractAsyncContextManager[AsyncConnection]: ...


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

    # -- value -------------------------------------------------------------------------------

    async def recompute(self, customer_ids: Collection[str] | None = None) -> int:
        """Recompute customer values; returns how many customers' figures were rebuilt.

        With ``customer_ids`` (the customers an import touched) only their orders and invoices
        are read; tiers and scores, which rank everyone against everyone, are re-ranked from
        the stored figures of the others, and only changed rows are written.
        """
        now = self.store.clock()
        async with self.store.read() as connection:
            ids = await self._ids(connection, customer_ids)
            order_rows, invoice_rows = await self._ledger(connection, customer_ids, ids)
            others = [] if customer_ids is None else await self._stored_stats(connection, ids)
        # pure Python over every order: off the event loop
        fresh = await asyncio.to_thread(
            valuation.aggregate,
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
        before = {entry.customer_id: (entry.abc, entry.r, entry.f, entry.m) for entry in others}
        await asyncio.to_thread(
            valuation.classify, [*fresh.values(), *others], now, self.thresholds
        )
        reranked = [e for e in others if (e.abc, e.r, e.f, e.m) != before[e.customer_id]]

        # In slices of a few hundred rows, each its own writer job: every chat message and
        # agent action waits for the same writer, so no write may hold it for long. Readers
        # may see some customers' new figures next to others' old ones for a moment.
        rows = await asyncio.to_thread(_stats_rows, list(fresh.values()), now)  # 100k dicts
        for start in range(0, len(rows), STATS_SLICE):
            await self.store.writer.call(partial(_replace_stats, rows[start : start + STATS_SLICE]))
        if customer_ids is None:  # figures of customers that are no longer valued go
            stale = await self._stale_stats(set(fresh), now)
            for start in range(0, len(stale), STATS_SLICE):
                await self.store.writer.call(
                    partial(_delete_stats, stale[start : start + STATS_SLICE], now)
                )
        ranks = [
            {"cid": e.customer_id, "abc": e.abc, "r": e.r, "f": e.f, "m": e.m, "now": now}
            for e in reranked
        ]
        for start in range(0, len(ranks), STATS_SLICE):
            await self.store.writer.call(partial(_rerank, ranks[start : start + STATS_SLICE]))
        return len(fresh)

    async def _stale_stats(self, valued: set[str], now: float) -> list[str]:
        """Customers with stored figures older than ``now`` who were not valued now."""
        async with self.store.engine.connect() as connection:
            rows = await connection.execute(
                select(customer_stats.c.customer_id).where(customer_stats.c.computed_at < now)
            )
            return [row.customer_id for row in rows if row.customer_id not in valued]

    async def _ids(
        self, connection: AsyncConnection, customer_ids: Collection[str] | None
    ) -> list[str]:
        query = select(customers.c.id).where(customers.c.kind == "customer")
        if customer_ids is not None:
            query = query.where(customers.c.id.in_(list(customer_ids)))
        return list((await connection.execute(query)).scalars().all())

    async def _ledger(
        self, connection: AsyncConnection, customer_ids: Collection[str] | None, ids: list[str]
    ) -> tuple[Sequence[Any], Sequence[Any]]:
        order_query = select(
            orders.c.customer_id, orders.c.ordered_at, orders.c.amount_cents, orders.c.product
        )
        invoice_query = select(
            invoices.c.customer_id, invoices.c.due_at, invoices.c.amount_cents, invoices.c.paid_at
        )
        if customer_ids is not None:
            order_query = order_query.where(orders.c.customer_id.in_(ids))
            invoice_query = invoice_query.where(invoices.c.customer_id.in_(ids))
        return (
            (await connection.execute(order_query)).all(),
            (await connection.execute(invoice_query)).all(),
        )

    async def _stored_stats(
        self, connection: AsyncConnection, fresh_ids: list[str]
    ) -> list[valuation.Stats]:
        """Everyone else's stored figures, enough to rank them (no orders are read)."""
        rows = await connection.execute(
            select(
                customer_stats.c.customer_id,
                customer_stats.c.revenue_window_cents,
                customer_stats.c.orders_window,
                customer_stats.c.last_order_at,
                customer_stats.c.abc,
                customer_stats.c.rfm_r,
                customer_stats.c.rfm_f,
                customer_stats.c.rfm_m,
            ).where(customer_stats.c.customer_id.not_in(fresh_ids))
        )
        return [
            valuation.Stats(
                row.customer_id,
                revenue_window_cents=row.revenue_window_cents,
                orders_window=row.orders_window,
                last_order_at=row.last_order_at,
                abc=row.abc,
                r=row.rfm_r,
                f=row.rfm_f,
                m=row.rfm_m,
            )
            for row in rows
        ]

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


async def _replace_stats(rows: list[dict[str, Any]], connection: AsyncConnection) -> None:
    await connection.execute(
        delete(customer_stats).where(
            customer_stats.c.customer_id.in_([row["customer_id"] for row in rows])
        )
    )
    await connection.execute(customer_stats.insert(), rows)


async def _delete_stats(
    customer_ids: list[str], before: float, connection: AsyncConnection
) -> None:
    await connection.execute(
        delete(customer_stats).where(
            and_(
                customer_stats.c.customer_id.in_(customer_ids),
                customer_stats.c.computed_at < before,  # not what a later run just wrote
            )
        )
    )


async def _rerank(ranks: list[dict[str, Any]], connection: AsyncConnection) -> None:
    await connection.execute(
        update(customer_stats)
        .where(customer_stats.c.customer_id == bindparam("cid"))
        .values(
            abc=bindparam("abc"),
            rfm_r=bindparam("r"),
            rfm_f=bindparam("f"),
            rfm_m=bindparam("m"),
            computed_at=bindparam("now"),
        ),
        ranks,
    )


def _stats_rows(stats: list[valuation.Stats], now: float) -> list[dict[str, Any]]:
    return [_stats_row(entry, now) for entry in stats]


def _stats_row(stats: valuation.Stats, now: float) -> dict[str, Any]:
    return {
        "customer_id": stats.customer_id,
        "lifetime_value_cents": stats.lifetime_value_cents,
        "revenue_window_cents": stats.revenue_window_cents,
        "orders_12m": stats.orders_12m,
        "orders_window": stats.orders_window,
        "last_order_at": stats.last_order_at,
        "last_purchase": stats.last_purchase or None,
        "payment_punctuality": stats.payment_punctuality,
        "overdue_invoices": stats.overdue_invoices,
        "abc": stats.abc,
        "rfm_r": stats.r,
        "rfm_f": stats.f,
        "rfm_m": stats.m,
        "computed_at": now,
    }
