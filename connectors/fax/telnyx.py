"""Telnyx Programmable Fax: signed webhooks in, ``POST /v2/faxes`` out.

Every webhook is signed with Ed25519 over ``{telnyx-timestamp}|{raw body}``
(``telnyx-signature-ed25519``, base64) and is refused unless the signature verifies with the
account's public key, the timestamp is within the tolerance (5 minutes) and the same signed
request was not seen before. ``fax.received`` carries a pre-signed ``media_url`` that expires:
the document is downloaded at once, and if the link has already expired, a fresh one is asked
for (``GET /v2/faxes/{id}``). Outbound faxes point Telnyx at a short-lived signed URL on this
hub (``GET /channels/NAME/media/{token}``).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from connectors.base import Route, SendError
from connectors.fax.gateway import (
    CLOCK_SKEW,
    Hooks,
    IncomingFax,
    OutgoingFax,
    created_before,
    decode_json,
    get_json,
    iso_time,
    json_object,
    read_body,
    reply_ref,
)
from connectors.fax.settings import TelnyxSettings
from connectors.sms.media import MediaFailed, MediaFetcher, MediaRefused
from hub.envelope import Delivery, DeliveryStatus

MAX_BODY = 256 * 1024
SEEN = 10_000  # signatures remembered to refuse replays within the tolerance
_STATUS = {
    "fax.queued": DeliveryStatus.QUEUED,
    "fax.sending.started": DeliveryStatus.SENT,
    "fax.delivered": DeliveryStatus.DELIVERED,
    "fax.failed": DeliveryStatus.FAILED,
}


class BadSignature(ValueError):
    """A webhook that is not provably from Telnyx, or too old."""


def public_key(encoded: str) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(encoded, validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError):
        raise ValueError("telnyx.public_key is not a base64 Ed25519 public key") from None


def verify(
    key: Ed25519PublicKey,
    signature: str | None,
    timestamp: str | None,
    body: bytes,
    now: float,
    tolerance: float,
) -> None:
    """Raise :class:`BadSignature` unless ``body`` is signed by ``key`` within ``tolerance``."""
    if not signature or not timestamp:
        raise BadSignature("telnyx-signature-ed25519 and telnyx-timestamp are required")
    if not timestamp.isdigit() or len(timestamp) > 12:
        raise BadSignature("telnyx-timestamp is not a Unix time")
    if abs(now - int(timestamp)) > tolerance:
        raise BadSignature("the webhook is too old (or from the future)")
    try:
        key.verify(base64.b64decode(signature, validate=True), timestamp.encode() + b"|" + body)
    except (InvalidSignature, binascii.Error, ValueError):
        raise BadSignature("the signature does not verify") from None


def event_of(body: bytes) -> tuple[str, str, dict[str, Any]]:
    """(event id, event type, payload) of a webhook body; ValueError if malformed."""
    document = decode_json(body)
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, dict):
        raise ValueError("the body has no data object")
    payload = data.get("payload")
    kind = data.get("event_type")
    if not isinstance(payload, dict) or not isinstance(kind, str):
        raise ValueError("data needs event_type and payload")
    return str(data.get("id") or ""), kind, payload


def incoming(payload: dict[str, Any], event_id: str) -> IncomingFax:
    fax_id = payload.get("fax_id")
    if not isinstance(fax_id, str) or not fax_id:
        raise ValueError("fax.received without fax_id")
    pages = payload.get("page_count")
    return IncomingFax(
        fax_id=fax_id[:100],
        from_number=str(payload.get("from") or "")[:40],
        to_number=str(payload.get("to") or "")[:40],
        data=None,
        pages_declared=pages if isinstance(pages, int) and pages >= 0 else None,
        partial=bool(payload.get("partial_content")),
        metadata={
            k: v
            for k, v in {
                "event_id": event_id or None,
                "connection_id": payload.get("connection_id"),
                "status": payload.get("status"),
                "call_duration_secs": payload.get("call_duration_secs"),
            }.items()
            if isinstance(v, str | int) and v != ""
        },
    )


def status_report(kind: str, payload: dict[str, Any]) -> tuple[str, Delivery] | None:
    """(fax id, delivery) of an outbound fax's event; None for events that change nothing."""
    status = _STATUS.get(kind)
    fax_id = payload.get("fax_id")
    if status is None or not isinstance(fax_id, str) or not fax_id:
        return None
    if status is DeliveryStatus.FAILED:
        reason = str(payload.get("failure_reason") or "failed")[:60]
        return fax_id, Delivery(
            status=status,
            provider_id=fax_id,
            error_code=reason,
            error_message=f"the fax was not delivered ({reason.replace('_', ' ')})",
        )
    return fax_id, Delivery(status=status, provider_id=fax_id)


