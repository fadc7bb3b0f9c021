"""Worker processes with a budget per job: a job that overruns is killed with its worker."""

from __future__ import annotations

import os
import time

import pytest

from connectors.workers import JobTimeout, WorkerLost, WorkerPool


def stall(seconds: float) -> str:
    time.sleep(seconds)
    return "woke"


def echo(value: bytes) -> int:
    return len(value)


def fail() -> None:
    raise ValueError("bad input")


def die() -> None:
    os._exit(3)


def pid() -> int:
    return os.getpid()


def alive(process_id: int) -> bool:
    try:
        os.kill(process_id, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{process_id}/stat") as stat:  # a reaped child is gone, a zombie is not
        return stat.read().rsplit(")", 1)[-1].split()[0] != "Z"


async def test_a_job_over_budget_is_killed_and_the_next_one_runs() -> None:
    """Issue 14 item 8: with a process pool and ``wait_for`` the stuck worker kept running, so
    every mail behind it timed out as well and was stored unparsed."""
    pool = WorkerPool(1)
    await pool.start()
    try:
        [first] = pool.pids
        with pytest.raises(JobTimeout):
            await pool.run(stall, 3600.0, budget=0.5)
        assert not alive(first)
        [second] = pool.pids
        assert second != first
        assert await pool.run(echo, b"x" * 5_000_000, budget=60) == 5_000_000
        assert await pool.run(pid, budget=60) == second
    finally:
        await pool.close()


async def test_errors_and_dead_workers_are_typed() -> None:
    pool = WorkerPool(1)
    await pool.start()
    try:
        with pytest.raises(ValueError, match="bad input"):
            await pool.run(fail, budget=60)
        [same] = pool.pids
        assert await pool.run(pid, budget=60) == same  # an exception keeps the worker
        with pytest.raises(WorkerLost):
            await pool.run(die, budget=60)
        assert await pool.run(echo, b"ok", budget=60) == 2  # replaced
    finally:
        await pool.close()
    assert pool.pids == []
