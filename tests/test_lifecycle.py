"""The hub's start-up and shutdown (hub.lifecycle): the order its parts stop in, and a part that
fails to start stopping every part started before it. A real SQLite store, the memory bus and
two recording connectors; no sockets are opened and nothing sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from connectors.base import Connector, ConnectorContext, SendError
from hub.app import create_app
from hub.bus import MemoryBus
from hub.console.service import Console
from hub.dispatch.service import DispatchService
from hub.envelope import Delivery, Outbound
from hub.outbox import OutboxWorker
from hub.plugins import ConnectorRegistry
from hub.settings import HubSettings
from hub.store.store import Store
from rules.reload import RulesWatcher
from tests.conftest import make_settings

RULES = "version: 1\ndefaults: {queue: general}\nrules: []\n"


def recording(journal: list[str], failing: str | None = None) -> type[Connector]:
    """A connector class that notes its starts and stops; ``failing`` cannot start."""

    class Recording(Connector):
        channel = "webchat"

        async def start(self, ctx: ConnectorContext) -> None:
            journal.append(f"start {self.name}")
            if self.name == failing:
                raise RuntimeError(f"{self.name} cannot start")

        async def stop(self) -> None:
            journal.append(f"stop {self.name}")

        async def send(self, outbound: Outbound) -> Delivery:
            raise SendError("not in this test")

        def routes(self) -> Sequence[Any]:
            return ()

    return Recording


def hub_settings(sqlite_url: str, tmp_path: Path, rules: str = RULES) -> HubSettings:
    path = tmp_path / "rules.yaml"
    path.write_text(rules)
    channel = {"type": "webchat", "settings": {}}
    return make_settings(
        sqlite_url,
        tmp_path,
        channels=[{"name": "one", **channel}, {"name": "two", **channel}],
        rules={"path": str(path), "watch": True},
    )


@pytest.fixture
def journal(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What stopped, in order: every part's stop or close method notes itself first."""
    noted: list[str] = []
    parts: list[tuple[type[Any], str, str]] = [
        (RulesWatcher, "stop", "rules watcher"),
        (OutboxWorker, "stop", "outbox"),
        (Console, "stop", "console"),
        (DispatchService, "stop", "dispatch"),
        (aiohttp.ClientSession, "close", "http session"),
        (MemoryBus, "close", "bus"),
        (Store, "close", "store"),
    ]
    for cls, method, label in parts:
        original: Callable[..., Awaitable[Any]] = getattr(cls, method)

        def noting(original: Callable[..., Awaitable[Any]], label: str) -> Any:
            async def stop(self: Any, *args: Any, **kwargs: Any) -> Any:
                noted.append(label)
                return await original(self, *args, **kwargs)

            return stop

        monkeypatch.setattr(cls, method, noting(original, label))
    return noted


def _running() -> set[asyncio.Task[Any]]:
    return {task for task in asyncio.all_tasks() if task is not asyncio.current_task()}


async def test_parts_stop_in_reverse_start_order_after_the_drain(
    sqlite_url: str, tmp_path: Path, journal: list[str]
) -> None:
    before = _running()
    app = create_app(
        hub_settings(sqlite_url, tmp_path),
        registry=ConnectorRegistry({"webchat": recording(journal)}),
    )
    runner = web.AppRunner(app)
    await runner.setup()
    assert journal == ["start one", "start two"]
    journal.clear()
    await runner.cleanup()
    assert journal == [
        # the drain on SIGTERM: sends finish while the channels run, then the channels stop
        "outbox",
        "stop one",
        "stop two",
        # then every part in reverse start order (the channels' second stop is harmless)
        "rules watcher",
        "outbox",
        "stop two",
        "stop one",
        "console",
        "dispatch",
        "http session",
        "bus",
        "store",
    ]
    assert _running() <= before


async def test_a_channel_that_cannot_start_stops_what_started_before_it(
    sqlite_url: str, tmp_path: Path, journal: list[str]
) -> None:
    before = _running()
    app = create_app(
        hub_settings(sqlite_url, tmp_path),
        registry=ConnectorRegistry({"webchat": recording(journal, failing="two")}),
    )
    runner = web.AppRunner(app)
    with pytest.raises(RuntimeError, match="two cannot start"):
        await runner.setup()
    await runner.cleanup()  # what web.run_app does after a failed start
    assert journal == [
        "start one",
        "start two",
        "stop one",
        "console",
        "dispatch",
        "http session",
        "bus",
        "store",
    ]
    assert _running() <= before


async def test_broken_rules_at_start_close_the_store_again(
    sqlite_url: str, tmp_path: Path, journal: list[str]
) -> None:
    """The rules load after the store opened: a broken file fails the start, and the store
    and the bus are closed (no writer task or connection left behind)."""
    before = _running()
    app = create_app(
        hub_settings(sqlite_url, tmp_path, rules="version: 1\nrules: [{name: x, when: '('}]\n"),
        registry=ConnectorRegistry({"webchat": recording(journal)}),
    )
    runner = web.AppRunner(app)
    with pytest.raises(Exception, match=r"rules\.yaml"):  # the rules package's own error
        await runner.setup()
    await runner.cleanup()
    assert journal == ["bus", "store"]
    assert _running() <= before
