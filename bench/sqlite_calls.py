"""SQLite through the store: aiosqlite's thread per call against calls in the loop's thread.

Each operation is one writer job (an INSERT and a SELECT, committed with fsync,
``synchronous=FULL``) followed by one read on a pooled connection, as the hub's paths do.
``storage.sqlite_calls`` ``thread`` and ``inline`` alternate in the same run, one worker and
32 concurrent workers; CPU is the process's own CPU time per operation (steadier than the
rate on a shared machine: the rate follows the fsync time).

Usage: python bench/sqlite_calls.py [--operations 300] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text

from hub.store.database import Database


async def measure(calls: str, path: str, operations: int, workers: int) -> tuple[float, ...]:
    """ops/s, CPU ms per op, p50 and p99 ms, commits."""
    database = Database(f"sqlite+aiosqlite:///{path}", sqlite_calls=calls)
    await database.start(run_migrations=False)

    async def create(connection: Any) -> None:
        await connection.execute(
            text("CREATE TABLE t (k INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT)")
        )

    async def write(connection: Any) -> None:
        await connection.execute(text("INSERT INTO t (v) VALUES ('x')"))
        await connection.execute(text("SELECT count(*) FROM t WHERE k < 10"))

    await database.writer.call(create)
    latencies: list[float] = []

    async def worker() -> None:
        for _ in range(operations // workers):
            started = time.perf_counter()
            await database.writer.call(write)
            async with database.read() as connection:
                (await connection.execute(text("SELECT v FROM t WHERE k = 1"))).all()
            latencies.append(time.perf_counter() - started)

    batches = database.writer.batches
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    commits = database.writer.batches - batches
    await database.close()
    latencies.sort()
    count = len(latencies)
    return (
        count / wall,
        cpu / count * 1e3,
        latencies[count // 2] * 1e3,
        latencies[int(count * 0.99)] * 1e3,
        commits,
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--operations", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print(
        f"# bench/sqlite_calls.py  {time.strftime('%Y-%m-%d')}  {platform.machine()}  "
        f"python {platform.python_version()}"
    )
    print(
        f"{'calls':8}{'workers':>8}{'ops/s':>9}{'cpu ms/op':>11}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'commits':>9}"
    )
    with tempfile.TemporaryDirectory() as directory:
        for round_ in range(args.rounds):
            for calls in ("thread", "inline"):
                for workers in (1, 32):
                    path = f"{directory}/{calls}-{workers}-{round_}.db"
                    rate, cpu, p50, p99, commits = await measure(
                        calls, path, args.operations, workers
                    )
                    print(
                        f"{calls:8}{workers:>8}{rate:>9.0f}{cpu:>11.3f}{p50:>9.2f}"
                        f"{p99:>9.2f}{commits:>9.0f}"
                    )


if __name__ == "__main__":
    asyncio.run(main())
