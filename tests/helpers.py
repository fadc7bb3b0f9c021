"""Test clients for the customer and agent websockets, and a hub runner on a free port."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from websockets.asyncio.client import ClientConnection, connect

from hub.app import create_app
from hub.console.frames import check_server_frame
from hub.customers.context import customer_contexts
from hub.envelope import Direction, Envelope, Identity, ThreadHints
from hub.keys import STORE
from hub.settings import HubSettings
from hub.store.store import Store

ROOT = Path(__file__).resolve().parent.parent  # the checkout
TIMEOUT = 5.0
IN_CI = os.environ.get("CI") == "true"


def chat_envelope(key: str, sender: str = "v1", text_: str = "hi", **extra: object) -> Envelope:
    """An inbound web chat message: ``key`` its idempotency key, ``sender`` the visitor (and
    their chat session)."""
    return Envelope(
        channel="webchat",
        inbox="web",
        direction=Direction.INBOUND,
        idempotency_key=key,
        sender=Identity(kind="webchat", address=sender),
        received_at=1000.0,
        thread=ThreadHints(session=sender),
        text=text_,
        **extra,  # type: ignore[arg-type]
    )


async def http_json(method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
    """Status and body (parsed as JSON where it is JSON) of one request on a session of its own."""
    async with aiohttp.ClientSession() as session, session.request(method, url, **kwargs) as r:
        body = await r.text()
        try:
            return r.status, json.loads(body)
        except ValueError:
            return r.status, body


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[str], timeout: float = 30.0) -> None:
    """Wait until the hub ``process`` started answers ``/readyz`` with 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"serve exited early: {process.stderr.read() if process.stderr else ''}"
            )
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("the hub did not become ready")


def channelhub(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the ``channelhub`` command from this checkout (``python -m hub.cli``) in ``cwd``."""
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


def hub_store(url: str, **options: Any) -> Store:
    """A store opened as the hub opens it: a conversation shows its customer's context."""
    return Store(url, customer_contexts=customer_contexts, **options)


class Clock:
    """A hub clock that stands still until the test moves it: time-based behaviour (SLAs,
    retry backoff, expiry) is tested by moving it, not by sleeping."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class RunningHub:
    app: web.Application
    runner: web.AppRunner
    url: str
    ws_url: str

    @property
    def store(self) -> Any:
        return self.app[STORE]


@asynccontextmanager
async def running_hub(
    settings: HubSettings, clock: Callable[[], float] | None = None
) -> AsyncIterator[RunningHub]:
    """Start the real application on 127.0.0.1 with a free port; stop it afterwards."""
    app = create_app(settings) if clock is None else create_app(settings, clock=clock)
    runner = web.AppRunner(app, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield RunningHub(app, runner, f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}")
    finally:
        await runner.cleanup()


class Frames:
    """A websocket with helpers to wait for a frame of a given type."""

    def __init__(
        self, socket: ClientConnection, check: Callable[[str | bytes], object] | None = None
    ) -> None:
        self.socket = socket
        self.backlog: list[dict[str, Any]] = []
        self.check = check  # validates every frame received (the agent protocol's models)

    async def send(self, **frame: Any) -> None:
        await self.socket.send(json.dumps(frame))

    async def send_raw(self, data: str | bytes) -> None:
        await self.socket.send(data)

    async def expect(
        self,
        kind: str,
        timeout: float = TIMEOUT,
        where: Callable[[dict[str, Any]], bool] | None = None,
        **match: Any,
    ) -> dict[str, Any]:
        """The next frame of ``kind`` whose fields equal ``match``; others are kept."""

        def fits(frame: dict[str, Any]) -> bool:
            return (
                frame["type"] == kind
                and all(frame.get(k) == v for k, v in match.items())
                and (where is None or where(frame))
            )

        for index, frame in enumerate(self.backlog):
            if fits(frame):
                return self.backlog.pop(index)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(
                    f"no {kind} frame {match} within {timeout}s; saw {self.backlog}"
                )
            try:
                raw = await asyncio.wait_for(self.socket.recv(), remaining)
            except TimeoutError:
                continue
            if self.check is not None:
                self.check(raw)
            frame = json.loads(raw)
            if fits(frame):
                return frame
            self.backlog.append(frame)

    async def nothing(self, kind: str, within: float = 0.5) -> None:
        """Assert that no frame of ``kind`` arrives within ``within`` seconds."""
        try:
            frame = await self.expect(kind, timeout=within)
        except AssertionError:
            return
        raise AssertionError(f"unexpected {kind} frame: {frame}")

    async def close(self) -> None:
        await self.socket.close()


@asynccontextmanager
async def chat_client(
    hub: RunningHub,
    token: str | None = None,
    name: str | None = None,
    origin: str | None = None,
) -> AsyncIterator[tuple[Frames, dict[str, Any]]]:
    headers = {"Origin": origin} if origin else None
    async with connect(f"{hub.ws_url}/ws/chat", additional_headers=headers) as socket:
        frames = Frames(socket)
        hello: dict[str, Any] = {"type": "hello"}
        if token:
            hello["token"] = token
        if name:
            hello["name"] = name
        await socket.send(json.dumps(hello))
        welcome = await frames.expect("welcome")
        yield frames, welcome


async def login(hub: RunningHub, username: str, password: str) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{hub.url}/api/login", json={"username": username, "password": password}
        ) as response,
    ):
        assert response.status == 200, await response.text()
        return str((await response.json())["token"])


@asynccontextmanager
async def agent_client(
    hub: RunningHub, token: str, origin: str | None = None
) -> AsyncIterator[tuple[Frames, dict[str, Any]]]:
    headers = {"Origin": origin} if origin else None
    async with connect(
        f"{hub.ws_url}/ws/agent", additional_headers=headers, max_size=2**22
    ) as socket:
        frames = Frames(socket, check=check_server_frame)
        await frames.send(type="auth", token=token)
        await frames.expect("hello")
        snapshot = await frames.expect("snapshot")
        yield frames, snapshot


def client_id() -> str:
    return uuid.uuid4().hex
