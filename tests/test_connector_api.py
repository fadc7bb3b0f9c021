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


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in ``path``; ``from connectors import x`` counts as
    ``connectors.x``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.level:
                found.append((node.lineno, "." * node.level + node.module))
            elif node.module in ("connectors", "hub", "rules"):
                found.extend((node.lineno, f"{node.module}.{a.name}") for a in node.names)
            else:
                found.append((node.lineno, node.module))
    return found


def _allowed(package: str, name: str) -> bool:
    """What a module of ``connectors/<package>`` may import from this project: the plugin API
    (connectors.base and the data model hub.envelope), the shared helpers, its own package;
    the testing kit is part of the plugin API too."""
    top = name.split(".", 1)[0]
    if top not in ("connectors", "hub", "rules"):
        return True  # the standard library and third-party packages
    if name in ("connectors.base", "hub.envelope"):
        return True
    if name == "connectors.shared" or name.startswith("connectors.shared."):
        return True
    own = f"connectors.{package}"
    return bool(package) and (name == own or name.startswith(own + "."))


def test_connectors_import_only_the_plugin_api_and_shared_helpers() -> None:
    """A connector imports connectors.base, hub.envelope, connectors.shared.* and its own
    package: never the hub's runtime, the rules, or a sibling connector (what two connectors
    need lives in connectors/shared/). The shared helpers import no connector."""
    offenders = []
    checked = 0
    for path in sorted((ROOT / "connectors").rglob("*.py")):
        parts = path.relative_to(ROOT / "connectors").parts
        package = parts[0] if len(parts) > 1 else ""
        for line, name in _imports(path):
            checked += 1
            if name.startswith("."):
                offenders.append(f"{path.relative_to(ROOT)}:{line}: relative import {name}")
            elif not _allowed(package, name):
                offenders.append(f"{path.relative_to(ROOT)}:{line}: {name}")
    assert checked > 300
    assert offenders == []


def test_every_connector_has_the_same_shape() -> None:
    """settings.py, parse.py (pure), client.py (the provider's I/O), connector.py, and a docs
    page, for every built-in connector."""
    connectors = sorted(
        path.name
        for path in (ROOT / "connectors").iterdir()
        if (path / "__init__.py").exists() and path.name not in ("shared", "testing")
    )
    assert connectors == ["email", "fax", "sms", "voice", "webchat"]
    for name in connectors:
        for module in ("settings.py", "parse.py", "client.py", "connector.py"):
            assert (ROOT / "connectors" / name / module).exists(), f"connectors/{name}/{module}"
        assert (ROOT / "docs" / f"{name}.md").exists(), f"docs/{name}.md"


PURE = (
    "connectors/email/compose.py",
    "connectors/fax/formdata.py",
    "connectors/shared/basic_auth.py",
    "connectors/shared/fetch_policy.py",
    "connectors/shared/mail/charsets.py",
    "connectors/shared/mail/headers.py",
    "connectors/shared/mail/markup.py",
    "connectors/shared/mail/message_ids.py",
    "connectors/shared/mail/mime.py",
    "connectors/shared/mail/reader.py",
    "connectors/shared/mail/structure.py",
    "connectors/shared/media_links.py",
    "connectors/shared/rate_limit.py",
    "connectors/shared/signed_tokens.py",
    "connectors/sms/segments.py",
    "connectors/voice/twiml.py",
)


@pytest.mark.parametrize(
    "module",
    sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / "connectors").rglob("parse*.py")
        if "testing" not in path.parts
    )
    + list(PURE),
)
def test_parse_modules_do_no_io(module: str) -> None:
    """Every connector's parse*.py and the other pure modules await nothing and import no
    network, process, clock or randomness module."""
    tree = ast.parse((ROOT / module).read_text())
    awaits = [
        node.lineno for node in ast.walk(tree) if isinstance(node, ast.Await | ast.AsyncFunctionDef)
    ]
    assert awaits == [], f"{module} awaits at lines {awaits}"
    forbidden = {
        "aiohttp",
        "asyncio",
        "socket",
        "subprocess",
        "time",
        "random",
        "os",
        "aiosmtplib",
        "aioimaplib",
    }
    imported = {name.split(".", 1)[0] for _, name in _imports(ROOT / module)}
    assert imported & forbidden == set(), f"{module} imports {sorted(imported & forbidden)}"


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
