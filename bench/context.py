"""Customer context lookups: what ingest does per message, against a bare indexed SELECT.

Builds a SQLite store with N customers (default 100,000), each with an email identity and
computed stats, then measures in the same run and on the same engine:

- bare: ``SELECT customer_id FROM identities WHERE kind = ? AND address = ?`` (the indexed
  lookup any design needs);
- context: the hub's lookup (identity -> customer with stats and open conversations, in one
  statement, as the ingest transaction runs it);

each cold (every customer looked up once, in random order, on a fresh engine) and cached (the
same 1,000 customers again and again). Usage: python bench/context.py [--customers 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import and_, select, text

from hub.customers.context import customer_contexts
from hub.customers.linking import customer_of, owner_rows
from hub.store.schema import customer_stats, customers, identities
from hub.store.store import Store

NOW = 1_795_000_000.0


async def populate(url: str, count: int) -> None:
    store = Store(url, customer_contexts=customer_contexts, sqlite_synchronous="normal")
    await store.start()
    rng = random.Random(1)
    async with store.engine.begin() as connection:
        for start in range(0, count, 5000):
            block = range(start, min(count, start + 5000))
            await connection.execute(
                customers.insert(),
                [
                    {
                        "id": f"c{i:08d}",
                        "kind": "customer",
                        "name": f"Customer {i}",
                        "created_at": NOW,
                        "external_id": f"K{i}",
                        "tags": [],
                        "attributes": {},
                    }
                    for i in block
                ],
            )
            await connection.execute(
                identities.insert(),
                [
                    {
                        "id": f"i{i:08d}",
                        "customer_id": f"c{i:08d}",
                        "kind": "email",
                        "address": f"customer{i}@example.com",
                        "created_at": NOW,
                    }
                    for i in block
                ],
            )
            await connection.execute(
                customer_stats.insert(),
                [
                    {
                        "customer_id": f"c{i:08d}",
                        "lifetime_value_cents": rng.randint(0, 10**7),
                        "revenue_window_cents": 0,
                        "orders_12m": rng.randint(0, 20),
                        "orders_window": rng.randint(0, 20),
                        "last_order_at": NOW - rng.randint(0, 400) * 86400.0,
                        "last_purchase": "x",
                        "payment_punctuality": rng.random(),
                        "overdue_invoices": rng.randint(0, 2),
                        "abc": rng.choice("ABC"),
                        "rfm_r": 3,
                        "rfm_f": 3,
                        "rfm_m": 3,
                        "computed_at": NOW,
                    }
                    for i in block
                ],
            )
        await connection.execute(text("ANALYZE"))
    await store.close()


async def measure(url: str, keys: list[int], how: str) -> float:
    store = Store(url, customer_contexts=customer_contexts)
    await store.start(run_migrations=False)
    try:
        async with store.engine.connect() as connection:
            start = time.perf_counter()
            for key in keys:
                address = f"customer{key}@example.com"
                if how == "bare":
                    row = (
                        await connection.execute(
                            select(identities.c.customer_id).where(
                                and_(identities.c.kind == "email", identities.c.address == address)
                            )
                        )
                    ).first()
                else:
                    found = (await owner_rows(connection, {("email", address)})).get(
                        ("email", address)
                    )
                    row = customer_of(found, NOW) if found is not None else None
                assert row is not None
            return len(keys) / (time.perf_counter() - start)
    finally:
        await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--lookups", type=int, default=5_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite+aiosqlite:///{directory}/context.db"
        started = time.perf_counter()
        await populate(url, args.customers)
        build = time.perf_counter() - started
        rng = random.Random(2)
        cold = rng.sample(range(args.customers), args.lookups)
        hot = [rng.randrange(1000) for _ in range(args.lookups)]
        results = {}
        for label, keys in (("cold", cold), ("cached", hot)):
            for how in ("bare", "context"):
                results[(label, how)] = await measure(url, keys, how)
    print(
        f"# bench/context.py  {time.strftime('%Y-%m-%d')}  {platform.node()}  "
        f"{os.cpu_count()} cpus  python {platform.python_version()}  SQLite"
    )
    print(
        f"# {args.customers:,} customers (built in {build:.1f} s), {args.lookups:,} lookups "
        "per figure, one at a time through SQLAlchemy + aiosqlite"
    )
    print(f"{'':10}{'bare SELECT/s':>15}{'context/s':>12}{'cost ratio':>12}")
    for label in ("cold", "cached"):
        bare, context = results[(label, "bare")], results[(label, "context")]
        print(f"{label:10}{bare:>15,.0f}{context:>12,.0f}{bare / context:>12.2f}")


if __name__ == "__main__":
    asyncio.run(main())
