"""Fax against the public conformance kit, behind both webhook gateways: Sinch (Basic
credentials in the webhook URL) and Telnyx (Ed25519-signed webhooks), with the loopback
providers of tests/fake_fax.py for documents and sends. OCR is off: the kit checks the
contract, tests/test_fax.py the documents."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fpdf import FPDF

from connectors.base import ConnectorSettings
from connectors.fax import FaxConnector
from connectors.fax.settings import FaxSettings
from connectors.testing import ConnectorConformance, Harness, Hostile
from hub.envelope import Identity, Outbound
from tests.fake_fax import (
    CONNECTION,
    CUSTOMER,
    HOOK_PASSWORD,
    HOOK_USER,
    KEY_ID,
    KEY_SECRET,
    OUR_NUMBER,
    PROJECT,
    TELNYX_KEY,
    FakeSinch,
    FakeTelnyx,
    basic,
    fake_sinch,
    fake_telnyx,
    sinch_fax,
    sinch_webhook,
    telnyx_webhook,
)

PUBLIC = "https://hub.example.com"
WEBHOOK = "/channels/fax/webhook"
MAX_DOCUMENT = 200_000


def _pdf(text: str) -> bytes:
    document = FPDF()
    document.add_page()
    document.set_font("Helvetica", size=14)
    document.cell(text=text)
    return bytes(document.output())


def _settings(gateway: str, block: dict[str, Any]) -> ConnectorSettings:
    return FaxSettings.model_validate(
        {
            "gateway": gateway,
            "number": OUR_NUMBER,
            gateway: block,
            "public_url": PUBLIC,
            "ocr": {"enabled": False, "workers": 0},
            "max_document_bytes": MAX_DOCUMENT,
        }
    )


# -- Sinch -------------------------------------------------------------------------------------


def _sinch_id(key: str) -> str:
    return "01" + uuid.uuid5(uuid.NAMESPACE_URL, key).hex[:24].upper()


async def _sinch(
    harness: Harness,
    *,
    event: str = "INCOMING_FAX",
    document: bytes | None = None,
    authorization: str | None = None,
) -> int:
    status, _ = await sinch_webhook(
        harness.http,
        harness.url + WEBHOOK,
        event,
        sinch_fax(),
        document if document is not None else _pdf("hostile"),
        authorization=authorization,
    )
    return status


async def _sinch_form(harness: Harness) -> int:
    async with harness.http.post(
        harness.url + WEBHOOK,
        data=b"event=INCOMING_FAX",
        headers={"Authorization": basic(), "Content-Type": "application/x-www-form-urlencoded"},
    ) as answer:
        return answer.status


class TestSinchFaxConformance(ConnectorConformance):
    connector_class = FaxConnector
    entry_point = "fax"
    instance = "fax"
    public_url = PUBLIC
    fake: FakeSinch

    @asynccontextmanager
    async def environment(self) -> AsyncIterator[None]:
        async with fake_sinch() as self.fake:
            yield

    def settings(self) -> ConnectorSettings:
        return _settings(
            "sinch",
            {
                "project_id": PROJECT,
                "key_id": KEY_ID,
                "key_secret": KEY_SECRET,
                "webhook_username": HOOK_USER,
                "webhook_password": HOOK_PASSWORD,
                "api_base_url": self.fake.url,
                "send_timeout": 10,
            },
        )

    async def deliver(self, harness: Harness, key: str) -> bool:
        status, _ = await sinch_webhook(
            harness.http,
            harness.url + WEBHOOK,
            "INCOMING_FAX",
            sinch_fax(_sinch_id(key)),
            _pdf(f"sample {key}"),
        )
        return status == 200

    def hostile(self) -> list[Hostile]:
        return [
            Hostile("no webhook credentials", lambda h: _sinch(h, authorization="")),
            Hostile(
                "the wrong webhook password",
                lambda h: _sinch(h, authorization=basic(HOOK_USER, "not-the-password-at-all")),
            ),
            Hostile("a form body instead of multipart or JSON", _sinch_form),
            Hostile(
                "a document over max_document_bytes",
                lambda h: _sinch(h, document=b"%PDF-1.4\n" + b"0" * (MAX_DOCUMENT + 1)),
            ),
            Hostile("an unknown event", lambda h: _sinch(h, event="SOMETHING_ELSE")),
        ]

    def recipient(self) -> Identity:
        return Identity(kind="fax", address=CUSTOMER)

    async def fail_next_send(self, harness: Harness, outbound: Outbound) -> Outbound:
        self.fake.script.append((500, {"code": 500, "message": "internal error"}))
        return outbound


# -- Telnyx ------------------------------------------------------------------------------------


async def _telnyx_raw(harness: Harness, body: bytes, headers: dict[str, str]) -> int:
    async with harness.http.post(harness.url + WEBHOOK, data=body, headers=headers) as answer:
        return answer.status


class TestTelnyxFaxConformance(ConnectorConformance):
    connector_class = FaxConnector
    entry_point = "fax"
    instance = "fax"
    public_url = PUBLIC
    fake: FakeTelnyx

    @asynccontextmanager
    async def environment(self) -> AsyncIterator[None]:
        async with fake_telnyx() as self.fake:
            yield

    def settings(self) -> ConnectorSettings:
        return _settings(
            "telnyx",
            {
                "api_key": TELNYX_KEY,
                "public_key": self.fake.public_key,
                "connection_id": CONNECTION,
                "api_base_url": self.fake.url,
                "media_hosts": ["127.0.0.1"],
                "media_allow_private": True,
                "send_timeout": 10,
            },
        )

    async def started(self, harness: Harness) -> None:
        # Telnyx fetches an outbound fax from the hub's public URL: here, the served one
        self.fake.public = (PUBLIC, harness.url)

    def _received(self, key: str = "hostile") -> bytes:
        media = self.fake.host_media(_pdf(f"sample {key}"))
        fax_id = str(uuid.uuid5(uuid.NAMESPACE_URL, key))
        return json.dumps(self.fake.received_event(media, fax_id=fax_id)).encode()

    async def deliver(self, harness: Harness, key: str) -> bool:
        event = json.loads(self._received(key))
        status, _ = await telnyx_webhook(harness.http, harness.url + WEBHOOK, self.fake, event)
        return status == 200

    async def _forged(self, harness: Harness) -> int:
        body = self._received()
        forger = FakeTelnyx(key=Ed25519PrivateKey.generate())
        return await _telnyx_raw(harness, body, forger.sign(body))

    async def _stale(self, harness: Harness) -> int:
        body = self._received()
        return await _telnyx_raw(harness, body, self.fake.sign(body, int(time.time()) - 3600))

    async def _unsigned(self, harness: Harness) -> int:
        return await _telnyx_raw(harness, self._received(), {"Content-Type": "application/json"})

    async def _wrong_type(self, harness: Harness) -> int:
        body = self._received()
        return await _telnyx_raw(
            harness, body, {**self.fake.sign(body), "Content-Type": "text/plain"}
        )

    async def _oversize(self, harness: Harness) -> int:
        event = json.loads(self._received())
        event["data"]["payload"]["padding"] = "x" * 300_000
        body = json.dumps(event).encode()
        return await _telnyx_raw(harness, body, self.fake.sign(body))

    def hostile(self) -> list[Hostile]:
        return [
            Hostile("no signature", self._unsigned),
            Hostile("signed by another key", self._forged),
            Hostile("a signature an hour old", self._stale),
            Hostile("text/plain instead of JSON", self._wrong_type),
            Hostile("a body over 256 KiB", self._oversize),
        ]

    def recipient(self) -> Identity:
        return Identity(kind="fax", address=CUSTOMER)

    async def fail_next_send(self, harness: Harness, outbound: Outbound) -> Outbound:
        self.fake.lose_answers = 1  # Telnyx answers 504: the send must not look successful
        return outbound
