"""Worker processes with a budget per job: a job that overruns is killed with its worker."""

from __future__ import annotations

import os
import smtplib
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from connectors.shared.workers import JobTimeout, WorkerLost, WorkerPool
from tests.helpers import free_port, wait_ready


def stall(seconds: float) -> str:
    time.sleep(seconds)
    return "woke"


def stall_started(marker: str, seconds: float) -> str:
    """:func:`stall`, once it has said it began (the file ``marker`` exists)."""
    with open(marker, "w"):
        pass
    return stall(seconds)


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


ROOT = Path(__file__).resolve().parent.parent

# a hub stand-in: starts workers the way the connectors do, prints their pids, then waits
_POOL_PARENT = """
import asyncio, os, sys, tempfile, time
from connectors.shared.workers import WorkerPool
from tests.test_workers import stall_started

async def main():
    pool = WorkerPool(2)
    await pool.start()
    started = os.path.join(tempfile.mkdtemp(), "started")
    busy = asyncio.ensure_future(pool.run(stall_started, started, 3600.0, budget=7200))
    for _ in range(2000):  # until a worker is inside the job (at most 20 s)
        if os.path.exists(started):
            break
        await asyncio.sleep(0.01)
    print(*pool.pids, flush=True)
    await busy

asyncio.run(main())
"""
_EXECUTOR_PARENT = """
import concurrent.futures, multiprocessing, os, time
from connectors.shared.workers import die_with_parent

pool = concurrent.futures.ProcessPoolExecutor(
    2, mp_context=multiprocessing.get_context("forkserver"),
    initializer=die_with_parent, initargs=(os.getpid(),),
)
pids = {pool.submit(os.getpid).result() for _ in range(20)}
print(*pids, flush=True)
time.sleep(3600)
"""


def descendants(root: int) -> set[int]:
    """Every process below ``root`` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parent = int(stat.read().rsplit(")", 1)[-1].split()[1])
            except OSError:
                continue
            children.setdefault(parent, []).append(int(entry))
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def wait_gone(pids: set[int], deadline: float = 20.0) -> set[int]:
    """The pids still alive once all are gone or ``deadline`` seconds have passed."""
    end = time.monotonic() + deadline
    while True:
        left = {p for p in pids if alive(p)}
        if not left or time.monotonic() > end:
            return left
        time.sleep(0.1)


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
@pytest.mark.parametrize(
    "parent", [_POOL_PARENT, _EXECUTOR_PARENT], ids=["busy-pool", "idle-executor"]
)
def test_workers_die_when_their_parent_is_killed(parent: str) -> None:
    """Issue 14 item 6: a hub killed with SIGKILL left its mail-parsing workers running,
    re-parented to init; idle ones blocked on their queue, busy ones finishing their job."""
    process = subprocess.Popen(
        [sys.executable, "-c", parent],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        workers = {int(pid) for pid in process.stdout.readline().split()}
        assert workers and workers <= descendants(process.pid)
        process.kill()
        process.wait()
        assert wait_gone(workers) == set()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_a_killed_hub_leaves_no_processes_behind(tmp_path: Path) -> None:
    """Issue 14 item 6 end to end: a real `channelhub serve` with an email inbox (two parse
    workers that have parsed a mail), killed with SIGKILL: every process it started ends."""
    port, smtp_port = free_port(), free_port()
    config = tmp_path / "hub.yaml"
    hub = {
        "server": {"host": "127.0.0.1", "port": port, "secret_key": "test-secret-0123456789abcdef"},
        "storage": {
            "url": f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}",
            "blobs": str(tmp_path / "blobs"),
        },
        "channels": [
            {
                "name": "support",
                "type": "email",
                "settings": {
                    "address": "support@example.com",
                    "parse_workers": 2,
                    "smtp_in": {"port": smtp_port, "recipients": ["support@example.com"]},
                },
            }
        ],
        "queues": [{"name": "general"}],
    }
    config.write_text(yaml.safe_dump(hub))
    process = subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "serve", "--config", str(config)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}", process)
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=30) as client:
            client.sendmail(
                "customer@example.org",
                ["support@example.com"],
                b"From: customer@example.org\r\nSubject: hi\r\n\r\nHello\r\n",
            )
        started = descendants(process.pid)
        assert len(started) >= 3  # the forkserver and two parse workers, at least
        process.kill()
        process.wait()
        assert wait_gone(started) == set()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
