"""Sinch Fax API v3: its webhook served, ``POST /v3/projects/{id}/faxes`` called. I/O.

What the webhooks and answers mean is :mod:`connectors.fax.parse_sinch`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from urllib.parse import quote

import aiohttp
from aiohttp import web

from connectors.base import Route, SendError
from connectors.fax import parse_sinch
from connectors.fax.client import Hooks, get_json
from connectors.fax.parse import OutgoingFax
from connectors.fax.settings import SinchSettings
from connectors.shared.basic_auth import basic_authorization
from connectors.shared.webhooks import json_object, read_body, retry_later
from hub.envelope import Delivery


class SinchGateway:
    name = "sinch"

    def __init__(self, settings: SinchSettings, max_document_bytes: int) -> None:
        self.settings = settings
        self.max_document_bytes = max_document_bytes
        self.max_body = max_document_bytes * 4 // 3 + 1024 * 1024  # base64 plus the fields
        self._hooks: Hooks | None = None
        self._auth = {
            "Authorization": basic_authorization(
                settings.key_id, settings.key_secret.get_secret_value()
            )
        }
        self._webhook_auth = basic_authorization(
            settings.webhook_username, settings.webhook_password.get_secret_value()
        )
        self._faxes_url = parse_sinch.faxes_url(settings.api_base_url, settings.project_id)

    def routes(self) -> Sequence[Route]:
        return (Route("POST", "/webhook", self._webhook),)

    async def start(self, hooks: Hooks) -> None:
        self._hooks = hooks

    async def stop(self) -> None:
        self._hooks = None

    def health(self) -> str | None:
        return None

    # -- webhooks ------------------------------------------------------------------------------

    def _check_caller(self, request: web.Request) -> None:
        given = request.headers.get("Authorization", "")
        if not parse_sinch.credentials_match(given, self._webhook_auth):
            raise web.HTTPUnauthorized(
                text="webhook credentials missing or wrong",
                headers={"WWW-Authenticate": 'Basic realm="fax webhook"'},
            )
        if not parse_sinch.source_allowed(
            request.remote,
            request.headers.get("X-Forwarded-For", ""),
            self.settings.allowed_sources,
            self.settings.trusted_proxies,
        ):
            raise web.HTTPUnauthorized(text="this address may not post fax webhooks")

    async def _fields(self, request: web.Request) -> tuple[dict[str, object], bytes | None]:
        kind = request.content_type
        if kind not in (parse_sinch.MULTIPART, parse_sinch.JSON):
            raise web.HTTPUnsupportedMediaType(
                text=f"expected multipart/form-data or application/json, got {kind or 'nothing'}"
            )
        body = await read_body(request, self.max_body)
        try:
            return parse_sinch.webhook_fields(
                kind, request.headers.get("Content-Type", ""), body, self.max_document_bytes
            )
        except parse_sinch.TooLarge as exc:
            extra = {"text": exc.message} if exc.message else {}
            raise web.HTTPRequestEntityTooLarge(
                max_size=exc.limit, actual_size=exc.size, **extra
            ) from None
        except parse_sinch.BadWebhook as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None

    async def _webhook(self, request: web.Request) -> web.StreamResponse:
        assert self._hooks is not None
        self._check_caller(request)
        fields, file = await self._fields(request)
        try:
            event, fax = parse_sinch.parse_event(fields, file)
        except parse_sinch.BadWebhook as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        event_time = fields.get("eventTime")
        try:
            if event == "INCOMING_FAX":
                if str(fax.get("direction", "INBOUND")).upper() != "INBOUND":
                    raise web.HTTPBadRequest(text="INCOMING_FAX for an outbound fax")
                fax_id = str(fax["id"])
                problem = None
                # a webhook configured without the file: ask the API for it (unless this is a
                # redelivery of a fax kept already, which receive only counts)
                if not file and not self._hooks.already(fax_id):
                    file, problem = await self._download(fax_id)
                received = parse_sinch.incoming(
                    fax, file, event_time if isinstance(event_time, str) else None
                )
                if not file and problem:
                    received = dataclasses.replace(received, problem=problem)
                await self._hooks.receive(received)
            else:
                await self._hooks.report(str(fax["id"]), parse_sinch.completion(fax))
        except web.HTTPException:
            raise
        except Exception as exc:
            self._hooks.ctx.logger.exception("fax %s not stored; Sinch will retry", fax["id"])
            raise retry_later("not stored", exc) from None
        return web.json_response({"status": "ok"})

    async def _download(self, fax_id: str) -> tuple[bytes | None, str | None]:
        """The received fax's PDF from ``GET …/faxes/{id}/file.pdf``, or why not."""
        assert self._hooks is not None
        url = f"{self._faxes_url}/{quote(fax_id, safe='')}/file.pdf"
        try:
            async with self._hooks.ctx.http.get(
                url,
                headers=self._auth,
                timeout=aiohttp.ClientTimeout(total=self.settings.send_timeout),
            ) as response:
                if response.status != 200:
                    return None, f"the document could not be downloaded (HTTP {response.status})"
                if (response.content_length or 0) > self.max_document_bytes:
                    return None, "the document is over max_document_bytes"
                data = await response.content.read(self.max_document_bytes + 1)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return None, f"the document could not be downloaded ({exc.__class__.__name__})"
        if len(data) > self.max_document_bytes:
            return None, "the document is over max_document_bytes"
        return data, None

    # -- sending -------------------------------------------------------------------------------

    async def send(self, fax: OutgoingFax) -> Delivery:
        assert self._hooks is not None
        callback = parse_sinch.callback_url(
            self._hooks.public_base,
            self.settings.webhook_username,
            self.settings.webhook_password.get_secret_value(),
            fax.key,
        )
        if fax.attempt > 1:
            listing = await get_json(
                self._hooks,
                self._faxes_url,
                params={"direction": "OUTBOUND", "to": fax.to_number, "pageSize": "50"},
                headers=self._auth,
                seconds=self.settings.send_timeout,
            )
            earlier = parse_sinch.earlier_fax(listing, callback, fax.created_at)
            if earlier is not None:
                return earlier
        form = aiohttp.FormData()
        form.add_field("to", fax.to_number)
        form.add_field("from", fax.from_number)
        form.add_field("callbackUrl", callback)
        form.add_field("callbackUrlContentType", "application/json")
        form.add_field("file", fax.pdf, filename="fax.pdf", content_type="application/pdf")
        try:
            async with self._hooks.ctx.http.post(
                self._faxes_url,
                data=form,
                headers=self._auth,
                timeout=aiohttp.ClientTimeout(total=self.settings.send_timeout),
            ) as response:
                body = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SendError(
                f"Sinch unreachable: {exc.__class__.__name__}", code="network"
            ) from None
        return parse_sinch.sent(status, json_object(body))
