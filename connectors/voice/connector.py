"""Phone calls: Twilio's voice webhooks in, TwiML out, calls bridged through its REST API.

``POST /channels/NAME/voice`` is the number's "a call comes in" URL and
``POST /channels/NAME/status`` its call status callback; every other route is one the TwiML
answers name (the wait URL, the key a caller presses, the queue's result, recordings and
transcriptions), all signed by Twilio like the first. See docs/voice.md for the flow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import urlencode

from aiohttp import web
from twilio.request_validator import RequestValidator

from connectors.base import (
    Accepted,
    AgentDevice,
    CallError,
    Capabilities,
    Connector,
    ConnectorContext,
    Route,
    SendError,
)
from connectors.shared.media_fetcher import MediaFetcher
from connectors.shared.single_flight import SingleFlight
from connectors.shared.twilio_webhooks import BadWebhook, verified_request
from connectors.voice import parse, twiml
from connectors.voice.bridge import CallBridge
from connectors.voice.client import VoiceClient
from connectors.voice.recordings import Recordings
from connectors.voice.settings import AfterWait, VoiceSettings
from hub.envelope import (
    CallEvent,
    Delivery,
    Envelope,
    Identity,
    Outbound,
)

RECENT = 4096  # calls answered lately, so a retried webhook costs no store round trip
Fields = Mapping[str, list[str]]


class VoiceConnector(Connector):
    """A phone number on Twilio Programmable Voice or a Twilio-compatible provider."""

    channel = "voice"
    settings_model = VoiceSettings
    capabilities = Capabilities(calls=True, attachments=True, max_text_length=2000)
    settings: VoiceSettings

    def __init__(self, name: str, settings: VoiceSettings) -> None:
        super().__init__(name, settings)
        self._ctx: ConnectorContext | None = None
        self._validator = RequestValidator(settings.auth_token.get_secret_value())
        self._client: VoiceClient | None = None
        self._media: MediaFetcher | None = None
        self._bridge: CallBridge | None = None
        self._recordings: Recordings | None = None
        self._flights: SingleFlight[Accepted] = SingleFlight(RECENT)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, ctx: ConnectorContext) -> None:
        self._ctx = ctx
        if self.settings.business_hours is not None:
            try:
                ctx.business_hours(self.settings.business_hours, ctx.clock())
            except KeyError:
                raise ValueError(
                    f"{self.name}: business_hours {self.settings.business_hours!r} is not a "
                    "calendar of hub.yaml's business_hours"
                ) from None
        token = self.settings.auth_token.get_secret_value()
        self._client = VoiceClient(
            self.settings.account_sid,
            token,
            base_url=self.settings.api_base_url,
            session=ctx.http,
            timeout=self.settings.send_timeout,
        )
        self._media = MediaFetcher(
            allowed_hosts=self.settings.media_hosts,
            allow_private=self.settings.media_allow_private,
            max_bytes=self.settings.max_recording_bytes,
            timeout=self.settings.media_timeout,
            auth=(self.settings.account_sid, token),
        )
        await self._media.start()
        self._bridge = CallBridge(self.name, self.settings, ctx, self._client, self._url)
        self._recordings = Recordings(
            self.name, ctx, self._media, self._store, self._event, self._seen
        )

    async def stop(self) -> None:
        self._client = self._bridge = self._recordings = None  # the session is the hub's
        if self._media is not None:
            await self._media.close()
            self._media = None

    def routes(self) -> Sequence[Route]:
        return (
            Route("POST", "/voice", self._incoming),
            Route("POST", "/wait", self._wait),
            Route("POST", "/choice", self._choice),
            Route("POST", "/queue-result", self._queue_result),
            Route("POST", "/recorded", self._recorded),
            Route("POST", "/recording", self._recording),
            Route("POST", "/transcription", self._transcription),
            Route("POST", "/status", self._status),
            Route("POST", "/conference", self._conference),
        )

    # -- helpers ---------------------------------------------------------------------------

    def _url(self, path: str, **query: str) -> str:
        """The absolute URL of one of our routes, as Twilio will call (and sign) it."""
        assert self._ctx is not None
        base = (self.settings.public_url or self._ctx.public_url).rstrip("/")
        # ":" and "@" stay as they are: a client that normalizes the URL then sends the bytes
        # Twilio signed (a SIP address, a thread key)
        suffix = f"?{urlencode(query, safe=':@')}" if query else ""
        return f"{base}/channels/{self.name}{path}{suffix}"

    def _urls(self, language: str, caller: str) -> twiml.Urls:
        return twiml.Urls(
            wait=self._url("/wait", l=language),
            choice=self._url("/choice", l=language, c=caller),
            queue_result=self._url("/queue-result", l=language, c=caller),
            recorded=self._url("/recorded"),
            recording=self._url("/recording", c=caller, k="voicemail"),
            transcription=self._url("/transcription", c=caller),
        )

    async def _fields(self, request: web.Request) -> Fields:
        """The fields of a genuine Twilio request of this account, or the HTTP error."""
        assert self._ctx is not None
        fields = await verified_request(
            request,
            validator=self._validator,
            public_base=self.settings.public_url or self._ctx.public_url,
            max_body_bytes=self.settings.max_body_bytes,
            json_allowed=False,
        )
        try:
            parse.check_account(fields, self.settings.account_sid)
        except BadWebhook as exc:
            raise web.HTTPForbidden(text=str(exc)) from None
        return fields

    def _language(self, request: web.Request) -> str:
        given = request.query.get("l", "")[:16]
        return given or self.settings.language

    async def _event(self, session: str, event: CallEvent) -> None:
        """Record a timeline event; 503 (the provider retries) when it cannot be stored."""
        assert self._ctx is not None
        try:
            await self._ctx.sink.call_event(self.name, session, event)
        except Exception:
            self._ctx.logger.exception("recording %s of %s failed", event.state, event.call_sid)
            raise web.HTTPServiceUnavailable(text="not recorded; retry") from None

    # -- the call ----------------------------------------------------------------------------

    async def _incoming(self, request: web.Request) -> web.StreamResponse:
        """A new call: stored as its conversation's first message, then answered with TwiML
        (only once stored: a store that is down answers 503 and Twilio plays its fallback)."""
        ctx = self._ctx
        assert ctx is not None
        fields = await self._fields(request)
        language = parse.language(fields, self.settings.country_languages, self.settings.language)
        try:
            call = parse.incoming_call(
                fields,
                inbox=self.name,
                account_sid=self.settings.account_sid,
                received_at=ctx.clock(),
                language=language,
            )
        except BadWebhook as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        if not await self._seen(call.envelope.idempotency_key):
            await self._store(call.envelope)  # 503 when it cannot be: Twilio's fallback plays
        hours = self.settings.business_hours
        open_now = hours is None or ctx.business_hours(hours, ctx.clock())
        return _twiml(
            twiml.answer(
                self.settings,
                inbox=self.name,
                language=language,
                urls=self._urls(language, call.caller),
                open_now=open_now,
            )
        )

    async def _wait(self, request: web.Request) -> web.StreamResponse:
        fields = await self._fields(request)
        try:
            position, waited = parse.waiting(fields)
        except BadWebhook as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        language = self._language(request)
        return _twiml(
            twiml.hold(
                self.settings,
                language=language,
                position=position,
                waited=waited,
                urls=self._urls(language, request.query.get("c", "")),
            )
        )

    async def _choice(self, request: web.Request) -> web.StreamResponse:
        """A key pressed while waiting: remembered for the queue's result, then out of line."""
        assert self._ctx is not None
        fields = await self._fields(request)
        try:
            chosen = parse.choice(fields)
            sid = parse.call_sid(fields)
        except BadWebhook as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        if chosen is None:
            return _twiml(twiml.keep_waiting())
        await self._ctx.state.put(f"leave:{sid}", chosen)
        return _twiml(twiml.leave())

    async def _queue_result(self, request: web.Request) -> web.StreamResponse:
        """The caller is out of line: hung up (abandoned), left (voicemail or callback), or
        taken out by an agent's accept (nothing more to say here)."""
        ctx = self._ctx
        assert ctx is not None
        fields = await self._fields(request)
        try:
            result, waited = parse.queue_result(fields)
            sid = parse.call_sid(fields)
        except BadWebhook as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        session = parse.session_of(sid)
        now = ctx.clock()
        if result in {"bridged", "bridging-in-process", "redirected"}:
            return _twiml(twiml.keep_waiting())
        if result == "hangup":
            await ctx.sink.customer_presence(self.name, session, False)
            abandoned = CallEvent(call_sid=sid, state="abandoned", at=now, duration=int(waited))
            await self._event(session, abandoned)
            return _twiml(twiml.hang_up())
        chosen = await ctx.state.get(f"leave:{sid}")
        choice = (
            AfterWait(chosen) if chosen in {"voicemail", "callback"} else (self.settings.after_wait)
        )
        caller = request.query.get("c", "")[:64]
        language = self._language(request)
        if choice is AfterWait.CALLBACK:
            envelope = parse.follow_up(
                sid=sid,
                caller=caller,
                inbox=self.name,
                key=f"twilio-callback:{sid}",
                text=f"Callback requested by {caller}",
                received_at=now,
                metadata={"call": {"sid": sid, "kind": "callback", "number": caller}},
            )
            await self._store(envelope)
            await self._event(session, CallEvent(call_sid=sid, state="callback_requested", at=now))
        else:
            await self._event(session, CallEvent(call_sid=sid, state="voicemail", at=now))
        await ctx.state.delete(f"leave:{sid}")
        urls = self._urls(language, caller)
        return _twiml(twiml.after_wait(self.settings, choice, language, urls))

    async def _recorded(self, request: web.Request) -> web.StreamResponse:
        await self._fields(request)
        return _twiml(twiml.hang_up())

    async def _seen(self, key: str) -> bool:
        """Whether ``key`` was stored lately (then counted as a redelivery)."""
        if not self._flights.remembered(key):
            return False
        assert self._ctx is not None
        await self._ctx.sink.redelivered(self.channel, self.name, key)
        return True

    async def _store(self, envelope: Envelope) -> Accepted:
        """Store a message of the call once (a concurrent copy waits for the first); 503 when
        the store cannot take it, so the provider retries."""
        ctx = self._ctx
        assert ctx is not None
        try:
            accepted, first = await self._flights.run(
                envelope.idempotency_key, lambda: ctx.sink.ingest(envelope)
            )
        except Exception:
            ctx.logger.exception("storing %s failed", envelope.idempotency_key)
            raise web.HTTPServiceUnavailable(text="not stored; retry") from None
        if not first:
            await ctx.sink.redelivered(self.channel, self.name, envelope.idempotency_key)
        return accepted

    # -- what a call leaves behind (connectors.voice.recordings) ---------------------------

    async def _recording(self, request: web.Request) -> web.StreamResponse:
        assert self._recordings is not None
        fields = await self._fields(request)
        try:
            await self._recordings.recording(fields, request.query)
        except BadWebhook as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        return web.Response(status=204)

    async def _transcription(self, request: web.Request) -> web.StreamResponse:
        assert self._recordings is not None
        fields = await self._fields(request)
        try:
            await self._recordings.transcription(fields, request.query)
        except BadWebhook as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        return web.Response(status=204)

    # -- call progress ---------------------------------------------------------------------

    async def _status(self, request: web.Request) -> web.StreamResponse:
        """A call status callback: the caller's call (the number's status URL) or an agent's
        or callback leg we placed (``?s=`` names the conversation's thread, ``?a=`` the
        agent). A repeated callback records nothing new."""
        ctx = self._ctx
        assert ctx is not None
        fields = await self._fields(request)
        agent = request.query.get("a") or None
        try:
            event = parse.status_event(fields, ctx.clock(), agent=agent)
            sid = parse.call_sid(fields)
        except BadWebhook as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        session = request.query.get("s") or parse.session_of(sid)
        if event is not None:
            await self._event(session[:200], event)
        return web.Response(status=204)

    async def _conference(self, request: web.Request) -> web.StreamResponse:
        """Conference events: hold and resume of a participant reach the timeline."""
        ctx = self._ctx
        assert ctx is not None
        fields = await self._fields(request)
        try:
            sid = parse.call_sid(fields) if "CallSid" in fields else None
        except BadWebhook as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        kind = parse.one(fields, "StatusCallbackEvent") or ""
        state = parse.CONFERENCE_EVENTS.get(kind)
        session = request.query.get("s", "")[:200]
        sequence = (parse.one(fields, "SequenceNumber") or "")[:20]
        if state is not None and sid is not None and session:
            key = f"{sid}:{kind}:{sequence}" if sequence else None
            event = CallEvent(call_sid=sid, state=state, at=ctx.clock(), key=key)
            await self._event(session, event)
        return web.Response(status=204)

    # -- the hub's requests ----------------------------------------------------------------

    def _bridged(self) -> CallBridge:
        if self._bridge is None:
            raise CallError("the voice connector is not started", code="not_started")
        return self._bridge

    async def connect_agent(self, conversation_id: str, session: str, device: AgentDevice) -> None:
        await self._bridged().connect_agent(conversation_id, session, device)

    async def call_back(
        self, conversation_id: str, session: str, to: Identity, device: AgentDevice
    ) -> None:
        await self._bridged().call_back(conversation_id, session, to, device)

    async def hold_call(self, conversation_id: str, session: str, agent: str, on: bool) -> None:
        await self._bridged().hold(conversation_id, session, on)

    async def send(self, outbound: Outbound) -> Delivery:
        """A text reply on a call's conversation is read to the customer in a call from the
        caller ID (a phone number has no inbox; offer the SMS channel for text)."""
        if self._bridge is None:
            raise SendError("the voice connector is not started", code="not_started")
        return await self._bridge.speak(outbound)


def _twiml(document: str) -> web.Response:
    return web.Response(text=document, content_type="text/xml")
