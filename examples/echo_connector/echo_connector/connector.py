"""The Echo connector: wires :mod:`echo_connector.parse` (pure) and
:mod:`echo_connector.client` (the API calls) to the hub.

Inbound: ``POST /channels/NAME/inbound``, answered 200 only after the hub stored the message
(503 otherwise, so the provider retries); 413, 415, 403 and 400 for oversized, wrongly typed,
unsigned and malformed requests, which store nothing. Outbound: ``send`` posts to the API and
raises :class:`~connectors.base.SendError` on any failure.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

from connectors.base import Capabilities, Connector, ConnectorContext, Route, SendError
from echo_connector import parse
from echo_connector.client import EchoClient
from echo_connector.settings import EchoSettings
from hub.envelope import Delivery, Outbound

JSON = "application/json"


class EchoConnector(Connector):
    """One Echo account: its webhook in, its messages API out."""

    channel = parse.CHANNEL
    settings_model = EchoSettings
    capabilities = Capabilities(
        recipient_kinds=(parse.IDENTITY_KIND,), max_text_length=parse.MAX_TEXT
    )
    settings: EchoSettings

    def __init__(self, name: str, settings: EchoSettings) -> None:
        super().__init__(name, settings)
        self._ctx: ConnectorContext | None = None
        self._client: EchoClient | None = None
        self._secret = settings.webhook_secret.get_secret_value().encode()

    def routes(self) -> Sequence[Route]:
        return (Route("POST", "/inbound", self._inbound),)

    async def start(self, ctx: ConnectorContext) -> None:
        # a real connector checks its credentials here (one cheap API call) and fails fast
        self._ctx = ctx
        self._client = EchoClient(ctx.http, self.settings)

    async def stop(self) -> None:
        # nothing to release: the HTTP session is the hub's; safe to call any number of times
        self._ctx = None
        self._client = None

    # -- inbound -------------------------------------------------------------------------------

    async def _inbound(self, request: web.Request) -> web.StreamResponse:
        ctx = self._ctx
        if ctx is None:
            raise web.HTTPServiceUnavailable(text="the Echo connector is not started")
        limit = self.settings.max_body_bytes
        if (request.content_length or 0) > limit:
            raise web.HTTPRequestEntityTooLarge(
                max_size=limit, actual_size=request.content_length or 0
            )
        if request.content_type != JSON:
            raise web.HTTPUnsupportedMediaType(
                text=f"expected {JSON}, got {request.content_type or 'nothing'}"
            )
        body = await request.content.read(limit + 1)  # a chunked body has no Content-Length
        if len(body) > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(body))
        if not parse.verify(self._secret, body, request.headers.get("X-Echo-Signature")):
            raise web.HTTPForbidden(text="X-Echo-Signature is missing or does not match")
        try:
            envelope = parse.to_envelope(body, inbox=self.name, received_at=ctx.clock())
        except parse.BadWebhook as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        try:
            accepted = await ctx.sink.ingest(envelope)
        except Exception:
            ctx.logger.exception(
                "storing Echo message %s failed; the provider retries", envelope.provider_id
            )
            raise web.HTTPServiceUnavailable(text="not stored; retry") from None
        # only now is the message durable: acknowledge it
        return web.json_response({"received": accepted.message_id})

    # -- outbound ------------------------------------------------------------------------------

    async def send(self, outbound: Outbound) -> Delivery:
        if self._client is None:
            raise SendError("the Echo connector is not started", code="not_started")
        if outbound.recipient.kind != parse.IDENTITY_KIND:
            raise SendError(
                f"Echo cannot reach a {outbound.recipient.kind} address",
                code="unsupported_recipient",
                retryable=False,
            )
        return await self._client.send(outbound)
