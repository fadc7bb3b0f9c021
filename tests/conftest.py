"""Fixtures: hub settings on a temporary SQLite file or a fresh PostgreSQL database."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from hub.auth import hash_password
from hub.plugins import ConnectorRegistry
from hub.settings import HubSettings, validate_settings
from rules.yamlfile import YamlDocument
from tests.helpers import IN_CI
from tests.redis_server import redis_server  # noqa: F401 - a fixture for every test module

PG_ADMIN = os.environ.get("CHANNELHUB_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
AGENT_PASSWORD = "correct horse battery"
_HASH = hash_password(AGENT_PASSWORD)


def make_settings(url: str, root: Path, **overrides: Any) -> HubSettings:
    """Hub settings for tests: one web chat, two agents, short dispatch timers."""
    data: dict[str, Any] = {
        "server": {"secret_key": "test-secret-key-0123456789abcdef"},
        "storage": {"url": url, "blobs": str(root / "blobs")},
        "channels": [
            {
                "name": "webchat",
                "type": "webchat",
                "settings": {"rate_per_second": 50, "burst": 50},
            },
        ],
        "queues": [{"name": "general"}, {"name": "billing"}],
        "dispatch": {"offer_timeout": "3s", "disconnect_grace": "1s", "decline_cooldown": "30s"},
        "agents": [
            {"id": "alice", "name": "Alice", "password_hash": _HASH, "max_conversations": 3},
            {"id": "bob", "name": "Bob", "password_hash": _HASH, "max_conversations": 3},
        ],
    }
    for key, value in overrides.items():
        data[key] = value
    registry = ConnectorRegistry.discover()
    return validate_settings(YamlDocument("test.yaml", data), registry.settings_model)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"


async def _pg_database() -> tuple[str, Callable[[], Any]] | None:
    try:
        import asyncpg
    except ImportError:  # pragma: no cover
        return None
    name = f"chtest_{uuid.uuid4().hex[:12]}"
    try:
        admin = await asyncpg.connect(PG_ADMIN, timeout=3)
    except (OSError, asyncpg.PostgresError):
        return None
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()

    async def drop() -> None:
        admin = await asyncpg.connect(PG_ADMIN, timeout=3)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return f"{base}/{name}", drop


async def pg_database() -> tuple[str, Callable[[], Any]]:
    """A fresh PostgreSQL database and how to drop it; skips the test when PostgreSQL is not
    reachable (fails it under CI=true, where a missing service is a failure)."""
    created = await _pg_database()
    if created is None:
        if IN_CI:
            pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN} (CI=true requires it)")
        pytest.skip(f"PostgreSQL is not reachable at {PG_ADMIN}")
    return created


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Each test using this runs twice: on SQLite and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"
        return
    url, drop = await pg_database()
    try:
        yield url
    finally:
        await drop()


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A fresh PostgreSQL database, for what only PostgreSQL does (several hub processes)."""
    url, drop = await pg_database()
    try:
        yield url
    finally:
        await drop()
