"""Sinch Fax API v3 (formerly Phaxio): webhooks in, ``POST /v3/projects/{id}/faxes`` out.

Sinch signs nothing: a webhook is genuine when it carries the Basic credentials written into
the webhook URL given to Sinch (``https://user:password@hub…/channels/NAME/webhook``) and, when
configured, comes from an allowed address. Both events arrive at one path: ``INCOMING_FAX``
(the fax and its PDF, as multipart/form-data or JSON with the file in base64) and
``FAX_COMPLETED`` (an outbound fax's outcome).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hmac
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp
from aiohttp import web

from connectors.base import Route, SendError
from connectors.fax import formdata
from connectors.fax.gateway import (
    Hooks,
    IncomingFax,
    OutgoingFax,
    created_before,
    decode_json,
    get_json,
    json_object,
    read_body,
    source_allowed,
)
from connectors.fax.settings import SinchSettings
from hub.envelope import Delivery, DeliveryStatus

MAX_PARTS = 20


class BadWebhook(ValueError):
    """A webhook body that is not what Sinch sends."""


def parse_event(fields: dict[str, Any], file: bytes | None) -> tuple[str, dict[str, Any]]:
    """(event, fax object) of a webhook; ``fields['fax']`` may be a JSON text or an object."""
    event = fields.get("event")
    if event not in ("INCOMING_FAX", "FAX_COMPLETED"):
        raise BadWebhook(f"unknown event {str(event)[:40]!r}")
    fax = fields.get("fax")
    if isinstance(fax, str | bytes):
        try:
            fax = decode_json(fax)
        except ValueError as exc:
            raise BadWebhook(f"the fax field: {exc}") from None
    if not isinstance(fax, dict) or not isinstance(fax.get("id"), str) or not fax["id"]:
        raise BadWebhook("the fax object with an id is missing")
    return event, fax


def incoming(fax: dict[str, Any], file: bytes | None, event_time: str | None) -> IncomingFax:
    """The received fax of an ``INCOMING_FAX`` event."""
    pages = fax.get("numberOfPages")
    status = str(fax.get("status") or "")
    problem = None if file else "Sinch sent no document with this fax"
    return IncomingFax(
        fax_id=str(fax["id"])[:100],
        from_number=str(fax.get("from") or "")[:40],
        to_number=str(fax.get("to") or "")[:40],
        data=file or None,
        pages_declared=pages if isinstance(pages, int) and pages >= 0 else None,
        partial=status not in ("", "COMPLETED"),
        problem=problem,
        metadata={
            k: v
            for k, v in {
                "status": status or None,
                "event_time": event_time,
                "service_id": fax.get("serviceId"),
                "error": fax.get("errorMessage") or fax.get("errorCode"),
            }.items()
            if isinstance(v, str | int) and v != ""
        },
    )


def completion(fax: dict[str, Any]) -> Delivery:
    """The outcome of an outbound fax from a ``FAX_COMPLETED`` event."""
    status = str(fax.get("status") or "")
    if status == "COMPLETED":
        return Delivery(status=DeliveryStatus.DELIVERED, provider_id=str(fax["id"]))
    code = str(fax.get("errorCode") or fax.get("errorType") or "failure")[:60]
    message = str(
        fax.get("errorMessage") or fax.get("errorType") or "the fax could not be delivered"
    )
    return Delivery(
        status=DeliveryStatus.FAILED,
        provider_id=str(fax["id"]),
        error_code=code,
        error_message=message[:300],
    )


class SinchGateway:
    name = "sinch"

    def __init__(self, settings: SinchSettings, max_document_bytes: int) -> None:
        self.settings = settings
        self.max_document_bytes = max_document_bytes
        self.max_body = max_document_bytes * 4 // 3 + 1024 * 1024  # base64 plus the fields
        self._hooks: Hooks | None = None
        self._auth = {
            "Authorization": _basic(settings.key_id, settings.key_secret.get_secret_value())
        }
        self._webhook_auth = _basic(
            settings.webhook_username, settings.webhook_password.get_secret_value()
        )

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
        if not hmac.compare_digest(given.encode(), self._webhook_auth.encode()):
            raise web.HTTPUnauthorized(
                text="webhook credentials missing or wrong",
                headers={"WWW-Authenticate": 'Basic realm="fax webhook"'},
            )
        if not source_allowed(
            request, self.settings.allowed_sources, self.settings.trusted_proxies
        ):
            raise web.HTTPUnauthorized(text="this address may not post fax webhooks")

    async def _fields(self, request: web.Request) -> tuple[dict[str, Any], bytes | None]:
        if request.content_type not in ("multipart/form-data", "application/json"):
            raise web.HTTPUnsupportedMediaType(
                text=f"expected multipart/form-data or application/json, got "
                f"{request.content_type or 'nothing'}"
            )
        body = await read_body(request, self.max_body)
        if request.content_type == "multipart/form-data":
            return self._form(request.headers.get("Content-Type", ""), body)
        try:
            document = decode_json(body)
        except ValueError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        if not isinstance(document, dict):
            raise web.HTTPBadRequest(text="the JSON body must be an object")
        file = None
        if isinstance(document.get("file"), str) and document["file"]:
            try:
                file = base64.b64decode(document["file"], validate=True)
            except (binascii.Error, ValueError):
                raise web.HTTPBadRequest(text="file is not base64") from None
            if len(file) > self.max_document_bytes:
                raise web.HTTPRequestEntityTooLarge(
                    max_size=self.max_document_bytes, actual_size=len(file)
                )
        return document, file

    def _form(self, content_type: str, body: bytes) -> tuple[dict[str, Any], bytes | None]:
        """The fields and the file of a multipart body (parsed off the wire, see formdata)."""

        def limit_of(name: str) -> int:
            return self.max_document_bytes if name == "file" else 256 * 1024

        try:
            parts = formdata.parse(
                body, formdata.boundary_of(content_type), max_parts=MAX_PARTS, limit_of=limit_of
            )
        except formdata.FormTooLarge as exc:
            raise web.HTTPRequestEntityTooLarge(
                max_size=exc.limit, actual_size=len(body), text=str(exc)
            ) from None
        except formdata.BadForm as exc:
            raise web.HTTPBadRequest(text=f"bad multipart body: {exc}") from None
        fields: dict[str, Any] = {}
        file = None
        for part in parts:
            if part.name == "file":
                file = part.data
                continue
            try:
                fields[part.name] = part.data.decode("utf-8")
            except UnicodeDecodeError:
                raise web.HTTPBadRequest(text=f"field {part.name[:40]!r} is not UTF-8") from None
        return fields, file

    async def _webhook(self, request: web.Request) -> web.StreamResponse:
        assert self._hooks is not None
        self._check_caller(request)
        fields, file = await self._fields(request)
        try:
            event, fax = parse_event(fields, file)
        except BadWebhook as exc:
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
                received = incoming(fax, file, event_time if isinstance(event_time, str) else None)
                if not file and problem:
                    received = dataclasses.replace(received, problem=problem)
                await self._hooks.receive(received)
            else:
                await self._hooks.report(str(fax["id"]), completion(fax))
        except web.HTTPException:
            raise
        except Exception:
            self._hooks.ctx.logger.exception("fax %s not stored; Sinch will retry", fax["id"])
            raise web.HTTPServiceUnavailable(text="not stored; retry") from None
        return web.json_response({"status": "ok"})

    async def _download(self, fax_id: str) -> tuple[bytes | None, str | None]:
        """The received fax's PDF from ``GET …/faxes/{id}/file.pdf``, or why not."""
        assert self._hooks is not None
        url = f"{self._faxes_url()}/{quote(fax_id, safe='')}/file.pdf"
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

    def _faxes_url(self) -> str:
        base = self.settings.api_base_url.rstrip("/")
        return f"{base}/v3/projects/{quote(self.settings.project_id, safe='')}/faxes"

    async def send(self, fax: OutgoingFax) -> Delivery:
        assert self._hooks is not None
        callback = self._callback_url(fax.key)
        if fax.attempt > 1:
            earlier = await self._find_earlier(fax.to_number, callback, fax.created_at)
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
                self._faxes_url(),
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
        document = json_object(body)
        if status >= 400:
            raise _send_error(status, document)
        fax_id = document.get("id")
        if not isinstance(fax_id, str) or not fax_id:
            raise SendError("Sinch answered without a fax id", code="bad_answer")
        return Delivery(status=DeliveryStatus.QUEUED, provider_id=fax_id)

    def _callback_url(self, key: str) -> str:
        """Our webhook with its credentials in the URL (how Sinch authenticates callbacks) and
        the reply's key, by which a retry recognizes a fax an earlier attempt created."""
        assert self._hooks is not None
        parts = urlsplit(f"{self._hooks.public_base}/webhook")
        user = quote(self.settings.webhook_username, safe="")
        password = quote(self.settings.webhook_password.get_secret_value(), safe="")
        netloc = f"{user}:{password}@{parts.netloc.rpartition('@')[2]}"
        query = f"ref={quote(key, safe='')}"
        return urlunsplit((parts.scheme, netloc, parts.path, query, ""))

    async def _find_earlier(
        self, to_number: str, callback: str, created_at: float
    ) -> Delivery | None:
        """The fax an earlier attempt of this reply created (its answer lost), known by our
        callback URL, which names this reply's key. Sinch masks the Basic credentials of a
        callback URL it lists, so URLs are compared without them; a fax dated before the reply
        existed is never taken."""
        assert self._hooks is not None
        document = await get_json(
            self._hooks,
            self._faxes_url(),
            params={"direction": "OUTBOUND", "to": to_number, "pageSize": "50"},
            headers=self._auth,
            seconds=self.settings.send_timeout,
        )
        wanted = _without_credentials(callback)
        for item in document.get("faxes") or ():
            if not isinstance(item, dict) or not item.get("id"):
                continue
            listed = item.get("callbackUrl")
            if not isinstance(listed, str) or _without_credentials(listed) != wanted:
                continue
            if created_before(item.get("createTime"), created_at):
                continue
            return Delivery(status=DeliveryStatus.QUEUED, provider_id=str(item["id"]))
        return None


def _without_credentials(url: str) -> str:
    """``url`` without its user:password part (Sinch shows it masked, or not at all)."""
    parts = urlsplit(url)
    return urlunsplit(
        (parts.scheme, parts.netloc.rpartition("@")[2], parts.path, parts.query, parts.fragment)
    )


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _send_error(status: int, document: dict[str, Any]) -> SendError:
    nested = document.get("error")
    error: dict[str, Any] = nested if isinstance(nested, dict) else document
    message = str(error.get("message") or f"HTTP {status}")[:300]
    code = str(error.get("code") or error.get("status") or status)[:60]
    retryable = status == 429 or status >= 500
    return SendError(f"Sinch refused the fax: {message}", code=code, retryable=retryable)
