"""A loopback stand-in for Twilio's REST API and webhooks, in Twilio's wire format.

Messages: ``POST /2010-04-01/Accounts/{sid}/Messages.json`` (form fields, HTTP Basic auth,
201 with the message resource as JSON, error bodies ``{"code", "message", "more_info",
"status"}``) and ``GET`` of the same path (the list, filtered by To). Media: ``GET
/2010-04-01/Accounts/{sid}/Messages/{msid}/Media/{id}`` requires Basic auth; ``…/redirect`` answers
302 to a CDN path that must be fetched *without* credentials. Webhooks are signed with the SDK's
own ``RequestValidator``, as Twilio signs them.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator

ACCOUNT_SID = "AC" + "1" * 32
AUTH_TOKEN = "test-auth-token-0123456789abcdef"
SERVICE_SID = "MG" + "2" * 32
FROM_NUMBER = "+4930901820"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


@dataclass
class FakeTwilio:
    url: str = ""
    created: list[dict[str, str]] = field(default_factory=list)
    resources: list[dict[str, Any]] = field(default_factory=list)
    script: list[tuple[int, int, str]] = field(default_factory=list)  # status, code, message
    # while set, the answer to a create waits until this event is set (the message exists,
    # its answer is on its way): a test decides when a held answer arrives, or that it never does
    hold_answers: asyncio.Event | None = None
    media_hits: int = 0
    # (hub URL, public URL): report "sent" to the hub before answering the create, as a fast
    # provider can
    report_first: tuple[str, str] | None = None
    cdn_hits: int = 0
    cdn_saw_credentials: bool = False
    voice: Any = None  # tests.fake_twilio_voice.FakeVoice: the Voice API's calls

    def _auth_ok(self, request: web.Request) -> bool:
        expected = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
        return request.headers.get("Authorization") == expected

    @staticmethod
    def _error(status: int, code: int, message: str) -> web.Response:
        return web.json_response(
            {
                "code": code,
                "message": message,
                "more_info": f"https://www.twilio.com/docs/errors/{code}",
                "status": status,
            },
            status=status,
        )

    async def create(self, request: web.Request) -> web.Response:
        if not self._auth_ok(request) or request.match_info["sid"] != ACCOUNT_SID:
            return self._error(401, 20003, "Authenticate")
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        if self.script:
            status, code, message = self.script.pop(0)
            return self._error(status, code, message)
        if "To" not in form or not ("Body" in form or "ContentSid" in form or "MediaUrl" in form):
            return self._error(400, 21602, "Message body is required.")
        self.created.append(form)
        sid = "SM" + secrets.token_hex(16)
        now = formatdate(time.time(), usegmt=False).replace("-0000", "+0000")
        resource = {
            "account_sid": ACCOUNT_SID,
            "api_version": "2010-04-01",
            "body": form.get("Body", ""),
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"),
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "accepted" if "MessagingServiceSid" in form else "queued",
            "subresource_uris": {
                "media": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}/Media.json"
            },
            "to": form["To"],
            "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json",
        }
        self.resources.append(resource)
        if self.report_first is not None:
            hub_url, public = self.report_first
            report = {
                "AccountSid": ACCOUNT_SID,
                "MessageSid": sid,
                "MessageStatus": "sent",
                "To": form["To"],
                "ApiVersion": "2010-04-01",
            }
            async with aiohttp.ClientSession() as session:
                status, _ = await post_signed(
                    session, hub_url, public, "/channels/sms/status", report
                )
                assert status == 200
        if self.hold_answers is not None:
            await self.hold_answers.wait()
        return web.json_response(resource, status=201)

    async def list(self, request: web.Request) -> web.Response:
        if not self._auth_ok(request):
            return self._error(401, 20003, "Authenticate")
        to = request.query.get("To")
        found = [r for r in reversed(self.resources) if to is None or r["to"] == to]
        path = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
        return web.json_response(
            {
                "messages": found[: int(request.query.get("PageSize", "50"))],
                "end": len(found) - 1,
                "first_page_uri": f"{path}?PageSize=50&Page=0",
                "next_page_uri": None,
                "page": 0,
                "page_size": 50,
                "previous_page_uri": None,
                "start": 0,
                "uri": f"{path}?PageSize=50&Page=0",
            }
        )

    async def media(self, request: web.Request) -> web.Response:
        self.media_hits += 1
        if not self._auth_ok(request):
            return self._error(401, 20003, "Authenticate")
        if request.match_info["media"] == "redirect":
            cdn = self.url.replace("127.0.0.1", "localhost")  # another host name: no credentials
            target = request.query.get("to") or f"{cdn}/cdn/{secrets.token_hex(4)}"
            raise web.HTTPFound(target)
        return web.Response(body=PNG, content_type="image/png")

    async def cdn(self, request: web.Request) -> web.Response:
        self.cdn_hits += 1
        self.cdn_saw_credentials = "Authorization" in request.headers
        return web.Response(body=PNG, content_type="image/png")

    def media_url(self, name: str = "ME" + "3" * 32) -> str:
        return f"{self.url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/MM{'4' * 32}/Media/{name}"


@asynccontextmanager
async def fake_twilio() -> AsyncIterator[FakeTwilio]:
    fake = FakeTwilio()
    app = web.Application()
    messages = "/2010-04-01/Accounts/{sid}/Messages.json"
    app.router.add_post(messages, fake.create)
    app.router.add_get(messages, fake.list)
    app.router.add_get("/2010-04-01/Accounts/{sid}/Messages/{msid}/Media/{media}", fake.media)
    app.router.add_get("/cdn/{name}", fake.cdn)
    from tests.fake_twilio_voice import add_voice_routes  # it imports this module

    fake.voice = add_voice_routes(app, fake)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        await runner.cleanup()


def inbound_fields(
    body: str = "Hello, where is my order?",
    sender: str = "+4915112345678",
    sid: str | None = None,
    media: list[str] | None = None,
    **extra: str,
) -> dict[str, str]:
    """The fields of Twilio's messaging webhook for one inbound SMS (or WhatsApp message)."""
    whatsapp = sender.startswith("whatsapp:")
    fields = {
        "ToCountry": "DE",
        "ToState": "",
        "SmsMessageSid": sid or "SM" + secrets.token_hex(16),
        "NumMedia": str(len(media or [])),
        "ToCity": "",
        "FromZip": "",
        "SmsSid": "",
        "FromState": "",
        "SmsStatus": "received",
        "FromCity": "",
        "Body": body,
        "FromCountry": "DE",
        "To": f"whatsapp:{FROM_NUMBER}" if whatsapp else FROM_NUMBER,
        "ToZip": "",
        "NumSegments": "1",
        "MessageSid": "",
        "AccountSid": ACCOUNT_SID,
        "From": sender,
        "ApiVersion": "2010-04-01",
    }
    fields["SmsSid"] = fields["MessageSid"] = fields["SmsMessageSid"]
    for index, url in enumerate(media or []):
        fields[f"MediaUrl{index}"] = url
        fields[f"MediaContentType{index}"] = "image/png"
    if whatsapp:
        fields.update(ProfileName="Carla", WaId=sender.removeprefix("whatsapp:+"))
    fields.update(extra)
    return fields


def signature(url: str, fields: dict[str, str], token: str = AUTH_TOKEN) -> str:
    return str(RequestValidator(token).compute_signature(url, fields))


async def post_signed(
    session: aiohttp.ClientSession,
    hub_url: str,
    public_url: str,
    path: str,
    fields: dict[str, str],
    *,
    token: str = AUTH_TOKEN,
    headers: dict[str, str] | None = None,
) -> tuple[int, str]:
    """POST ``fields`` to the hub as Twilio does, signed over the public URL it was given."""
    signed = signature(public_url.rstrip("/") + path, fields, token)
    async with session.post(
        hub_url + path,
        data=urlencode(fields),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signed,
            "I-Twilio-Idempotency-Token": secrets.token_hex(8),
            **(headers or {}),
        },
    ) as response:
        return response.status, await response.text()


def host_of(url: str) -> str:
    return urlsplit(url).hostname or ""
