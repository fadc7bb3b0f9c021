"""Websocket compression is a setting: off by default (each compressed socket keeps ~100 KiB of
zlib state, see bench/sockets.py), on when a channel or the agent console asks for it."""

from __future__ import annotations

from pathlib import Path

from websockets.asyncio.client import connect

from tests.conftest import AGENT_PASSWORD, make_settings
from tests.helpers import login, running_hub


async def _extensions(url: str) -> str | None:
    async with connect(url) as socket:  # websockets offers permessage-deflate by default
        assert socket.response is not None
        return socket.response.headers.get("Sec-WebSocket-Extensions")


async def test_sockets_are_uncompressed_by_default(sqlite_url: str, tmp_path: Path) -> None:
    async with running_hub(make_settings(sqlite_url, tmp_path)) as hub:
        assert await _extensions(f"{hub.ws_url}/ws/chat") is None
        assert await _extensions(f"{hub.ws_url}/ws/agent") is None


async def test_compression_is_negotiated_when_configured(sqlite_url: str, tmp_path: Path) -> None:
    settings = make_settings(
        sqlite_url,
        tmp_path,
        server={"secret_key": "test-secret-key-0123456789abcdef", "websocket_compression": True},
        channels=[{"name": "webchat", "type": "webchat", "settings": {"compression": True}}],
    )
    async with running_hub(settings) as hub:
        assert "permessage-deflate" in (await _extensions(f"{hub.ws_url}/ws/chat") or "")
        assert "permessage-deflate" in (await _extensions(f"{hub.ws_url}/ws/agent") or "")
        assert await login(hub, "alice", AGENT_PASSWORD)  # the hub works with it on
