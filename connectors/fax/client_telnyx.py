"""Telnyx Programmable Fax: its signed webhook served, ``POST /v2/faxes`` called. I/O.

A received fax's document is downloaded at once, through the SSRF-guarded media fetcher (its
pre-signed link expires); if the link has already expired, a fresh one is asked for
(``GET /v2/faxes/{id}``). Outbound faxes point Telnyx at a short-lived signed URL on this hub
(``GET /channels/NAME/media/{token}``). What the webhooks and answers mean is
:mod:`connectors.fax.parse_telnyx`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from connectors.base import Route, SendError
from connectors.fax import parse_telnyx
from connectors.fax.client import Hooks, get_json
from connectors.fax.parse import IncomingFax, OutgoingFax
from connectors.fax.settings import TelnyxSettings
from connectors.shared.media_fetcher import MediaFailed, MediaFetcher, MediaRefused
from connectors.shared.webhooks import decode_json, json_object, read_body, retry_later
from hub.envelope import Delivery

SIGNATURE = "telnyx-signature-ed25519"


class TelnyxGateway:
    name = "telnyx"

    def __init__(self, settings: TelnyxSettings, max_document_bytes: int) -> None:
        self.settings = settings
        self._key = parse_telnyx.public_key(settings.public_key)
        self._hooks: Hooks | None = None
        self._replays = parse_telnyx.Replays(settings.tolerance)
        self._media = MediaFetcher(
            allowed_hosts=settings.media_hosts,
            allow_private=settings.media_allow_private,
            max_bytes=max_document_bytes,
            timeout=60.0,
            auth=None,  # the link is pre-signed; credentials must not travel to it
        )
        self._headers = {"Authorization": f"Bearer {settings.api_key.get_secret_value()}"}
        self._base = settings.api_base_url.rstrip("/")

    def routes(self) -> Sequence[Route]:
        return (Route("POST", "/webhook", self._webhook),)

    async def start(self, hooks: Hooks) -> None:
        self._hooks = hooks
        await self._media.start()

    async def stop(self) -> None:
        await self._media.close()
        self._hooks = None

    def health(self) -> str | None:
        return None

    # -- webhooks ------------------------------------------------------------------------------

    def _check(self, request: web.Request, body: bytes) -> None:
        assert self._hooks is not None
        now = self._hooks.ctx.clock()
        signature = request.headers.get(SIGNATURE)
        try:
            parse_telnyx.verify(
                self._key,
                signature,
                request.headers.get("telnyx-timestamp"),
                body,
                now,
                self.settings.tolerance,
            )
            assert signature is not None
            self._replays.check(signature, now)
        except parse_telnyx.BadSignature as exc:
            raise web.HTTPForbidden(text=str(exc)) from None

    async def _webhook(self, request: web.Request) -> web.StreamResponse:
        assert self._hooks is not None
        if request.content_type != "application/json":
            raise web.HTTPUnsupportedMediaType(text="expected application/json")
        body = await read_body(request, parse_telnyx.MAX_BODY)
        self._check(request, body)
        try:
            event_id, kind, payload = parse_telnyx.event_of(body)
            fax = parse_telnyx.incoming(payload, event_id) if kind == "fax.received" else None
        except ValueError as exc:
            self._replays.forget(request.headers[SIGNATURE])
            raise web.HTTPBadRequest(text=str(exc)) from None
        try:
            if fax is not None:
                if not self._hooks.already(fax.fax_id):  # a redelivery is only counted
                    fax = await self._with_document(fax, payload)
                await self._hooks.receive(fax)
            else:
                report = parse_telnyx.status_report(kind, payload)
                if report is not None:
                    await self._hooks.report(*report)
        except Exception as exc:
            # not stored: let Telnyx's retry (a new signature) through
            self._replays.forget(request.headers[SIGNATURE])
            self._hooks.ctx.logger.exception("fax event %s not handled; Telnyx will retry", kind)
            raise retry_later("not stored", exc) from None
        return web.json_response({"status": "ok"})

    async def _with_document(self, fax: IncomingFax, payload: dict[str, Any]) -> IncomingFax:
        """The fax with its document downloaded now (the link expires); a fresh link is asked
        for once if the given one fails."""
        url = payload.get("media_url")
        problem = "the event carries no media_url"
        for attempt in range(2):
            if attempt == 1:
                url = await self._fresh_media_url(fax.fax_id)
            if not isinstance(url, str) or not url:
                continue
            try:
                data, _kind = await self._media.fetch(url)
            except MediaRefused as exc:
                return dataclasses.replace(fax, data=None, problem=f"document refused: {exc}")
            except MediaFailed as exc:
                problem = f"document not downloaded: {exc}"
                continue
            return dataclasses.replace(fax, data=data, problem=None)
        return dataclasses.replace(fax, data=None, problem=problem)

    async def _fresh_media_url(self, fax_id: str) -> str | None:
        assert self._hooks is not None
        url = f"{self._base}/v2/faxes/{quote(fax_id, safe='')}"
        try:
            async with self._hooks.ctx.http.get(
                url, headers=self._headers, timeout=aiohttp.ClientTimeout(total=30)
            ) as response:
                if response.status != 200:
                    return None
                answer = decode_json(await response.read())
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None
        return parse_telnyx.media_url_of(answer)

    # -- sending -------------------------------------------------------------------------------

    async def send(self, fax: OutgoingFax) -> Delivery:
        assert self._hooks is not None
        state = parse_telnyx.client_state(fax.key)
        if fax.attempt > 1:
            listing = await get_json(
                self._hooks,
                f"{self._base}/v2/faxes",
                params=parse_telnyx.earlier_query(fax.to_number, fax.created_at),
                headers=self._headers,
                seconds=self.settings.send_timeout,
            )
            earlier = parse_telnyx.earlier_fax(listing, state, fax.created_at)
            if earlier is not None:
                return earlier
        body = {
            "connection_id": self.settings.connection_id,
            "media_url": self._hooks.media_url(fax.ref, "application/pdf"),
            "to": fax.to_number,
            "from": fax.from_number,
            "webhook_url": f"{self._hooks.public_base}/webhook?ref={quote(fax.key, safe='')}",
            "client_state": state,
        }
        try:
            async with self._hooks.ctx.http.post(
                f"{self._base}/v2/faxes",
                json=body,
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=self.settings.send_timeout),
            ) as response:
                status = response.status
                answer = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SendError(
                f"Telnyx unreachable: {exc.__class__.__name__}", code="network"
            ) from None
        return parse_telnyx.sent(status, json_object(answer))
