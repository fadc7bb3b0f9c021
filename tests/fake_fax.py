"""Loopback stand-ins for the Sinch Fax API v3 and Telnyx Programmable Fax, in their wire formats.

Sinch: ``POST /v3/projects/{projectId}/faxes`` (multipart: to, from, file, callbackUrl,
callbackUrlContentType; Basic key id:secret; the fax object as JSON) and ``GET`` of the same
path (``{"faxes": [...]}``, callback URLs with their Basic credentials masked, as Sinch lists
them). Its webhooks are multipart/form-data (``event``, ``eventTime``, a
JSON ``fax`` part, a ``file`` part) or JSON with the file in base64, authenticated by the Basic
credentials of the webhook URL.

Telnyx: ``POST /v2/faxes`` (JSON, Bearer; Telnyx then fetches ``media_url``; ``client_state``
must be base64), ``GET /v2/faxes`` with the documented filters (``filter[to][eq]``,
``filter[direction][eq]``, ``filter[created_at][gte]``; others are ignored) and ``GET
/v2/faxes/{id}`` (a fresh ``media_url``), pre-signed media
links that expire (403 with S3's XML after), and webhooks signed with Ed25519 over
``timestamp|body`` by a test key.
"""

from __future__ import annotations

import base64
import datetime
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

PROJECT = "a1b2c3d4-0000-4000-8000-123456789abc"
KEY_ID = "sinch-key-id"
KEY_SECRET = "sinch-key-secret-0123456789"
HOOK_USER = "faxhook"
HOOK_PASSWORD = "webhook-password-0123456789"
TELNYX_KEY = "KEY0123456789ABCDEF_telnyx"
CONNECTION = "1684641123236054244"
OUR_NUMBER = "+4930901820"
CUSTOMER = "+4930123456"


