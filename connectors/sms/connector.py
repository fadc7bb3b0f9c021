"""SMS and WhatsApp: Twilio's messaging webhooks in, its Messages API out.

Inbound: ``POST /channels/NAME/inbound`` (the number's or Messaging Service's "a message comes
in" URL). Delivery reports: ``POST /channels/NAME/status``. Outbound media is served to the
provider from ``GET /channels/NAME/media/{token}`` under short-lived signed links.
"""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict
from collections.abc import Sequence
from urllib.parse import parse_qsl

import msgspec
from aiohttp import web
from multidict import MultiDict
from twilio.request_validator import RequestValidator

from connectors import media_links
from connectors.base import (
    Accepted,
    Capabilities,
    ComposeInfo,
    Connector,
    ConnectorContext,
    Route,
    SendError,
    TemplateInfo,
)
from connectors.sms import parse
from connectors.sms.client import TwilioSender, template_variables
from connectors.sms.media import MediaFailed, MediaFetcher, MediaRefused
from connectors.sms.settings import SmsSettings
from hub.envelope import Attachment, Delivery, Identity, Outbound

TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
WHATSAPP_WINDOW = 24 * 3600.0
MEDIA_LINK_TTL = 3600.0
RECENT = 4096  # acknowledged MessageSids remembered, so a replay costs no media download
FORM = "application/x-www-form-urlencoded"


