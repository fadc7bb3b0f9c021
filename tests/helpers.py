"""Test clients for the customer and agent websockets, and a hub runner on a free port."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from websockets.asyncio.client import ClientConnection, connect

from hub.app import create_app
from hub.console.frames import check_server_frame
from hub.customers.context import customer_contexts
from hub.keys import STORE
from hub.settings import HubSettings
from hub.store.store import Store

TIMEOUT = 5.0
IN_CI = os.environ.get("CI") == "true"


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
