"""The Echo connector's tests: the pure parser table-driven, the connector through the public
conformance kit against a loopback Echo API, and its entry point.

Run them from this folder with ``pytest`` once the package is installed
(``pip install -e .``); channelhub's own suite runs them from its checkout without installing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import tomllib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from echo_connector import EchoConnector, EchoSettings, parse

from connectors.base import ConnectorSettings, SendError
from connectors.testing import (
    ConnectorConformance,
    Harness,
    Hostile,
    check_connector_class,
    connector_context,
)
from hub.envelope import DeliveryStatus, Identity, Outbound

SECRET = "echo-webhook-secret-0123456789"
TOKEN = "echo-api-token"
INSTANCE = "echo"
INBOUND = f"/channels/{INSTANCE}/inbound"
MAX_BODY = 4096
PROJECT = Path(__file__).resolve().parent.parent

# -- the pure parser ---------------------------------------------------------------------------


def test_signature_round_trip() -> None:
    body = b'{"id": "1", "from": "ann", "text": "hi"}'
    signature = parse.sign(SECRET.encode(), body)
    assert parse.verify(SECRET.encode(), body, signature)
    assert not parse.verify(SECRET.encode(), body + b" ", signature)
    assert not parse.verify(b"another-secret-0123456789", body, signature)
    assert not parse.verify(SECRET.encode(), body, None)


def test_envelope_of_a_webhook() -> None:
    body = b'{"id": "m1", "from": "ann", "text": "Where is my order?"}'
    envelope = parse.to_envelope(body, inbox="echo", received_at=1_800_000_000.0)
    assert (envelope.channel, envelope.inbox, envelope.text) == (
        "echo",
        "echo",
        "Where is my order?",
    )
    assert envelope.idempotency_key == "echo:echo:m1"
    assert envelope.sender == Identity(kind="echo", address="ann")
    assert envelope.thread.session == "ann"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{not json", "not an Echo message"),
        (b'{"from": "ann"}', "not an Echo message"),
        (b'{"id": "", "from": "ann"}', "id must be"),
        (b'{"id": "1", "from": ""}', "from must be"),
        (json.dumps({"id": "1", "from": "a", "text": "x" * 10_001}).encode(), "text is over"),
    ],
)
def test_malformed_webhooks_are_refused(body: bytes, says: str) -> None:
    with pytest.raises(parse.BadWebhook, match=says):
        parse.to_envelope(body, inbox="echo", received_at=0.0)


@pytest.mark.parametrize(
    ("status", "body", "retryable"),
    [(400, b'{"error": "bad to"}', False), (429, b"", True), (503, b"<html>", True)],
)
def test_send_failures_are_typed(status: int, body: bytes, retryable: bool) -> None:
    with pytest.raises(SendError) as failure:
        parse.delivery(status, body)
    assert failure.value.retryable is retryable


def test_a_send_is_a_delivery() -> None:
    delivery = parse.delivery(201, b'{"id": "out-1"}')
    assert (delivery.status, delivery.provider_id) == (DeliveryStatus.SENT, "out-1")


# -- a loopback Echo API -----------------------------------------------------------------------


@dataclass
class FakeEcho:
    url: str = ""
    sent: list[dict[str, Any]] = field(default_factory=list)
    fail_next: int | None = None  # answer the next send with this status

    async def messages(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"error": "unauthorized"}, status=401)
        if self.fail_next is not None:
            status, self.fail_next = self.fail_next, None
            return web.json_response({"error": "internal error"}, status=status)
        self.sent.append({**await request.json(), "key": request.headers["Idempotency-Key"]})
        return web.json_response({"id": f"out-{len(self.sent)}"}, status=201)


@asynccontextmanager
async def fake_echo() -> AsyncIterator[FakeEcho]:
    fake = FakeEcho()
    app = web.Application()
    app.router.add_post("/v1/messages", fake.messages)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    fake.url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        await runner.cleanup()


async def post(
    harness: Harness,
    body: bytes,
    *,
    secret: str | None = SECRET,
    content_type: str = "application/json",
) -> int:
    """POST ``body`` to the instance's webhook as the provider does (signed unless None)."""
    headers = {"Content-Type": content_type}
    if secret is not None:
        headers["X-Echo-Signature"] = parse.sign(secret.encode(), body)
    async with harness.http.post(harness.url + INBOUND, data=body, headers=headers) as answer:
        return answer.status