class SmsConnector(Connector):
    """Text messages and WhatsApp through Twilio or a Twilio-compatible provider."""

    channel = "sms"
    settings_model = SmsSettings
    capabilities = Capabilities(
        attachments=True,
        delivery_receipts=True,
        reply_window=WHATSAPP_WINDOW,
        max_text_length=1600,
        recipient_kinds=("phone",),  # WhatsApp needs the customer's own 24-hour window
    )
    settings: SmsSettings

    def __init__(self, name: str, settings: SmsSettings) -> None:
        super().__init__(name, settings)
        self._ctx: ConnectorContext | None = None
        self._validator = RequestValidator(settings.auth_token.get_secret_value())
        self._sender: TwilioSender | None = None
        self._media: MediaFetcher | None = None
        self._inflight: dict[str, asyncio.Future[Accepted]] = {}
        self._recent: OrderedDict[str, Accepted] = OrderedDict()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, ctx: ConnectorContext) -> None:
        self._ctx = ctx
        token = self.settings.auth_token.get_secret_value()
        self._sender = TwilioSender(
            self.settings.account_sid,
            token,
            self.settings.api_base_url,
            self.settings.send_timeout,
        )
        self._media = MediaFetcher(
            allowed_hosts=self.settings.media_hosts,
            allow_private=self.settings.media_allow_private,
            max_bytes=self.settings.max_media_bytes,
            timeout=self.settings.media_timeout,
            auth=(self.settings.account_sid, token),
        )
        await self._media.start()

    async def stop(self) -> None:
        if self._sender is not None:
            await self._sender.close()
            self._sender = None
        if self._media is not None:
            await self._media.close()
            self._media = None

    def routes(self) -> Sequence[Route]:
        return (
            Route("POST", "/inbound", self._inbound),
            Route("POST", "/status", self._status),
            Route("GET", "/media/{token}", self._serve_media),
        )

    # -- webhooks --------------------------------------------------------------------------

    def _public_base(self) -> str:
        assert self._ctx is not None
        return self.settings.public_url or self._ctx.public_url

    async def _verified_fields(self, request: web.Request) -> MultiDict[str]:
        """The posted fields of a genuine Twilio request, or the HTTP error to answer."""
        if request.content_length is not None and request.content_length > (
            self.settings.max_body_bytes
        ):
            raise web.HTTPRequestEntityTooLarge(
                max_size=self.settings.max_body_bytes, actual_size=request.content_length
            )
        kind = request.content_type
        if kind not in (FORM, "application/json"):
            raise web.HTTPUnsupportedMediaType(text=f"expected {FORM}, got {kind or 'nothing'}")
        # to its end: one read returns only what has arrived, and a body cut short fails
        # its signature (or its JSON) although the provider sent it whole
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > self.settings.max_body_bytes:
                raise web.HTTPRequestEntityTooLarge(
                    max_size=self.settings.max_body_bytes, actual_size=size
                )
            chunks.append(chunk)
        body = b"".join(chunks)
        signature = request.headers.get("X-Twilio-Signature")
        if not signature:
            raise web.HTTPForbidden(text="X-Twilio-Signature is missing")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise web.HTTPBadRequest(text="the body is not UTF-8") from None
        url = parse.webhook_url(self._public_base(), request.path_qs)
        if kind == FORM:
            try:
                pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=500)
            except ValueError as exc:
                raise web.HTTPBadRequest(text=f"bad form body: {exc}") from None
            fields: MultiDict[str] = MultiDict(pairs)
            if not self._validator.validate(url, fields, signature):
                raise web.HTTPForbidden(text="X-Twilio-Signature does not match")
            return fields
        # JSON bodies are signed over the URL, whose bodySHA256 parameter hashes the body
        if "bodySHA256" not in request.query:
            raise web.HTTPForbidden(text="a JSON webhook must carry bodySHA256")
        if not self._validator.validate(url, text, signature):
            raise web.HTTPForbidden(text="X-Twilio-Signature does not match")
        try:
            document = msgspec.json.decode(body)
            if not isinstance(document, dict):
                raise web.HTTPBadRequest(text="the JSON body must be an object")
            return MultiDict(
                (str(key), value if isinstance(value, str) else msgspec.json.encode(value).decode())
                for key, value in document.items()
            )
        except msgspec.DecodeError:
            raise web.HTTPBadRequest(text="the body is not JSON") from None
        except RecursionError:  # nesting no webhook has; msgspec gives up on it
            raise web.HTTPBadRequest(text="the JSON body is nested too deeply") from None

    async def _inbound(self, request: web.Request) -> web.StreamResponse:
        assert self._ctx is not None
        grouped = _grouped(await self._verified_fields(request))
        token = request.headers.get("I-Twilio-Idempotency-Token")
        if "MessageSid" not in grouped and "SmsMessageSid" not in grouped and token:
            grouped["MessageSid"] = [re.sub(r"[^A-Za-z0-9_-]", "", token)[:64]]
        try:
            inbound = parse.parse_inbound(
                grouped,
                inbox=self.name,
                account_sid=self.settings.account_sid,
                received_at=self._ctx.clock(),
                max_media=self.settings.max_media_count,
            )
        except parse.BadWebhook as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        key = inbound.envelope.idempotency_key
        if key in self._recent:
            await self._ctx.sink.redelivered(self.channel, self.name, key)
            return _twiml()
        running = self._inflight.get(key)
        if running is not None:  # the same message, concurrently: answer when the first is stored
            try:
                await asyncio.shield(running)
            except Exception:
                raise web.HTTPServiceUnavailable(text="not stored; retry") from None
            await self._ctx.sink.redelivered(self.channel, self.name, key)
            return _twiml()
        future: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            accepted = await self._store(inbound)
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it themselves
            self._ctx.logger.exception("storing %s failed; Twilio will retry", key)
            raise web.HTTPServiceUnavailable(text="not stored; retry") from None
        finally:
            self._inflight.pop(key, None)
        future.set_result(accepted)
        self._recent[key] = accepted
        while len(self._recent) > RECENT:
            self._recent.popitem(last=False)
        return _twiml()

    async def _store(self, inbound: parse.Inbound) -> Accepted:
        assert self._ctx is not None and self._media is not None
        envelope = inbound.envelope
        attachments: list[Attachment] = []
        problems: list[dict[str, str]] = []
        for index, media in enumerate(inbound.media):
            try:
                data, content_type = await self._media.fetch(media.url)
            except (MediaRefused, MediaFailed) as exc:
                refused = isinstance(exc, MediaRefused)
                problems.append(
                    {"url": media.url[:500], "refused" if refused else "error": str(exc)}
                )
                self._ctx.logger.warning(
                    "media %d of %s not fetched: %s", index, envelope.provider_id, exc
                )
                continue
            extension = media.content_type.rsplit("/", 1)[-1][:10]
            attachments.append(
                await self._ctx.blobs.put(
                    data,
                    name=f"media-{index}.{extension}",
                    content_type=media.content_type or content_type,
                )
            )
        if attachments or problems:
            metadata = dict(envelope.metadata)
            if problems:
                metadata["media_problems"] = problems
            envelope = msgspec.structs.replace(
                envelope, attachments=tuple(attachments), metadata=metadata
            )
        accepted = await self._ctx.sink.ingest(envelope)
        if inbound.keyword in {"stop", "start"} and not accepted.duplicate:
            await self._ctx.sink.opt_out(
                self.name,
                envelope.sender,
                inbound.keyword == "stop",
                str(envelope.metadata.get("OptOutType") or envelope.text.strip().upper()),
            )
        return accepted

    async def _status(self, request: web.Request) -> web.StreamResponse:
        assert self._ctx is not None
        grouped = _grouped(await self._verified_fields(request))
        if grouped.get("AccountSid", [""])[0] != self.settings.account_sid:
            raise web.HTTPForbidden(text="AccountSid is not this inbox's account")
        try:
            sid, delivery = parse.status_report(grouped)
        except parse.BadWebhook as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        try:
            await self._ctx.sink.delivery_update(self.name, sid, delivery)
        except Exception:
            self._ctx.logger.exception("recording the status of %s failed", sid)
            raise web.HTTPServiceUnavailable(text="not recorded; retry") from None
        return _twiml()

    async def _serve_media(self, request: web.Request) -> web.StreamResponse:
        assert self._ctx is not None
        try:
            link = media_links.verify(
                self._ctx.secret, request.match_info["token"], self._ctx.clock()
            )
            data = await self._ctx.blobs.get(link.ref)
        except (media_links.BadLink, FileNotFoundError, ValueError):
            raise web.HTTPNotFound() from None
        return web.Response(
            body=data,
            content_type=link.content_type,
            headers={"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"},
        )

    # -- outbound --------------------------------------------------------------------------

    def _addresses(self, recipient: Identity) -> tuple[str, str | None]:
        """Twilio's To and From for ``recipient`` (From None: the Messaging Service picks)."""
        if recipient.kind == "whatsapp":
            number = self.settings.whatsapp_from or self.settings.from_
            sender = None if self.settings.messaging_service_sid else f"whatsapp:{number}"
            return f"whatsapp:{recipient.address}", sender
        if recipient.kind == "phone":
            return recipient.address, None if self.settings.messaging_service_sid else (
                self.settings.from_
            )
        raise SendError(
            f"SMS cannot reach a {recipient.kind} address",
            code="unsupported_recipient",
            retryable=False,
        )

    async def send(self, outbound: Outbound) -> Delivery:
        if self._sender is None or self._ctx is None:
            raise SendError("the SMS connector is not started", code="not_started")
        to, sender = self._addresses(outbound.recipient)
        if outbound.attempt > 1:
            earlier = await self._sender.find_earlier(
                to,
                outbound.text,
                outbound.first_attempt_at or outbound.created_at,
                outbound.foreign_provider_ids,
            )
            if earlier is not None:
                return earlier
        fields: dict[str, object] = {"to": to}
        if sender is None:
            fields["messaging_service_sid"] = self.settings.messaging_service_sid
        else:
            fields["from_"] = sender
        if outbound.template is not None:
            template = self.settings.whatsapp_templates.get(outbound.template.name)
            if template is None:
                raise SendError(
                    f"template {outbound.template.name!r} is not configured",
                    code="bad_template",
                    retryable=False,
                )
            fields["content_sid"] = template.content_sid
            fields["content_variables"] = template_variables(
                template.variables, outbound.template.variables
            )
        else:
            fields["body"] = outbound.text
        if outbound.attachments:
            expires = self._ctx.clock() + MEDIA_LINK_TTL
            fields["media_url"] = [
                f"{self._public_base().rstrip('/')}/channels/{self.name}/media/"
                + media_links.sign(self._ctx.secret, item.blob_ref, item.content_type, expires)
                for item in outbound.attachments
            ]
        if self.settings.status_callbacks:
            fields["status_callback"] = (
                f"{self._public_base().rstrip('/')}/channels/{self.name}/status"
            )
        return await self._sender.create(fields)

    # -- what the agent sees before sending ----------------------------------------------------

    def compose(
        self, recipient: Identity, last_inbound_at: float | None, now: float
    ) -> ComposeInfo:
        if recipient.kind != "whatsapp":
            return ComposeInfo()
        templates = tuple(
            TemplateInfo(name=name, body=template.body, variables=template.variables)
            for name, template in sorted(self.settings.whatsapp_templates.items())
        )
        closes = last_inbound_at + WHATSAPP_WINDOW if last_inbound_at is not None else None
        if closes is not None and now < closes:
            return ComposeInfo(mode="text", window_closes_at=closes, templates=templates)
        return ComposeInfo(
            mode="template",
            window_closes_at=closes,
            templates=templates,
            reason="WhatsApp allows free text only within 24 hours of the customer's last "
            "message; pick an approved template"
            + ("" if templates else " (none is configured for this inbox)"),
        )

    def preview(self, text: str) -> dict[str, object]:
        return parse.segments(text)

    def render_template(self, recipient: Identity, name: str, variables: dict[str, str]) -> str:
        if recipient.kind != "whatsapp":
            raise ValueError("templates are for WhatsApp conversations")
        template = self.settings.whatsapp_templates.get(name)
        if template is None:
            raise ValueError(f"no template {name!r} in this inbox")
        missing = [v for v in template.variables if not variables.get(v, "").strip()]
        if missing:
            raise ValueError(f"fill in {', '.join(missing)}")
        unknown = set(variables) - set(template.variables)
        if unknown:
            raise ValueError(f"template {name!r} has no {', '.join(sorted(unknown))}")
        values = {str(index): variables[v] for index, v in enumerate(template.variables, 1)}
        # one pass, so a value that itself contains {{2}} is shown as typed
        return re.sub(r"\{\{(\d+)\}\}", lambda m: values.get(m[1], m[0]), template.body)


def _grouped(fields: MultiDict[str]) -> dict[str, list[str]]:
    """Posted fields as name -> values, the shape the pure parsers take."""
    grouped: dict[str, list[str]] = {}
    for key, value in fields.items():
        grouped.setdefault(key, []).append(value)
    return grouped


def _twiml() -> web.Response:
    return web.Response(text=TWIML, content_type="text/xml")
