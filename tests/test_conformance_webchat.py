"""The web chat against the public conformance kit: visitors' websocket frames are its wire."""

from __future__ import annotations

import json

import aiohttp

from connectors.base import ConnectorSettings
from connectors.testing import ConnectorConformance, Harness, Hostile
from connectors.webchat import WebChatConnector, WebChatSettings
from hub.envelope import Identity, Outbound

INSTANCE = "web"
#: a websocket closes with 1009 (message too big) or the chat's own 44xx, its 4xx
FRAME_REFUSED = range(4400, 4500)


def _ws(harness: Harness) -> str:
    return harness.url.replace("http://", "ws://", 1) + f"/channels/{INSTANCE}/ws"


async def _close_code(socket: aiohttp.ClientWebSocketResponse) -> int:
    """Read until the server closes; its close code."""
    async for _ in socket:
        pass
    return int(socket.close_code or 0)


async def _foreign_origin(harness: Harness) -> int:
    try:
        async with harness.http.ws_connect(
            _ws(harness), headers={"Origin": "https://evil.example"}
        ):
            return 101
    except aiohttp.WSServerHandshakeError as exc:
        return exc.status


async def _hello_then(harness: Harness, frame: str) -> int:
    async with harness.http.ws_connect(_ws(harness)) as socket:
        await socket.send_str(json.dumps({"type": "hello"}))
        assert (await socket.receive_json())["type"] == "welcome"
        await socket.send_str(frame)
        return await _close_code(socket)


async def _first_frame(harness: Harness, frame: str | bytes) -> int:
    async with harness.http.ws_connect(_ws(harness)) as socket:
        if isinstance(frame, bytes):
            await socket.send_bytes(frame)
        else:
            await socket.send_str(frame)
        return await _close_code(socket)


class TestWebChatConformance(ConnectorConformance):
    connector_class = WebChatConnector
    entry_point = "webchat"
    instance = INSTANCE
    token: str | None = None  # the visitor's token: a redelivery comes from the same visitor

    def settings(self) -> ConnectorSettings:
        return WebChatSettings(rate_per_second=100, burst=100, max_message_chars=1000)

    async def deliver(self, harness: Harness, key: str) -> bool:
        async with harness.http.ws_connect(_ws(harness)) as socket:
            hello = {"type": "hello", **({"token": self.token} if self.token else {})}
            await socket.send_str(json.dumps(hello))
            welcome = await socket.receive_json()
            self.token = welcome["token"]
            await socket.send_str(
                json.dumps({"type": "message", "client_id": key, "text": f"sample {key}"})
            )
            answer = await socket.receive_json()
            return bool(answer["type"] == "ack" and answer["client_id"] == key)

    def hostile(self) -> list[Hostile]:
        return [
            Hostile("a page on another site opens the socket", _foreign_origin),
            Hostile(
                "a frame over the hard size limit",
                lambda h: _hello_then(
                    h, json.dumps({"type": "message", "client_id": "x", "text": "y" * 300_000})
                ),
                refused={1009},
            ),
            Hostile(
                "a first frame that is not JSON",
                lambda h: _first_frame(h, "{not json"),
                refused=FRAME_REFUSED,
            ),
            Hostile(
                "a binary first frame",
                lambda h: _first_frame(h, b"\x00\x01"),
                refused=FRAME_REFUSED,
            ),
            Hostile(
                "a message before hello",
                lambda h: _first_frame(
                    h, json.dumps({"type": "message", "client_id": "1", "text": "hi"})
                ),
                refused=FRAME_REFUSED,
            ),
        ]

    def recipient(self) -> Identity:
        return Identity(kind="webchat", address="visitor-nobody-is-connected")

    async def fail_next_send(self, harness: Harness, outbound: Outbound) -> Outbound:
        # no provider stands between the hub and a visitor: a reply to a visitor who is away
        # waits for their next visit, so the only failing send is one the chat cannot reach
        return Outbound(
            message_id=outbound.message_id,
            conversation_id=outbound.conversation_id,
            inbox=outbound.inbox,
            idempotency_key=outbound.idempotency_key,
            recipient=Identity(kind="email", address="someone@example.org"),
            text=outbound.text,
        )
