"""The plugin API: conformance of the built-in web chat through the public testing kit only."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from connectors.testing import (
    CollectingSink,
    check_connector_class,
    check_routes,
    connector_context,
    served,
)
from connectors.webchat import WebChatConnector, WebChatSettings
from hub.envelope import DeliveryStatus, Identity, Outbound
from hub.plugins import ConnectorRegistry

ROOT = Path(__file__).resolve().parent.parent


def test_webchat_is_registered_like_any_plugin() -> None:
    check_connector_class(WebChatConnector, type_name="webchat")
    assert ConnectorRegistry.discover().get("webchat") is WebChatConnector


def test_connectors_never_import_the_hub_runtime() -> None:
    """Connectors get everything through ConnectorContext; only the data model is shared."""
    offenders = []
    for path in (ROOT / "connectors").rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if (name == "hub" or name.startswith("hub.")) and name != "hub.envelope":
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}")
    assert offenders == []


async def test_webchat_through_the_testing_kit() -> None:
    sink = CollectingSink()
    connector = WebChatConnector("web", WebChatSettings())
    check_routes(connector)
    async with connector_context("web", sink=sink) as ctx, served(connector) as url:
        await connector.start(ctx)
        ws = url.replace("http://", "ws://")
        async with connect(f"{ws}/channels/web/ws") as socket:
            await socket.send(json.dumps({"type": "hello", "name": "Ann"}))
            welcome = json.loads(await socket.recv())
            assert welcome["type"] == "welcome" and welcome["history"] == []
            await socket.send(json.dumps({"type": "message", "client_id": "1", "text": "hi"}))
            ack = json.loads(await socket.recv())
            assert ack["type"] == "ack" and ack["duplicate"] is False
            envelope = sink.envelopes[0]
            assert (envelope.channel, envelope.inbox, envelope.text) == ("webchat", "web", "hi")
            assert envelope.sender.display_name == "Ann"

            outbound = Outbound(
                message_id="m9",
                conversation_id="c",
                inbox="web",
                idempotency_key="r",
                recipient=envelope.sender,
                text="hello Ann",
                created_at=5.0,
            )
            delivery = await connector.send(outbound)
            assert delivery.status is DeliveryStatus.DELIVERED
            pushed = json.loads(await socket.recv())
            assert (pushed["type"], pushed["text"], pushed["id"]) == ("message", "hello Ann", "m9")

            # the store is down: the visitor is told, nothing is acknowledged
            sink.fail_next = RuntimeError("disk full")
            await socket.send(json.dumps({"type": "message", "client_id": "2", "text": "x"}))
            error = json.loads(await socket.recv())
            assert (error["type"], error["code"], error["client_id"]) == (
                "error",
                "unavailable",
                "2",
            )
        # nobody connected: stored for the next visit, not delivered now
        assert (await connector.send(outbound)).status is DeliveryStatus.SENT
        with pytest.raises(Exception, match="cannot reach"):
            await connector.send(
                Outbound(
                    message_id="m",
                    conversation_id="c",
                    inbox="web",
                    idempotency_key="k",
                    recipient=Identity(kind="email", address="a@b.c"),
                    text="x",
                )
            )


async def test_signed_customer_links_the_visitor() -> None:
    """The host page vouches for a logged-in customer; forged or expired claims are refused."""
    from connectors.webchat import parse

    key = b"shared-with-the-website"
    sink = CollectingSink()
    now = 1_800_000_000.0
    connector = WebChatConnector("web", WebChatSettings(identity_secret="shared-with-the-website"))
    async with (
        connector_context("web", sink=sink, clock=lambda: now) as ctx,
        served(connector) as url,
    ):
        await connector.start(ctx)
        ws = url.replace("http://", "ws://") + "/channels/web/ws"
        expires = int(now) + 3600
        cases = [
            (parse.customer_signature(key, "K7", expires), expires, "K7"),
            (parse.customer_signature(b"wrong-key", "K7", expires), expires, None),
            (parse.customer_signature(key, "K7", int(now) - 1), int(now) - 1, None),
            (parse.customer_signature(key, "K8", expires), expires, None),  # for K8, not K7
        ]
        for index, (signature, until, expected) in enumerate(cases):
            async with connect(ws) as socket:
                await socket.send(
                    json.dumps(
                        {
                            "type": "hello",
                            "customer": "K7",
                            "expires": until,
                            "signature": signature,
                        }
                    )
                )
                assert json.loads(await socket.recv())["type"] == "welcome"
                if expected is None:
                    error = json.loads(await socket.recv())
                    assert error["code"] == "invalid_customer_signature"
                await socket.send(
                    json.dumps({"type": "message", "client_id": str(index), "text": "hi"})
                )
                assert json.loads(await socket.recv())["type"] == "ack"
            assert sink.envelopes[-1].vouched_customer == expected
