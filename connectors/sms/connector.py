"""SMS and WhatsApp: Twilio's messaging webhooks in, its Messages API out.

Inbound: ``POST /channels/NAME/inbound`` (the number's or Messaging Service's "a message comes
in" URL). Delivery reports: ``POST /channels/NAME/status``. Outbound media is served to the
provider from ``GET /channels/NAME/media/{token}`` under short-lived signed links.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import msgspec
from aiohttp import web
from twilio.request_validator import RequestValidator

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
from connectors.shared import media_route
from connectors.shared.media_fetcher import MediaFailed, MediaFetcher, MediaRefused
from connectors.shared.single_flight import SingleFlight
from connectors.shared.twilio_webhooks import verified_request
from connectors.sms import parse, segments
from connectors.sms.client import TwilioSender
from connectors.sms.settings import SmsSettings
from hub.envelope import Attachment, Delivery, Identity, Outbound

TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
WHATSAPP_WINDOW = 24 * 3600.0
RECENT = 4096  # acknowledged MessageSids remembered, so a replay costs no media download


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
        self._flights: SingleFlight[Accepted] = SingleFlight(RECENT)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, ctx: ConnectorContext) -> None:
        self._ctx = ctx
        token = self.settings.auth_token.get_secret_value()
        self._sender = TwilioSender(
            self.settings.account_sid,
            token,
            base_url=self.settings.api_base_url,
            session=ctx.http,
            timeout=self.settings.send_timeout,
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
        self._sender = None  # its session is the hub's
        if self._media is not None:
            await self._media.close()
            self._media = None

    def routes(self) -> Sequence[Route]:
        return (
            Route("POST", "/inbound", self._inbound),
            Route("POST", "/status", self._status),
            Route("GET", media_route.PATH, self._serve_media),
        )

    # -- webhooks --------------------------------------------------------------------------

    def _public_base(self) -> str:
        assert self._ctx is not None
        return self.settings.public_url or self._ctx.public_url

    async def _verified_fields(self, request: web.Request) -> dict[str, list[str]]:
        """The posted fields of a genuine Twilio request, or the HTTP error to answer."""
        return await verified_request(
            request,
            validator=self._validator,
            public_base=self._public_base(),
            max_body_bytes=self.settings.max_body_bytes,
        )

    async def _inbound(self, request: web.Request) -> web.StreamResponse:
        ctx = self._ctx
        assert ctx is not None
        fields = await self._verified_fields(request)
        try:
            inbound = parse.parse_inbound(
                fields,
                inbox=self.name,
                account_sid=self.settings.account_sid,
                received_at=ctx.clock(),
                max_media=self.settings.max_media_count,
                idempotency_token=request.headers.get("I-Twilio-Idempotency-Token"),
            )
        except parse.BadWebhook as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        key = inbound.envelope.idempotency_key
        if self._flights.remembered(key):  # acknowledged lately: no media download again
            await ctx.sink.redelivered(self.channel, self.name, key)
            return _twiml()
        try:
            # a concurrent copy of the same message is answered when the first is stored
            _, first = await self._flights.run(key, lambda: self._store_logged(inbound))
        except Exception:
            raise web.HTTPServiceUnavailable(text="not stored; retry") from None
        if not first:
            await ctx.sink.redelivered(self.channel, self.name, key)
        return _twiml()

    async def _store_logged(self, inbound: parse.Inbound) -> Accepted:
        try:
            return await self._store(inbound)
        except Exception:
            assert self._ctx is not None
            self._ctx.logger.exception(
                "storing %s failed; Twilio will retry", inbound.envelope.idempotency_key
            )
            raise

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
        grouped = await self._verified_fields(request)
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
        return await media_route.serve(self._ctx, request)

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
            fields["content_variables"] = parse.template_variables(
                template.variables, outbound.template.variables
            )
        else:
            fields["body"] = outbound.text
        if outbound.attachments:
            fields["media_url"] = [
                media_route.url(
                    self._ctx, self._public_base(), self.name, item.blob_ref, item.content_type
                )
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
        return segments.segments(text)

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


def _twiml() -> web.Response:
    return web.Response(text=TWIML, content_type="text/xml")
