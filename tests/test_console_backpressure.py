"""A console that stops reading must not hold up anyone else (issue 14, item 2).

The stuck console is a real TCP client: it shrinks its receive buffer, performs the websocket
handshake by hand, and then never reads again, so the hub's writes to it back up exactly as
they do behind a frozen browser tab.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import connect

from tests.conftest import _HASH, AGENT_PASSWORD, make_settings
from tests.helpers import Frames, RunningHub, agent_client, chat_client, login, running_hub

pytestmark = pytest.mark.integration

BIG = 100_000  # characters per customer message: ~100 KB per message frame to the agent


@contextlib.asynccontextmanager
async def stuck_console(hub: RunningHub, token: str) -> AsyncIterator[socket.socket]:
    """An agent websocket that completes the handshake and then never reads."""
    loop = asyncio.get_running_loop()
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.setblocking(False)
    try:
        port = int(hub.url.rsplit(":", 1)[1])
        await loop.sock_connect(raw, ("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        await loop.sock_sendall(
            raw,
            (
                f"GET /ws/agent HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Authorization: Bearer {token}\r\n\r\n"
            ).encode(),
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = await loop.sock_recv(raw, 1)
            assert chunk, "the hub closed the connection during the handshake"
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head
        yield raw  # … and from here on nothing is read
    finally:
        raw.close()


async def _dropped(raw: socket.socket, within: float = 30.0) -> bool:
    """Read what the hub had sent until the connection ends; True if it did."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        try:
            chunk = await asyncio.wait_for(loop.sock_recv(raw, 1 << 20), 1.0)
        except TimeoutError:
            continue
        except ConnectionError:
            return True
        if not chunk:
            return True
    return False


async def _metric(hub: RunningHub, name: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"{hub.url}/metrics") as response:
        text = await response.text()
    return "\n".join(line for line in text.splitlines() if line.startswith(name))


@pytest.mark.parametrize(
    ("budget", "reason"),
    [
        ({"agent_queue_bytes": 256 * 1024}, "queue_full"),
        ({"agent_queue_bytes": 1024**3, "agent_send_timeout": "1s"}, "send_timeout"),
    ],
    ids=["bytes", "time"],
)
async def test_a_console_that_stops_reading_holds_up_nobody(
    sqlite_url: str, tmp_path: Path, budget: dict[str, Any], reason: str
) -> None:
    """Alice's second tab freezes while her customer sends 8 MB: her working tab and Bob keep
    getting messages and offers, and the frozen tab is dropped past its byte or time budget
    (aborted, not left to a close that waits for a full buffer); it resyncs on reconnect."""
    settings = make_settings(
        sqlite_url,
        tmp_path,
        channels=[
            {
                "name": "webchat",
                "type": "webchat",
                "settings": {"rate_per_second": 200, "burst": 200, "max_message_chars": BIG},
            }
        ],
        agents=[
            {"id": "alice", "name": "Alice", "password_hash": _HASH, "max_conversations": 1},
            {"id": "bob", "name": "Bob", "password_hash": _HASH, "max_conversations": 3},
        ],
        server={"secret_key": "test-secret-key-0123456789abcdef", **budget},
    )
    async with running_hub(settings) as hub:
        alice_token = await login(hub, "alice", AGENT_PASSWORD)
        bob_token = await login(hub, "bob", AGENT_PASSWORD)
        async with (
            agent_client(hub, alice_token) as (alice, _),
            chat_client(hub, name="Carla") as (carla, _),
        ):
            await carla.send(type="message", client_id="0", text="hello")
            offer = await alice.expect("offer")
            conversation_id = offer["conversation_id"]
            await alice.send(type="accept", conversation_id=conversation_id)
            await alice.expect("conversation")
            async with (
                stuck_console(hub, alice_token) as stuck,  # alice's second tab freezes
                agent_client(hub, bob_token) as (bob, _),
            ):

                async def working_tab() -> None:  # alice's working tab gets every message …
                    for index in range(1, 81):
                        frame = await alice.expect(
                            "message",
                            timeout=30,
                            where=lambda f, i=index: f["message"]["text"].startswith(f"{i:03d} "),
                        )
                        assert frame["conversation_id"] == conversation_id

                reading = asyncio.create_task(working_tab())
                # ~8 MB of frames for alice: far more than the kernel buffers hold
                for index in range(1, 81):
                    text = f"{index:03d} " + os.urandom(BIG // 2).hex()[: BIG - 4]
                    await carla.send(type="message", client_id=str(index), text=text)
                    await carla.expect("ack", client_id=str(index), timeout=15)
                await reading
                # … a new customer is still offered (alice is full: to bob) …
                async with chat_client(hub, name="Dora") as (dora, _):
                    await dora.send(type="message", client_id="1", text="anyone there?")
                    await dora.expect("ack")
                    offered = await bob.expect("offer", timeout=15)
                    assert offered["preview"] == "anyone there?"
                # … and the stuck tab is dropped, not left hanging (reading it only once the
                # hub has counted the drop: reading earlier would unblock it)
                for _ in range(300):
                    dropped = await _metric(hub, "channelhub_agent_sockets_dropped_total")
                    if f'reason="{reason}"' in dropped:
                        break
                    await asyncio.sleep(0.1)
                assert f'reason="{reason}"' in dropped, dropped
                assert await _dropped(stuck)
        # the dropped tab's next connection resyncs through the snapshot (8 MB: no size limit)
        async with connect(f"{hub.ws_url}/ws/agent", max_size=None) as again:
            frames = Frames(again)
            await frames.send(type="auth", token=alice_token)
            snapshot = await frames.expect("snapshot")
            held: list[dict[str, Any]] = snapshot["conversations"]
            assert [c["id"] for c in held] == [conversation_id]
            assert len(held[0]["messages"]) == 81
