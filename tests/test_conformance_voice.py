"""Voice against the public conformance kit: Twilio's signed voice webhooks in, the loopback
Twilio (tests/fake_twilio.py, Voice API) for a text reply read to the customer."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlencode

from connectors.base import ConnectorSettings
from connectors.testing import ConnectorConformance, Harness, Hostile
from connectors.voice import VoiceConnector
from connectors.voice.settings import VoiceSettings
from hub.envelope import Identity, Outbound
from tests.fake_twilio import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    FROM_NUMBER,
    FakeTwilio,
    fake_twilio,
    post_signed,
    signature,
)
from tests.voice_helpers import call_fields

PUBLIC = "https://hub.example.com"
INBOUND = "/channels/voice/voice"
MAX_BODY = 4096


def _sid(key: str) -> str:
    """A CallSid per sample key: the same key is the same call, its webhook retried."""
    return "CA" + hashlib.sha256(key.encode()).hexdigest()[:32]


async def _post(
    harness: Harness, fields: dict[str, str], token: str | None = AUTH_TOKEN, kind: str = ""
) -> int:
    headers = {"Content-Type": kind or "application/x-www-form-urlencoded"}
    if token is not None:
        headers["X-Twilio-Signature"] = signature(PUBLIC + INBOUND, fields, token)
    async with harness.http.post(
        harness.url + INBOUND, data=urlencode(fields).encode(), headers=headers
    ) as answer:
        return answer.status


class TestVoiceConformance(ConnectorConformance):
    connector_class = VoiceConnector
    entry_point = "voice"
    instance = "voice"
    public_url = PUBLIC
    fake: FakeTwilio

    @asynccontextmanager
    async def environment(self) -> AsyncIterator[None]:
        async with fake_twilio() as self.fake:
            yield

    def settings(self) -> ConnectorSettings:
        return VoiceSettings.model_validate(
            {
                "account_sid": ACCOUNT_SID,
                "auth_token": AUTH_TOKEN,
                "from": FROM_NUMBER,
                "public_url": PUBLIC,
                "api_base_url": self.fake.url,
                "send_timeout": 5,
                "max_body_bytes": MAX_BODY,
            }
        )

    async def deliver(self, harness: Harness, key: str) -> bool:
        fields = call_fields(_sid(key))
        status, _ = await post_signed(harness.http, harness.url, PUBLIC, INBOUND, fields)
        return status == 200

    def hostile(self) -> list[Hostile]:
        def fields() -> dict[str, str]:
            return call_fields(_sid("hostile"))

        return [
            Hostile("no X-Twilio-Signature", lambda h: _post(h, fields(), None)),
            Hostile(
                "signed with another auth token",
                lambda h: _post(h, fields(), "not-" + AUTH_TOKEN),
            ),
            Hostile(
                "signed, but another account's call",
                lambda h: _post(h, {**fields(), "AccountSid": "AC" + "9" * 32}),
            ),
            Hostile(
                "signed, without a CallSid",
                lambda h: _post(h, {k: v for k, v in fields().items() if k != "CallSid"}),
            ),
            Hostile(
                "signed, an outbound call's webhook",
                lambda h: _post(h, {**fields(), "Direction": "outbound-api"}),
            ),
            Hostile(
                "a body over max_body_bytes",
                lambda h: _post(h, {**fields(), "CallerName": "x" * MAX_BODY}),
            ),
            Hostile(
                "text/plain instead of a form", lambda h: _post(h, fields(), kind="text/plain")
            ),
        ]

    def recipient(self) -> Identity:
        return Identity(kind="phone", address="+4915112345678")

    async def fail_next_send(self, harness: Harness, outbound: Outbound) -> Outbound:
        self.fake.voice.script.append((500, 20500, "Internal Server Error"))
        return outbound
