"""Web chat: the customer websocket, the widget script and the demo page."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web

from connectors.base import (
    Capabilities,
    Connector,
    ConnectorContext,
    Route,
    SendError,
    Unavailable,
)
from connectors.shared.rate_limit import Buckets
from connectors.webchat import parse
from connectors.webchat.client import Windows, receive_hello, send_error, send_frame
from connectors.webchat.settings import WebChatSettings
from hub.envelope import Delivery, DeliveryStatus, Identity, Outbound

HELLO_TIMEOUT = 10.0
HARD_FRAME_LIMIT = 256 * 1024
MAX_IN_FLIGHT = 16


@dataclass(frozen=True, slots=True)
class Visitor:
    """Who is on the other end of one chat socket."""

    id: str
    name: str | None
    vouched: str | None  # a customer number the host page signed for, verified
    claimed: tuple[Identity, ...] = ()  # contact details the visitor typed, unverified


def _static(name: str) -> str:
    return resources.files("connectors.webchat").joinpath("static", name).read_text("utf-8")


class WebChatConnector(Connector):
    """Customers chat from a page that embeds ``widget.js``; agents answer live."""

    channel = "webchat"
    settings_model = WebChatSettings
    capabilities = Capabilities(threading=True, live=True)
    settings: WebChatSettings

    def __init__(self, name: str, settings: WebChatSettings) -> None:
        super().__init__(name, settings)
        self._ctx: ConnectorContext | None = None
        self._windows = Windows()
        self._buckets = Buckets(settings.rate_per_second, settings.burst)
        self._widget = _static("widget.js")
        self._page = _static("chat.html")

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, ctx: ConnectorContext) -> None:
        self._ctx = ctx
        ctx.peers.on_push(self._windows.push)  # replies sent by another hub process

    async def stop(self) -> None:
        await self._windows.close_all(1001, b"server shutting down")

    def routes(self) -> Sequence[Route]:
        return (
            Route("GET", "/ws", self._socket, alias="/ws/chat"),
            Route("GET", "/widget.js", self._widget_script, alias="/chat/widget.js"),
            Route("GET", "/", self._demo_page, alias="/chat/"),
        )

    # -- outbound --------------------------------------------------------------------------

    async def send(self, outbound: Outbound) -> Delivery:
        """Push a reply to the visitor's open windows (here and, with several hub processes, on
        the others); otherwise they see it on their next visit."""
        if outbound.recipient.kind != parse.IDENTITY_KIND:
            raise SendError(
                f"web chat cannot reach a {outbound.recipient.kind} address",
                code="unsupported_recipient",
                retryable=False,
            )
        text = parse.encode(
            "message",
            id=outbound.message_id,
            **{"from": "agent"},
            text=outbound.text,
            at=outbound.created_at,
            automatic=outbound.author is None,  # the hub's own auto-reply, no agent wrote it
        )
        delivered = await self._windows.push(outbound.recipient.address, text)
        if self._ctx is not None:  # the visitor's windows on other hub processes, if any
            await self._ctx.peers.push(outbound.recipient.address, text)
        # SENT: stored and shown when the visitor comes back; DELIVERED: on their screen now
        status = DeliveryStatus.DELIVERED if delivered else DeliveryStatus.SENT
        return Delivery(status=status, provider_id=outbound.message_id)

    # -- HTTP ------------------------------------------------------------------------------

    def _ws_path(self, request: web.Request) -> str:
        return f"/channels/{self.name}/ws" if request.path.startswith("/channels/") else "/ws/chat"

    async def _widget_script(self, request: web.Request) -> web.StreamResponse:
        script = self._widget.replace("__CHANNELHUB_WS_PATH__", self._ws_path(request))
        return web.Response(
            text=script,
            content_type="application/javascript",
            headers={"Cache-Control": "no-cache"},
        )

    async def _demo_page(self, request: web.Request) -> web.StreamResponse:
        script = (
            f"/channels/{self.name}/widget.js"
            if request.path.startswith("/channels/")
            else "/chat/widget.js"
        )
        return web.Response(
            text=self._page.replace("__WIDGET_SRC__", script),
            content_type="text/html",
            headers={
                "Content-Security-Policy": "default-src 'self'; "
                "style-src 'self' 'unsafe-inline'; connect-src 'self' ws: wss:"
            },
        )

    def _origin_allowed(self, request: web.Request) -> bool:
        origin = request.headers.get("Origin")
        if origin is None:
            return True  # not a browser; cannot be abused cross-site
        allowed = self.settings.allowed_origins
        if "*" in allowed or origin in allowed:
            return True
        return urlsplit(origin).netloc == request.host

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        ctx = self._ctx
        if ctx is None:
            raise web.HTTPServiceUnavailable(text="web chat is not started")
        if not self._origin_allowed(request):
            raise web.HTTPForbidden(text="this site may not embed the chat")
        socket = web.WebSocketResponse(
            max_msg_size=HARD_FRAME_LIMIT, heartbeat=30.0, compress=self.settings.compression
        )
        await socket.prepare(request)
        hello = await receive_hello(
            socket, max_chars=self.settings.max_message_chars, wait=HELLO_TIMEOUT
        )
        if hello is None:
            return socket
        visitor = parse.verify_token(ctx.secret, hello.token) if hello.token else None
        if hello.token and visitor is None:
            await socket.send_str(
                parse.encode(
                    "error",
                    code="invalid_token",
                    message="unknown visitor token; a new conversation starts",
                )
            )
        if visitor is None:
            token, visitor = parse.issue_token(ctx.secret, os.urandom(16))
        else:
            token = hello.token or ""
        if self._windows.count(visitor) >= self.settings.max_sockets_per_visitor:
            await socket.send_str(
                parse.encode(
                    "error", code="too_many_windows", message="close another chat window first"
                )
            )
            await socket.close(code=4429, message=b"too many windows")
            return socket
        try:
            history = await ctx.history.history(self.name, visitor, self.settings.history_limit)
        except Unavailable as exc:  # no welcome without the history: say so, try again later
            ctx.logger.error("no chat history for a new window: %s", exc)
            await send_error(socket, "unavailable", "the chat is unavailable; try again shortly")
            await socket.close(code=1013, message=b"store unavailable; try again later")
            return socket
        await socket.send_str(
            parse.encode(
                "welcome",
                token=token,
                visitor=visitor,
                title=self.settings.title,
                welcome=self.settings.welcome,
                history=[parse.history_entry(item) for item in history],
            )
        )
        if self._windows.add(visitor, socket):
            await self._presence(ctx, visitor, True)
        try:
            secret = self.settings.identity_secret
            vouched = None
            if secret is not None and hello.customer:
                vouched = parse.vouched_customer(
                    secret.get_secret_value().encode(), hello, ctx.clock()
                )
                if vouched is None:
                    await send_error(
                        socket,
                        "invalid_customer_signature",
                        "the customer signature is invalid or expired; chatting as a guest",
                    )
            visiting = Visitor(visitor, hello.name, vouched, parse.claims(hello))
            await self._converse(ctx, socket, visiting)
        finally:
            if self._windows.discard(visitor, socket):
                self._buckets.forget(visitor)
                await self._presence(ctx, visitor, False)
        return socket

    async def _presence(self, ctx: ConnectorContext, visitor: str, present: bool) -> None:
        try:
            await ctx.sink.customer_presence(self.name, visitor, present)
        except Exception as exc:  # only a signal: never let it break the chat
            ctx.logger.warning("reporting visitor presence failed: %s", exc)

    async def _converse(
        self, ctx: ConnectorContext, socket: web.WebSocketResponse, visitor: Visitor
    ) -> None:
        # Frames are stored concurrently (up to MAX_IN_FLIGHT per window) so a fast typist's
        # messages share one commit; tasks start in frame order, so they are queued for the
        # store in that order too. Acks may overtake each other and carry the client id.
        in_flight: set[asyncio.Task[None]] = set()
        try:
            async for message in socket:
                if message.type is WSMsgType.ERROR:
                    break
                if message.type is not WSMsgType.TEXT:
                    await send_error(socket, "bad_frame", "frames must be text JSON")
                    continue
                try:
                    command = parse.parse_frame(
                        message.data, max_chars=self.settings.max_message_chars
                    )
                except parse.ChatProtocolError as exc:
                    await send_error(socket, exc.code, exc.message, exc.client_id)
                    continue
                if isinstance(command, parse.Ping):
                    await socket.send_str(parse.encode("pong"))
                elif isinstance(command, parse.Hello):
                    await send_error(socket, "bad_frame", "already said hello")
                elif self._buckets.allow(visitor.id, ctx.clock()):
                    if len(in_flight) >= MAX_IN_FLIGHT:
                        _, pending = await asyncio.wait(
                            in_flight, return_when=asyncio.FIRST_COMPLETED
                        )
                        in_flight.intersection_update(pending)
                    task = asyncio.create_task(self._receive(ctx, socket, visitor, command))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                else:
                    await send_error(
                        socket, "rate_limited", "slow down a little", command.client_id
                    )
        finally:
            if in_flight:  # stored messages still get their ack if the socket is open
                await asyncio.wait(in_flight)

    async def _receive(
        self,
        ctx: ConnectorContext,
        socket: web.WebSocketResponse,
        visitor: Visitor,
        say: parse.Say,
    ) -> None:
        now = ctx.clock()
        envelope = parse.to_envelope(
            self.name,
            visitor.id,
            say,
            now=now,
            name=visitor.name,
            vouched=visitor.vouched,
            claimed=visitor.claimed,
        )
        try:
            accepted = await ctx.sink.ingest(envelope)
        except Exception as exc:  # Unavailable, or a bug: either way it is not stored
            if isinstance(exc, Unavailable):
                ctx.logger.error("storing a chat message failed: %s", exc)
            else:
                ctx.logger.exception("storing a chat message failed")
            await send_error(
                socket, "unavailable", "not saved; please send it again", say.client_id
            )
            return
        await send_frame(
            socket,
            parse.encode(
                "ack",
                client_id=say.client_id,
                id=accepted.message_id,
                duplicate=accepted.duplicate,
                at=now,
            ),
        )