def sample(key: str, **extra: Any) -> bytes:
    """One inbound message; the same ``key`` is the same provider message id."""
    message_id = hashlib.sha256(key.encode()).hexdigest()[:20]
    return json.dumps({"id": message_id, "from": "ann", "text": f"sample {key}", **extra}).encode()


# -- the conformance kit -----------------------------------------------------------------------


class TestEchoConformance(ConnectorConformance):
    connector_class = EchoConnector
    instance = INSTANCE
    # entry_point = "echo" would also check the registration; that needs the package
    # installed, so test_registered_when_installed does it (skipped in a bare checkout)
    fake: FakeEcho

    @asynccontextmanager
    async def environment(self) -> AsyncIterator[None]:
        async with fake_echo() as self.fake:
            yield

    def settings(self) -> ConnectorSettings:
        return EchoSettings.model_validate(
            {
                "api_url": self.fake.url,
                "api_token": TOKEN,
                "webhook_secret": SECRET,
                "max_body_bytes": MAX_BODY,
            }
        )

    async def deliver(self, harness: Harness, key: str) -> bool:
        return await post(harness, sample(key)) == 200

    def hostile(self) -> list[Hostile]:
        return [
            Hostile("no signature", lambda h: post(h, sample("x"), secret=None)),
            Hostile(
                "signed with another secret",
                lambda h: post(h, sample("x"), secret="not-the-webhook-secret"),
            ),
            Hostile(
                "a body over max_body_bytes", lambda h: post(h, sample("x", pad="y" * MAX_BODY))
            ),
            Hostile(
                "a form instead of JSON",
                lambda h: post(h, b"id=1", content_type="application/x-www-form-urlencoded"),
            ),
            Hostile("signed, but not an Echo message", lambda h: post(h, b'{"hello": 1}')),
        ]

    def recipient(self) -> Identity:
        return Identity(kind="echo", address="ann")

    async def fail_next_send(self, harness: Harness, outbound: Outbound) -> Outbound:
        self.fake.fail_next = 500
        return outbound


def test_a_reply_carries_its_idempotency_key() -> None:
    """Beyond the kit: your channel's own promises, tested with the same fakes."""

    async def check() -> None:
        async with fake_echo() as fake:
            connector = EchoConnector(
                INSTANCE,
                EchoSettings.model_validate(
                    {"api_url": fake.url, "api_token": TOKEN, "webhook_secret": SECRET}
                ),
            )
            async with connector_context(INSTANCE) as ctx:
                await connector.start(ctx)
                reply = Outbound(
                    message_id="m1",
                    conversation_id="c1",
                    inbox=INSTANCE,
                    idempotency_key="reply-1",
                    recipient=Identity(kind="echo", address="ann"),
                    text="It ships today.",
                )
                delivery = await connector.send(reply)
                await connector.stop()
        assert delivery.provider_id == "out-1"
        assert fake.sent == [{"to": "ann", "text": "It ships today.", "key": "reply-1"}]

    asyncio.run(check())


# -- the entry point ---------------------------------------------------------------------------


def test_entry_point_is_declared() -> None:
    """pyproject.toml registers the class under ``echo``, the ``type`` of hub.yaml."""
    project = tomllib.loads((PROJECT / "pyproject.toml").read_text())
    declared = project["project"]["entry-points"]["channelhub.connectors"]
    entry = EntryPoint(name="echo", value=declared["echo"], group="channelhub.connectors")
    assert entry.load() is EchoConnector


def test_registered_when_installed() -> None:
    try:
        distribution("channelhub-echo")
    except PackageNotFoundError:
        pytest.skip("install the example (pip install -e examples/echo_connector) to check this")
    check_connector_class(EchoConnector, type_name="echo")
