"""Database outages and a full disk, as clients see them (issue 14, item 4).

What goes wrong is real: a private PostgreSQL database that stops accepting connections and has
its backends terminated; an SQLite file replaced by a directory; an SQLite database on a small
tmpfs that is filled up. Every client must be told ``unavailable`` (a frame, or HTTP 503), and
``/readyz`` must take the hub out of the load balancer while writes fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event
from websockets.asyncio.client import connect

from tests.conftest import AGENT_PASSWORD, PG_ADMIN, make_settings
from tests.helpers import (
    Frames,
    RunningHub,
    agent_client,
    chat_client,
    client_id,
    http_json,
    login,
    running_hub,
)

pytestmark = pytest.mark.integration


def _database_name(url: str) -> str:
    return url.rsplit("/", 1)[1]


@contextlib.asynccontextmanager
async def outage(hub: RunningHub, url: str) -> AsyncIterator[None]:
    """The hub's database is gone until the block ends.

    PostgreSQL: the database stops accepting connections and its backends are terminated (as
    a failover or an operator does). SQLite: the file is replaced by a directory."""
    if url.startswith("postgresql"):
        name = _database_name(url)
        admin = await asyncpg.connect(PG_ADMIN, timeout=3)
        try:
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                name,
            )
            yield
        finally:
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            await admin.close()
        return
    await hub.store.engine.dispose()
    database = Path(url.removeprefix("sqlite+aiosqlite:///"))
    database.rename(database.with_suffix(".gone"))
    database.mkdir()
    try:
        yield
    finally:
        database.rmdir()
        database.with_suffix(".gone").rename(database)


async def _accepted(agent: Frames) -> str:
    offer = await agent.expect("offer")
    await agent.send(type="accept", conversation_id=offer["conversation_id"])
    await agent.expect("conversation")
    return str(offer["conversation_id"])


async def test_a_database_outage_is_unavailable_everywhere(store_url: str, tmp_path: Path) -> None:
    """Agent frames, new agent and chat sockets, chat messages, login and readiness all say
    ``unavailable`` (503) while the database is gone, and everything works again after."""
    async with running_hub(make_settings(store_url, tmp_path)) as hub:
        token = await login(hub, "alice", AGENT_PASSWORD)
        async with (
            agent_client(hub, token) as (agent, _),
            chat_client(hub, name="Carla") as (carla, _),
        ):
            await carla.send(type="message", client_id="1", text="hello")
            await carla.expect("ack")
            conversation_id = await _accepted(agent)
            async with outage(hub, store_url):
                reply = client_id()
                await agent.send(
                    type="reply", conversation_id=conversation_id, client_id=reply, text="hi"
                )
                error = await agent.expect("error", ref=reply)
                assert error["code"] == "unavailable", error

                await carla.send(type="message", client_id="2", text="still there?")
                error = await carla.expect("error", client_id="2")
                assert error["code"] == "unavailable", error

                async with connect(f"{hub.ws_url}/ws/chat") as socket:  # a new chat window
                    await socket.send(json.dumps({"type": "hello", "name": "Dora"}))
                    error = json.loads(await socket.recv())
                    assert (error["type"], error["code"]) == ("error", "unavailable"), error
                    await socket.wait_closed()
                    assert socket.close_code == 1013

                async with connect(f"{hub.ws_url}/ws/agent") as socket:  # a new console
                    await socket.send(json.dumps({"type": "auth", "token": token}))
                    error = json.loads(await socket.recv())
                    assert (error["type"], error["code"]) == ("error", "unavailable"), error
                    await socket.wait_closed()
                    assert socket.close_code == 1013

                status, body = await http_json(
                    "POST",
                    f"{hub.url}/api/login",
                    json={"username": "bob", "password": AGENT_PASSWORD},
                )
                assert (status, body["error"]) == (503, "unavailable"), body
                status, body = await http_json("GET", f"{hub.url}/readyz")
                assert (status, body["status"]) == (503, "unavailable"), body

            # back: the same frames go through
            await agent.send(
                type="reply", conversation_id=conversation_id, client_id=reply, text="hi"
            )
            ack = await agent.expect("reply_ack", client_id=reply)
            assert ack["duplicate"] is False
            await carla.send(type="message", client_id="2", text="still there?")
            await carla.expect("ack", client_id="2")
            assert (await http_json("GET", f"{hub.url}/readyz"))[0] == 200
            await login(hub, "bob", AGENT_PASSWORD)


# -- a full disk ---------------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A small tmpfs mounted at ``path`` (needs the right to mount: root in CI's container)."""
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    path.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the file system is full; returns it (delete it to free the space)."""
    filler = directory / f"filler-{uuid.uuid4().hex}"
    chunk = os.urandom(64 * 1024)
    with filler.open("wb") as handle:
        try:
            while True:
                handle.write(chunk)
                handle.flush()
        except OSError:
            pass
    small = chunk[:512]
    with contextlib.suppress(OSError), filler.open("ab") as handle:
        while True:  # the last partial page too
            handle.write(small)
            handle.flush()
    return filler


class PageLimit:
    """SQLite's own "database or disk is full", without a small file system: every new
    connection may not grow the file past its current size (``PRAGMA max_page_count``)."""

    def __init__(self, hub: RunningHub) -> None:
        self.engine = hub.store.engine

    def _limit(self, dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA page_count")
        pages = cursor.fetchone()[0]
        cursor.execute(f"PRAGMA max_page_count = {pages}")
        cursor.close()

    async def fill(self) -> None:
        event.listen(self.engine.sync_engine, "connect", self._limit)
        await self.engine.dispose()  # pooled connections go; new ones get the limit

    async def free(self) -> None:
        event.remove(self.engine.sync_engine, "connect", self._limit)
        await self.engine.dispose()


@pytest.mark.parametrize("how", ["tmpfs", "page_limit"])
async def test_a_full_disk_takes_the_hub_out_of_readiness(tmp_path: Path, how: str) -> None:
    """SQLite on a full disk: reads still work, writes fail. Chat messages and agent replies
    are answered ``unavailable``, login 503, and ``/readyz`` 503 until a test write that needs
    new space succeeds again. ``tmpfs``: a real full file system (needs the right to mount);
    ``page_limit``: SQLite's own page limit (the file may not grow; rows that fit in free space
    still do), where mounting is not allowed."""
    with contextlib.ExitStack() as stack:
        disk = stack.enter_context(tmpfs(tmp_path / "disk", "24m")) if how == "tmpfs" else tmp_path
        url = f"sqlite+aiosqlite:///{disk / 'hub.db'}"
        async with running_hub(make_settings(url, tmp_path)) as hub:
            token = await login(hub, "alice", AGENT_PASSWORD)
            async with (
                agent_client(hub, token) as (agent, _),
                chat_client(hub, name="Carla") as (carla, _),
            ):
                await carla.send(type="message", client_id="0", text="hello")
                await carla.expect("ack")
                conversation_id = await _accepted(agent)
                assert (await http_json("GET", f"{hub.url}/readyz"))[0] == 200
                if how == "tmpfs":
                    filler = fill(disk)
                else:
                    limit = PageLimit(hub)
                    await limit.fill()
                refused = None
                for index in range(1, 60):  # space left in the last pages may take a few
                    await carla.send(type="message", client_id=str(index), text="x" * 2000)
                    frame = await _answer(carla, str(index))
                    if frame["type"] == "error":
                        refused = frame
                        break
                assert refused is not None and refused["code"] == "unavailable", refused

                status, body = await http_json("GET", f"{hub.url}/readyz")
                assert (status, body["status"]) == (503, "unavailable"), body
                assert "full" in body["reason"], body

                reply = client_id()
                if how == "tmpfs":  # under a page limit a tiny row may still fit a free page
                    await agent.send(
                        type="reply", conversation_id=conversation_id, client_id=reply, text="hi"
                    )
                    assert (await agent.expect("error", ref=reply))["code"] == "unavailable"
                    status, body = await http_json(
                        "POST",
                        f"{hub.url}/api/login",
                        json={"username": "bob", "password": AGENT_PASSWORD},
                    )
                    assert (status, body["error"]) == (503, "unavailable"), body

                # space again: the next readiness check writes and recovers
                if how == "tmpfs":
                    filler.unlink()
                else:
                    await limit.free()
                status, body = await http_json("GET", f"{hub.url}/readyz")
                assert (status, body["status"]) == (200, "ready"), body
                await agent.send(
                    type="reply", conversation_id=conversation_id, client_id=reply, text="hi"
                )
                await agent.expect("reply_ack", client_id=reply)


async def _answer(chat: Frames, client: str, timeout: float = 10.0) -> dict[str, Any]:
    """The chat's ``ack`` or ``error`` for message ``client``."""

    def fits(frame: dict[str, Any]) -> bool:
        return frame.get("client_id") == client and frame["type"] in {"ack", "error"}

    for index, frame in enumerate(chat.backlog):
        if fits(frame):
            return chat.backlog.pop(index)
    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads(await chat.socket.recv())
            if fits(frame):
                return dict(frame)
            chat.backlog.append(frame)