class TelnyxGateway:
    name = "telnyx"

    def __init__(self, settings: TelnyxSettings, max_document_bytes: int) -> None:
        self.settings = settings
        self._key = public_key(settings.public_key)
        self._hooks: Hooks | None = None
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._media = MediaFetcher(
            allowed_hosts=settings.media_hosts,
            allow_private=settings.media_allow_private,
            max_bytes=max_document_bytes,
            timeout=60.0,
            auth=None,  # the link is pre-signed; credentials must not travel to it
        )
        self._headers = {"Authorization": f"Bearer {settings.api_key.get_secret_value()}"}

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
        signature = request.headers.get("telnyx-signature-ed25519")
        try:
            verify(
                self._key,
                signature,
                request.headers.get("telnyx-timestamp"),
                body,
                now,
                self.settings.tolerance,
            )
        except BadSignature as exc:
            raise web.HTTPForbidden(text=str(exc)) from None
        assert signature is not None
        while self._seen and next(iter(self._seen.values())) < now - self.settings.tolerance:
            self._seen.popitem(last=False)
        if signature in self._seen:
            raise web.HTTPForbidden(text="this signed request was already received (replay)")
        self._seen[signature] = now
        while len(self._seen) > SEEN:
            self._seen.popitem(last=False)

    async def _webhook(self, request: web.Request) -> web.StreamResponse:
        assert self._hooks is not None
        if request.content_type != "application/json":
            raise web.HTTPUnsupportedMediaType(text="expected application/json")
        body = await read_body(request, MAX_BODY)
        self._check(request, body)
        try:
            event_id, kind, payload = event_of(body)
            fax = incoming(payload, event_id) if kind == "fax.received" else None
        except ValueError as exc:
            self._seen.pop(request.headers["telnyx-signature-ed25519"], None)
            raise web.HTTPBadRequest(text=str(exc)) from None
        try:
            if fax is not None:
                if not self._hooks.already(fax.fax_id):  # a redelivery is only counted
                    fax = await self._with_document(fax, payload)
                await self._hooks.receive(fax)
            else:
                report = status_report(kind, payload)
                if report is not None:
                    await self._hooks.report(*report)
        except Exception:
            # not stored: let Telnyx's retry (a new signature) through
            self._seen.pop(request.headers["telnyx-signature-ed25519"], None)
            self._hooks.ctx.logger.exception("fax event %s not handled; Telnyx will retry", kind)
            raise web.HTTPServiceUnavailable(text="not stored; retry") from None
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
        url = f"{self.settings.api_base_url.rstrip('/')}/v2/faxes/{quote(fax_id, safe='')}"
        try:
            async with self._hooks.ctx.http.get(
                url, headers=self._headers, timeout=aiohttp.ClientTimeout(total=30)
            ) as response:
                if response.status != 200:
                    return None
                document = decode_json(await response.read())
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None
        data = document.get("data") if isinstance(document, dict) else None
        found = data.get("media_url") if isinstance(data, dict) else None
        return found if isinstance(found, str) else None

    # -- sending -------------------------------------------------------------------------------

    async def send(self, fax: OutgoingFax) -> Delivery:
        assert self._hooks is not None
        webhook = f"{self._hooks.public_base}/webhook?ref={quote(fax.key, safe='')}"
        base = self.settings.api_base_url.rstrip("/")
        state = _client_state(fax.key)
        if fax.attempt > 1:
            earlier = await self._find_earlier(base, fax, state)
            if earlier is not None:
                return earlier
        body = {
            "connection_id": self.settings.connection_id,
            "media_url": self._hooks.media_url(fax.ref, "application/pdf"),
            "to": fax.to_number,
            "from": fax.from_number,
            "webhook_url": webhook,
            "client_state": state,
        }
        try:
            async with self._hooks.ctx.http.post(
                f"{base}/v2/faxes",
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
        document = json_object(answer)
        if status >= 400:
            errors = document.get("errors")
            first = errors[0] if isinstance(errors, list) and errors else {}
            first = first if isinstance(first, dict) else {}
            detail = str(first.get("detail") or first.get("title") or f"HTTP {status}")[:300]
            raise SendError(
                f"Telnyx refused the fax: {detail}",
                code=str(first.get("code") or status)[:60],
                retryable=status == 429 or status >= 500,
            )
        data = document.get("data")
        fax_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(fax_id, str) or not fax_id:
            raise SendError("Telnyx answered without a fax id", code="bad_answer")
        return Delivery(status=DeliveryStatus.QUEUED, provider_id=fax_id)

    async def _find_earlier(self, base: str, fax: OutgoingFax, state: str) -> Delivery | None:
        """The fax an earlier attempt of this reply created (its answer lost): one to this
        number, created since the reply was, that carries this reply's ``client_state``."""
        assert self._hooks is not None
        document = await get_json(
            self._hooks,
            f"{base}/v2/faxes",
            params={
                "filter[to][eq]": fax.to_number,
                "filter[direction][eq]": "outbound",
                "filter[created_at][gte]": iso_time(fax.created_at - CLOCK_SKEW),
                "page[size]": "50",
            },
            headers=self._headers,
            seconds=self.settings.send_timeout,
        )
        for item in document.get("data") or ():
            if not isinstance(item, dict) or not item.get("id"):
                continue
            if item.get("client_state") != state:
                continue
            if created_before(item.get("created_at"), fax.created_at):
                continue
            return Delivery(status=DeliveryStatus.QUEUED, provider_id=str(item["id"]))
        return None


def _client_state(key: str) -> str:
    """Telnyx's ``client_state`` for a reply (it must be base64): the reply's mark."""
    return base64.b64encode(reply_ref(key).encode()).decode()
