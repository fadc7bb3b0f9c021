"""Twilio's voice webhooks as the tests post them: fields as Twilio sends them, signed."""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from tests.conftest import _HASH, make_settings
from tests.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, FakeTwilio, post_signed

PUBLIC = "https://hub.example.com"
CALLER = "+4915112345678"
ALICE_PHONE = "+4930111111"
BOB_SIP = "sip:bob@pbx.example.com"


def call_sid() -> str:
    return "CA" + secrets.token_hex(16)


def call_fields(sid: str, caller: str = CALLER, **extra: str) -> dict[str, str]:
    """The fields of Twilio's voice webhook for a call coming in."""
    fields = {
        "AccountSid": ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "CallSid": sid,
        "CallStatus": "ringing",
        "Called": FROM_NUMBER,
        "CalledCountry": "DE",
        "Caller": caller,
        "CallerCountry": "DE",
        "Direction": "inbound",
        "From": caller,
        "FromCity": "",
        "FromCountry": "DE",
        "To": FROM_NUMBER,
        "ToCountry": "DE",
    }
    fields.update(extra)
    return fields


def voice_settings(
    store_url: str,
    root: Path,
    fake: FakeTwilio,
    agents: list[dict[str, Any]] | None = None,
    hub: dict[str, Any] | None = None,
    **extra: Any,
) -> Any:
    """Hub settings with one voice instance named ``voice`` (``extra``: its settings;
    ``hub``: top-level keys of hub.yaml)."""
    settings: dict[str, Any] = {
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "from": FROM_NUMBER,
        "public_url": PUBLIC,
        "api_base_url": fake.url,
        "media_hosts": ["127.0.0.1"],
        "media_allow_private": True,
        "send_timeout": 2,
        "country_languages": {"DE": "de-DE"},
        "greeting": {"en-US": "Thank you for calling.", "de-DE": "Danke für Ihren Anruf."},
        "hold_message": {
            "en-US": "You are number {position}.",
            "de-DE": "Sie sind Nummer {position}.",
        },
        "transcribe": True,
        "max_wait": 120,
    }
    settings.update(extra)
    return make_settings(
        store_url,
        root,
        channels=[{"name": "voice", "type": "voice", "settings": settings}],
        agents=agents
        or [
            {"id": "alice", "name": "Alice", "password_hash": _HASH, "phone": ALICE_PHONE},
            {"id": "bob", "name": "Bob", "password_hash": _HASH, "phone": BOB_SIP},
        ],
        **(hub or {}),
    )


async def post(
    session: aiohttp.ClientSession, hub: Any, path: str, fields: dict[str, str]
) -> tuple[int, str]:
    """POST a signed webhook to ``/channels/voice{path}`` (path may carry a query)."""
    return await post_signed(session, hub.url, PUBLIC, f"/channels/voice{path}", fields)


def twiml(text: str) -> ET.Element:
    root = ET.fromstring(text)
    assert root.tag == "Response", text
    return root


def local(url: str) -> str:
    """The path and query of one of our URLs in a TwiML answer (to post to it)."""
    parts = urlsplit(url)
    assert url.startswith(PUBLIC + "/channels/voice/"), url
    return parts.path.removeprefix("/channels/voice") + (f"?{parts.query}" if parts.query else "")
