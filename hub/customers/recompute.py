"""Customer values (``hub.customers.valuation``) recomputed from the stored orders and
invoices and written back in slices of the writer's jobs."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from functools import partial
from typing import Any

from sqlalchemy import and_, bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.customers import valuation
from hub.customers.storage import Storage
from hub.store.schema import customer_stats, customers, invoices, orders

DAY = 86_400.0
STATS_SLICE = 200  # customer figures written per writer job (a few milliseconds)


class Valuer:
    def __init__(self, store: Storage, *, thresholds: valuation.Thresholds) -> None:
        self.store = store
        self.thresholds = thresholds

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
