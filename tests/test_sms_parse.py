"""The SMS connector's pure parts on recorded Twilio payloads, plus its webhook checks served
alone (connectors.testing), including the JSON-body variant of Twilio's signature."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs

import aiohttp
import pytest
from twilio.request_validator import RequestValidator

from connectors.sms import parse, segments
from connectors.sms.connector import SmsConnector
from connectors.sms.settings import SmsSettings
from connectors.testing import (
    CollectingSink,
    check_connector_class,
    check_routes,
    connector_context,
    served,
)
from hub.envelope import DeliveryStatus, Identity

ACCOUNT = "AC" + "1" * 32
PAYLOADS = Path(__file__).parent / "payloads" / "sms"


def fields(name: str) -> dict[str, list[str]]:
    return parse_qs((PAYLOADS / name).read_text(), keep_blank_values=True)


def test_connector_follows_the_plugin_contract() -> None:
    check_connector_class(SmsConnector, type_name="sms")
    settings = SmsSettings.model_validate(
        {"account_sid": ACCOUNT, "auth_token": "t", "from": "+4930901820"}
    )
    paths = {route.path for route in check_routes(SmsConnector("sms", settings))}
    assert paths == {"/inbound", "/status", "/media/{token}"}


def test_settings_need_a_sender() -> None:
    with pytest.raises(ValueError, match="messaging_service_sid"):
        SmsSettings.model_validate({"account_sid": ACCOUNT, "auth_token": "t"})


def test_recorded_sms() -> None:
    inbound = parse.parse_inbound(
        fields("sms_inbound.txt"), inbox="sms", account_sid=ACCOUNT, received_at=1.0, max_media=10
    )
    envelope = inbound.envelope
    assert envelope.channel == "sms"
    assert envelope.sender == Identity(kind="phone", address="+4915112345678")
    assert envelope.text == "Hallo, wo bleibt meine Bestellung #4711?"
    assert envelope.idempotency_key == "twilio:SM1c2a3b4c5d6e7f8091a2b3c4d5e6f708"
    assert envelope.thread.session == "+4915112345678"
    assert envelope.recipients[0].address == "+14155550100"
    # fields we do not map are kept (Twilio adds fields without notice)
    assert envelope.metadata["MessagingServiceSid"] == "MG9752274e9e519418a7406176694466fa"
    assert envelope.metadata["ToCity"] == "SAN FRANCISCO"
    assert "Body" not in envelope.metadata and inbound.media == () and inbound.keyword is None


def test_recorded_whatsapp_location() -> None:
    envelope = parse.parse_inbound(
        fields("whatsapp_location.txt"),
        inbox="sms",
        account_sid=ACCOUNT,
        received_at=1.0,
        max_media=10,
    ).envelope
    assert envelope.channel == "whatsapp"
    assert envelope.sender == Identity(
        kind="whatsapp", address="+4915112345678", display_name="Carla Müller"
    )
    assert envelope.metadata["location"]["label"] == "Filiale Mitte"
    assert envelope.text == "Location: 52.520008, 13.404954 Filiale Mitte"
    assert envelope.metadata["WaId"] == "4915112345678"
    assert envelope.metadata["ChannelMetadata"] == '{"type":"whatsapp"}'


def test_recorded_mms_and_media_cap() -> None:
    inbound = parse.parse_inbound(
        fields("mms_inbound.txt"), inbox="sms", account_sid=ACCOUNT, received_at=1.0, max_media=1
    )
    assert [m.content_type for m in inbound.media] == ["image/jpeg"]
    assert inbound.media[0].url.startswith("https://api.twilio.com/2010-04-01/Accounts/")
    assert inbound.envelope.metadata["media_dropped"] == 1


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"MessageSid": [""], "SmsMessageSid": [""]}, "MessageSid"),
        ({"MessageSid": ["SM<script>"], "SmsMessageSid": [""]}, "MessageSid"),
        ({"AccountSid": ["AC" + "2" * 32]}, "AccountSid"),
        ({"From": [""]}, "From"),
        ({"NumMedia": ["lots"]}, "NumMedia"),
    ],
)
def test_bad_webhooks_are_refused(change: dict[str, list[str]], reason: str) -> None:
    with pytest.raises(parse.BadWebhook, match=reason):
        parse.parse_inbound(
            {**fields("sms_inbound.txt"), **change},
            inbox="sms",
            account_sid=ACCOUNT,
            received_at=1.0,
            max_media=10,
        )


def test_status_report_with_error_code() -> None:
    sid, delivery = parse.status_report(fields("status_undelivered.txt"))
    assert sid == "SM99999999999999999999999999999999"
    assert delivery.status is DeliveryStatus.UNDELIVERED
    assert delivery.error_code == "30003" and "unreachable" in (delivery.error_message or "")
    with pytest.raises(parse.BadWebhook):
        parse.status_report({"MessageSid": ["SM1"], "MessageStatus": ["exploded"]})


@pytest.mark.parametrize(
    ("body", "opt_out_type", "expected"),
    [
        ("STOP", None, "stop"),
        (" stop! ", None, "stop"),
        ("Unsubscribe", None, "stop"),
        ("START", None, "start"),
        ("help", None, "help"),
        ("please stop sending me offers", None, None),
        ("Stopp", "STOP", "stop"),  # Advanced Opt-Out recognised a custom keyword
        ("", None, None),
    ],
)
def test_keywords(body: str, opt_out_type: str | None, expected: str | None) -> None:
    assert parse.keyword(body, opt_out_type) == expected


@pytest.mark.parametrize(
    ("text", "encoding", "count"),
    [
        ("", "GSM-7", 0),
        ("a" * 160, "GSM-7", 1),
        ("a" * 161, "GSM-7", 2),
        ("a" * 306, "GSM-7", 2),
        ("a" * 307, "GSM-7", 3),
        ("€" * 80, "GSM-7", 1),  # extension characters count twice
        ("€" * 81, "GSM-7", 2),
        ("a" * 152 + "€", "GSM-7", 1),  # 154 units: one part, still under 160
        ("a" * 159 + "€", "GSM-7", 2),  # the escape pair is never split across parts
        ("ä" * 160, "GSM-7", 1),
        ("ł" * 70, "UCS-2", 1),
        ("ł" * 71, "UCS-2", 2),
        ("😀" * 35, "UCS-2", 1),  # an emoji is two UTF-16 units
        ("😀" * 36, "UCS-2", 2),
        ("a" * 66 + "😀" + "a" * 10, "UCS-2", 2),
    ],
)
def test_segments(text: str, encoding: str, count: int) -> None:
    result = segments.segments(text)
    assert (result["encoding"], result["segments"]) == (encoding, count)


async def test_json_webhooks_are_checked_by_body_hash() -> None:
    """Twilio signs JSON bodies over the URL, whose bodySHA256 parameter hashes the body."""
    settings = SmsSettings.model_validate(
        {
            "account_sid": ACCOUNT,
            "auth_token": "json-token",
            "from": "+4930901820",
            "public_url": "https://hub.example.com",
            "max_body_bytes": 1024 * 1024,
        }
    )
    connector = SmsConnector("sms", settings)
    sink = CollectingSink()
    body = json.dumps(
        {
            "MessageSid": "SM" + "7" * 32,
            "AccountSid": ACCOUNT,
            "From": "+4915112345678",
            "To": "+4930901820",
            "Body": "per JSON",
            "NumMedia": "0",
        }
    )
    digest = hashlib.sha256(body.encode()).hexdigest()
    path = f"/channels/sms/inbound?bodySHA256={digest}"
    validator = RequestValidator("json-token")
    signed = validator.compute_signature("https://hub.example.com" + path, {})
    async with (
        connector_context("sms", sink=sink) as ctx,
        served(connector) as url,
        aiohttp.ClientSession() as session,
    ):
        await connector.start(ctx)
        headers = {"Content-Type": "application/json", "X-Twilio-Signature": signed}
        async with session.post(url + path, data=body, headers=headers) as response:
            assert response.status == 200
            assert response.content_type == "text/xml"
        tampered = body.replace("per JSON", "tampered")
        async with session.post(url + path, data=tampered, headers=headers) as response:
            assert response.status == 403
        unsigned_path = "/channels/sms/inbound"
        signed_plain = validator.compute_signature("https://hub.example.com" + unsigned_path, {})
        async with session.post(
            url + unsigned_path,
            data=body,
            headers={"Content-Type": "application/json", "X-Twilio-Signature": signed_plain},
        ) as response:
            assert response.status == 403
        # a store failure answers 503 so Twilio retries, and nothing is acknowledged
        sink.fail_next = RuntimeError("disk full")
        other = body.replace("7" * 32, "8" * 32)
        other_path = (
            f"/channels/sms/inbound?bodySHA256={hashlib.sha256(other.encode()).hexdigest()}"
        )
        other_signed = validator.compute_signature("https://hub.example.com" + other_path, {})
        other_headers = {"Content-Type": "application/json", "X-Twilio-Signature": other_signed}
        async with session.post(url + other_path, data=other, headers=other_headers) as response:
            assert response.status == 503
        async with session.post(url + other_path, data=other, headers=other_headers) as response:
            assert response.status == 200
        # signed, but nested 100,000 deep: 400, not 500 (issue 14's hostile pass)
        deep = "[" * 100_000 + "]" * 100_000
        deep_path = f"/channels/sms/inbound?bodySHA256={hashlib.sha256(deep.encode()).hexdigest()}"
        deep_headers = {
            "Content-Type": "application/json",
            "X-Twilio-Signature": validator.compute_signature(
                "https://hub.example.com" + deep_path, {}
            ),
        }
        async with session.post(url + deep_path, data=deep, headers=deep_headers) as response:
            assert response.status == 400
        # a large signed body sent in small pieces is read to its end
        padded = body[:-1] + ', "Padding": "' + "x" * 200_000 + '"}'
        padded = padded.replace("7" * 32, "9" * 32)
        padded_path = (
            f"/channels/sms/inbound?bodySHA256={hashlib.sha256(padded.encode()).hexdigest()}"
        )
        padded_headers = {
            "Content-Type": "application/json",
            "X-Twilio-Signature": validator.compute_signature(
                "https://hub.example.com" + padded_path, {}
            ),
        }

        async def trickle() -> AsyncIterator[bytes]:
            data = padded.encode()
            for start in range(0, len(data), 4096):
                yield data[start : start + 4096]
                await asyncio.sleep(0)

        async with session.post(
            url + padded_path, data=trickle(), headers=padded_headers
        ) as response:
            assert response.status == 200, await response.text()
    assert [e.text for e in sink.envelopes] == ["per JSON", "per JSON", "per JSON"]
    assert sink.envelopes[1].idempotency_key == "twilio:SM" + "8" * 32


async def test_api_base_url_is_the_sdk_domain_base() -> None:
    """api_base_url replaces Twilio's API host through the SDK's own domain base URL; a path
    (SignalWire's /api/laml) is kept, a trailing slash is not doubled."""
    from connectors.sms.client import TwilioSender

    uri = "/2010-04-01/Accounts/AC1/Messages.json"
    cases = [
        ("https://api.twilio.com", "https://api.twilio.com" + uri),
        ("http://127.0.0.1:9/", "http://127.0.0.1:9" + uri),
        ("https://space.signalwire.com/api/laml", "https://space.signalwire.com/api/laml" + uri),
    ]
    async with aiohttp.ClientSession() as session:
        for base, expected in cases:
            sender = TwilioSender("AC1", "token", base_url=base, session=session, timeout=5.0)
            assert sender.client.api.absolute_url(uri) == expected


async def test_replies_reach_a_base_url_with_a_path_through_the_shared_session() -> None:
    """A compatible provider under a path (SignalWire's /api/laml) gets the SDK's request, with
    Basic credentials, through the session the connector was given."""
    from aiohttp import web

    from connectors.shared.basic_auth import basic_authorization
    from connectors.sms.client import TwilioSender

    seen: list[tuple[str, str | None, dict[str, str]]] = []

    async def create(request: web.Request) -> web.Response:
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        seen.append((request.path, request.headers.get("Authorization"), form))
        return web.json_response(
            {"sid": "SM" + "1" * 32, "status": "queued", "body": form["Body"], "to": form["To"]},
            status=201,
        )

    app = web.Application()
    app.router.add_post("/api/laml/2010-04-01/Accounts/PJ1/Messages.json", create)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as session:
            sender = TwilioSender(
                "PJ1",
                "secret-token",
                base_url=f"http://127.0.0.1:{port}/api/laml/",
                session=session,
                timeout=5.0,
            )
            delivery = await sender.create(
                {"to": "+4915112345678", "from_": "+4930901820", "body": "hi"}
            )
            assert not session.closed
    finally:
        await runner.cleanup()
    assert (delivery.status, delivery.provider_id) == (DeliveryStatus.QUEUED, "SM" + "1" * 32)
    assert seen == [
        (
            "/api/laml/2010-04-01/Accounts/PJ1/Messages.json",
            basic_authorization("PJ1", "secret-token"),
            {"To": "+4915112345678", "From": "+4930901820", "Body": "hi"},
        )
    ]
