"""SMS against the public conformance kit: Twilio's signed webhooks in, the loopback Twilio
(tests/fake_twilio.py) for sends."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlencode

from connectors.base import ConnectorSettings
from connectors.sms import SmsConnector
from connectors.sms.settings import SmsSettings
from connectors.testing import ConnectorConformance, Harness, Hostile
from hub.envelope import Identity, Outbound
from tests.fake_twilio import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    FROM_NUMBER,
    FakeTwilio,
    fake_twilio,
    inbound_fields,
    post_signed,
    signature,
)

PUBLIC = "https://hub.example.com"
INBOUND = "/channels/sms/inbound"
MAX_BODY = 4096


def _sid(key: str) -> str:
    """A MessageSid per sample key: the same key is the same message, redelivered."""
    return "SM" + hashlib.sha256(key.encode()).hexdigest()[:32]


async def _post(
    harness: Harness, body: bytes, headers: dict[str, str], content_type: str | None = None
) -> int:
    kind = {"Content-Type": content_type or "application/x-www-form-urlencoded"}
    async with harness.http.post(
        harness.url + INBOUND, data=body, headers={**kind, **headers}
    ) as answer:
        return answer.status


async def _signed_as(harness: Harness, fields: dict[str, str], token: str) -> int:
    signed = signature(PUBLIC + INBOUND, fields, token)
    return await _post(harness, urlencode(fields).encode(), {"X-Twilio-Signature": signed})


async def _unsigned(harness: Harness) -> int:
    return await _post(harness, urlencode(inbound_fields()).encode(), {})


async def _oversize(harness: Harness) -> int:
    fields = inbound_fields(body="x" * (MAX_BODY + 1))
    return await _signed_as(harness, fields, AUTH_TOKEN)


async def _wrong_type(harness: Harness) -> int:
    fields = inbound_fields()
    signed = signature(PUBLIC + INBOUND, fields)
    return await _post(
        harness, b"Body=hello", {"X-Twilio-Signature": signed}, content_type="text/plain"
    )


class TestSmsConformance(ConnectorConformance):
    connector_class = SmsConnector
    entry_point = "sms"
    instance = "sms"
    public_url = PUBLIC
    fake: FakeTwilio

    @asynccontextmanager
    async def environment(self) -> AsyncIterator[None]:
        async with fake_twilio() as self.fake:
            yield

    def settings(self) -> ConnectorSettings:
        return SmsSettings.model_validate(
            {
                "account_sid": ACCOUNT_SID,
                "auth_token": AUTH_TOKEN,
                "from": FROM_NUMBER,
                "public_url": PUBLIC,
                "api_base_url": self.fake.url,
                "status_callbacks": False,
                "send_timeout": 5,
                "max_body_bytes": MAX_BODY,
            }
        )

    async def deliver(self, harness: Harness, key: str) -> bool:
        fields = inbound_fields(body=f"sample {key}", sid=_sid(key))
        status, _ = await post_signed(harness.http, harness.url, PUBLIC, INBOUND, fields)
        return status == 200

    def hostile(self) -> list[Hostile]:
        return [
            Hostile("no X-Twilio-Signature", _unsigned),
            Hostile(
                "signed with another auth token",
                lambda h: _signed_as(h, inbound_fields(), "not-" + AUTH_TOKEN),
            ),
            Hostile(
                "signed, but another account's message",
                lambda h: _signed_as(h, inbound_fields(AccountSid="AC" + "9" * 32), AUTH_TOKEN),
            ),
            Hostile("a body over max_body_bytes", _oversize),
            Hostile("text/plain instead of a form", _wrong_type),
        ]

    def recipient(self) -> Identity:
        return Identity(kind="phone", address="+4915112345678")

    async def fail_next_send(self, harness: Harness, outbound: Outbound) -> Outbound:
        self.fake.script.append((500, 20500, "Internal Server Error"))
        return outbound