async def _start(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


# -- Sinch -----------------------------------------------------------------------------------


@dataclass
class FakeSinch:
    url: str = ""
    sent: list[dict[str, Any]] = field(default_factory=list)
    script: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    lose_answers: int = 0  # create the fax, then answer 502 (the answer is lost)
    received: dict[str, bytes] = field(default_factory=dict)  # inbound documents by fax id

    def _auth_ok(self, request: web.Request) -> bool:
        expected = "Basic " + base64.b64encode(f"{KEY_ID}:{KEY_SECRET}".encode()).decode()
        return request.headers.get("Authorization") == expected

    async def create(self, request: web.Request) -> web.StreamResponse:
        if not self._auth_ok(request):
            return web.json_response({"code": 401, "message": "Unauthorized"}, status=401)
        if request.match_info["project"] != PROJECT:
            return web.json_response({"code": 404, "message": "project not found"}, status=404)
        if self.script:
            status, body = self.script.pop(0)
            return web.json_response(body, status=status)
        form: dict[str, Any] = {}
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            assert isinstance(part, aiohttp.BodyPartReader)
            data = await part.read()
            form[part.name or ""] = data if part.name == "file" else data.decode()
        fax = {
            "id": "01" + secrets.token_hex(12).upper(),
            "direction": "OUTBOUND",
            "from": form.get("from"),
            "to": form.get("to"),
            "status": "IN_PROGRESS",
            "callbackUrl": form.get("callbackUrl"),
            "callbackUrlContentType": form.get("callbackUrlContentType"),
            "createTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "projectId": PROJECT,
        }
        self.sent.append({**form, "fax": fax})
        if self.lose_answers:
            self.lose_answers -= 1
            return web.Response(status=502, text="bad gateway")
        return web.json_response(fax)

    async def content(self, request: web.Request) -> web.StreamResponse:
        if not self._auth_ok(request):
            return web.json_response({"code": 401, "message": "Unauthorized"}, status=401)
        found = self.received.get(request.match_info["id"])
        if found is None:
            return web.json_response({"code": 404, "message": "fax not found"}, status=404)
        return web.Response(body=found, content_type="application/pdf")

    async def list(self, request: web.Request) -> web.StreamResponse:
        if not self._auth_ok(request):
            return web.json_response({"code": 401, "message": "Unauthorized"}, status=401)
        faxes = [
            {**item["fax"], "callbackUrl": _masked(item["fax"]["callbackUrl"])}
            for item in self.sent
            if item["fax"]["to"] == request.query.get("to")
            and request.query.get("direction", "OUTBOUND") == "OUTBOUND"
        ]
        return web.json_response({"faxes": faxes, "totalItems": len(faxes), "pageSize": 50})


def _masked(url: str | None) -> str | None:
    """A callback URL as Sinch lists it: Basic credentials are masked, never given back."""
    if not url or "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://******:******@{rest.rpartition('@')[2]}"


@asynccontextmanager
async def fake_sinch() -> AsyncIterator[FakeSinch]:
    fake = FakeSinch()
    app = web.Application()
    app.router.add_post("/v3/projects/{project}/faxes", fake.create)
    app.router.add_get("/v3/projects/{project}/faxes", fake.list)
    app.router.add_get("/v3/projects/{project}/faxes/{id}/file.pdf", fake.content)
    runner, fake.url = await _start(app)
    try:
        yield fake
    finally:
        await runner.cleanup()


def sinch_fax(fax_id: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": fax_id or "01" + secrets.token_hex(12).upper(),
        "direction": "INBOUND",
        "from": CUSTOMER,
        "to": OUR_NUMBER,
        "numberOfPages": 2,
        "status": "COMPLETED",
        "createTime": "2026-11-30T09:00:00Z",
        "completedTime": "2026-11-30T09:01:10Z",
        "projectId": PROJECT,
        "serviceId": "01SERVICE",
        **extra,
    }


def basic(user: str = HOOK_USER, password: str = HOOK_PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def sinch_webhook(
    session: aiohttp.ClientSession,
    url: str,
    event: str,
    fax: dict[str, Any],
    pdf: bytes | None = None,
    *,
    as_json: bool = False,
    authorization: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, str]:
    """Post a webhook as Sinch does; returns (status, body)."""
    auth = {"Authorization": authorization if authorization is not None else basic()}
    auth = {k: v for k, v in auth.items() if v}
    if as_json:
        body: dict[str, Any] = {"event": event, "eventTime": "2026-11-30T09:01:11Z", "fax": fax}
        if pdf is not None:
            body["file"] = base64.b64encode(pdf).decode()
            body["fileType"] = "PDF"
        async with session.post(url, json=body, headers={**auth, **(headers or {})}) as answer:
            return answer.status, await answer.text()
    form = aiohttp.FormData()
    form.add_field("event", event)
    form.add_field("eventTime", "2026-11-30T09:01:11Z")
    form.add_field("fax", json.dumps(fax), content_type="application/json")
    if pdf is not None:
        form.add_field("file", pdf, filename=f"{fax['id']}.pdf", content_type="application/pdf")
    async with session.post(url, data=form, headers={**auth, **(headers or {})}) as answer:
        return answer.status, await answer.text()


# -- Telnyx ----------------------------------------------------------------------------------


@dataclass
class FakeTelnyx:
    url: str = ""
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    media: dict[str, tuple[bytes, float]] = field(default_factory=dict)  # name -> (data, expires)
    faxes: dict[str, dict[str, Any]] = field(default_factory=dict)
    sent: list[dict[str, Any]] = field(default_factory=list)
    fetched: list[bytes] = field(default_factory=list)  # outbound media Telnyx downloaded
    media_hits: int = 0
    # the hub's public URL as configured, and where this test's hub really listens
    public: tuple[str, str] | None = None
    lose_answers: int = 0  # create the fax, then answer 504 (the answer is lost)
    script: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # before creating

    @property
    def public_key(self) -> str:
        raw = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return base64.b64encode(raw).decode()

    def host_media(self, data: bytes, *, ttl: float = 600.0) -> str:
        name = uuid.uuid4().hex
        self.media[name] = (data, time.time() + ttl)
        return f"{self.url}/media/{name}.pdf?X-Amz-Expires={int(ttl)}&X-Amz-Signature={name[:16]}"

    def _auth_ok(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {TELNYX_KEY}"

    async def serve_media(self, request: web.Request) -> web.StreamResponse:
        self.media_hits += 1
        found = self.media.get(request.match_info["name"])
        if found is None or found[1] < time.time():
            return web.Response(
                status=403,
                text="<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code>"
                "<Message>Request has expired</Message></Error>",
                content_type="application/xml",
            )
        return web.Response(body=found[0], content_type="application/pdf")

    async def create(self, request: web.Request) -> web.StreamResponse:
        if not self._auth_ok(request):
            return web.json_response(
                {"errors": [{"code": "10009", "title": "Authentication failed"}]}, status=401
            )
        if self.script:
            status, answer = self.script.pop(0)
            return web.json_response(answer, status=status)
        body = await request.json()
        state = body.get("client_state")
        if state is not None:
            try:
                base64.b64decode(state, validate=True)
            except ValueError:
                return web.json_response(
                    {"errors": [{"code": "10015", "title": "Invalid client_state"}]}, status=422
                )
        if not str(body.get("to", "")).startswith("+"):
            return web.json_response(
                {"errors": [{"code": "10015", "title": "Invalid to", "detail": "bad number"}]},
                status=422,
            )
        media_url = str(body.get("media_url"))
        if self.public is not None:
            media_url = media_url.replace(*self.public)
        async with aiohttp.ClientSession() as session, session.get(media_url) as media:
            if media.status != 200:
                return web.json_response(
                    {"errors": [{"code": "40001", "detail": f"media_url HTTP {media.status}"}]},
                    status=422,
                )
            self.fetched.append(await media.read())
        fax = {
            "id": str(uuid.uuid4()),
            "record_type": "fax",
            "connection_id": body.get("connection_id"),
            "direction": "outbound",
            "from": body.get("from"),
            "to": body.get("to"),
            "media_url": body.get("media_url"),
            "status": "queued",
            "webhook_url": body.get("webhook_url"),
            "client_state": state,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        }
        self.faxes[fax["id"]] = fax
        self.sent.append(body)
        if self.lose_answers:
            self.lose_answers -= 1
            return web.Response(status=504, text="gateway timeout")
        return web.json_response({"data": fax}, status=202)

    async def list(self, request: web.Request) -> web.StreamResponse:
        if not self._auth_ok(request):
            return web.json_response({"errors": [{"code": "10009"}]}, status=401)
        to = request.query.get("filter[to][eq]")
        direction = request.query.get("filter[direction][eq]")
        since = request.query.get("filter[created_at][gte]")
        data = [
            fax
            for fax in self.faxes.values()
            if (to is None or fax["to"] == to)
            and (direction is None or fax["direction"] == direction)
            and (since is None or _instant(fax.get("created_at")) >= _instant(since))
        ]
        return web.json_response({"data": data, "meta": {"total_results": len(data)}})

    async def retrieve(self, request: web.Request) -> web.StreamResponse:
        if not self._auth_ok(request):
            return web.json_response({"errors": [{"code": "10009"}]}, status=401)
        fax = self.faxes.get(request.match_info["id"])
        if fax is None:
            return web.json_response({"errors": [{"code": "10005"}]}, status=404)
        return web.json_response({"data": fax})

    def received_event(
        self, media_url: str, *, fax_id: str | None = None, partial: bool = False, pages: int = 2
    ) -> dict[str, Any]:
        fax_id = fax_id or str(uuid.uuid4())
        # what GET /v2/faxes/{id} shows for an inbound fax: a fresh link to the same document
        self.faxes[fax_id] = {
            "id": fax_id,
            "direction": "inbound",
            "from": CUSTOMER,
            "to": OUR_NUMBER,
            "status": "received",
            "media_url": media_url,
        }
        return _event(
            "fax.received",
            {
                "call_duration_secs": 35,
                "connection_id": CONNECTION,
                "direction": "inbound",
                "fax_id": fax_id,
                "from": CUSTOMER,
                "to": OUR_NUMBER,
                "media_url": media_url,
                "page_count": pages,
                "partial_content": partial,
                "status": "received",
                "user_id": "d2f1c6b8-0000-4000-8000-00000000aaaa",
            },
        )

    def sign(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        stamp = str(timestamp if timestamp is not None else int(time.time()))
        signature = self.key.sign(stamp.encode() + b"|" + body)
        return {
            "telnyx-signature-ed25519": base64.b64encode(signature).decode(),
            "telnyx-timestamp": stamp,
            "Content-Type": "application/json",
        }


def _instant(stamp: str | None) -> float:
    if not stamp:
        return 0.0
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def status_event(kind: str, fax_id: str, **extra: Any) -> dict[str, Any]:
    return _event(
        kind,
        {
            "connection_id": CONNECTION,
            "direction": "outbound",
            "fax_id": fax_id,
            "from": OUR_NUMBER,
            "to": CUSTOMER,
            "status": kind.removeprefix("fax."),
            **extra,
        },
    )


def _event(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "data": {
            "event_type": kind,
            "id": str(uuid.uuid4()),
            "occurred_at": "2026-11-30T09:01:11.000000Z",
            "payload": payload,
            "record_type": "event",
        },
        "meta": {"attempt": 1, "delivered_to": "https://hub.example.com/channels/fax/webhook"},
    }


async def telnyx_webhook(
    session: aiohttp.ClientSession,
    url: str,
    fake: FakeTelnyx,
    event: dict[str, Any],
    *,
    timestamp: int | None = None,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> tuple[int, str]:
    raw = body if body is not None else json.dumps(event).encode()
    signed = {**fake.sign(raw, timestamp), **(headers or {})}
    async with session.post(url, data=raw, headers=signed) as answer:
        return answer.status, await answer.text()


@asynccontextmanager
async def fake_telnyx() -> AsyncIterator[FakeTelnyx]:
    fake = FakeTelnyx()
    app = web.Application()
    app.router.add_post("/v2/faxes", fake.create)
    app.router.add_get("/v2/faxes", fake.list)
    app.router.add_get("/v2/faxes/{id}", fake.retrieve)
    app.router.add_get("/media/{name}.pdf", fake.serve_media)
    runner, fake.url = await _start(app)
    try:
        yield fake
    finally:
        await runner.cleanup()
