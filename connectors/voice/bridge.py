"""Bringing a caller and an agent together: a conference named after the conversation.

On accept, the caller's call is redirected out of the provider's queue into the conference
(it waits there with the hold music) and the agent's device is called into it. When another
agent takes the conversation (a transfer), the new agent is called in and the previous
agent's leg is hung up: a blind transfer, with the caller never leaving the conference. A
callback calls the agent first, then the customer, into the same conference.

Which agent leg belongs to a conversation is kept in the connector's durable state
(``leg:<conversation>`` -> ``<agent> <CallSid>``), so a restart or another hub process knows it.
"""

from __future__ import annotations

from collections.abc import Callable

from connectors.base import AgentDevice, CallError, ConnectorContext, SendError
from connectors.voice import parse, twiml
from connectors.voice.client import VoiceClient
from connectors.voice.settings import VoiceSettings
from hub.envelope import CallEvent, Delivery, DeliveryStatus, Identity, Outbound

UrlOf = Callable[..., str]


class CallBridge:
    """Connects the calls of one voice instance to agents."""

    def __init__(
        self,
        inbox: str,
        settings: VoiceSettings,
        ctx: ConnectorContext,
        client: VoiceClient,
        url: UrlOf,
    ) -> None:
        self.inbox = inbox
        self.settings = settings
        self.ctx = ctx
        self.client = client
        self.url = url

    def _conference(self, conversation_id: str, session: str, caller: str | None) -> str:
        """The TwiML of a leg joining the conversation's conference (``caller``: the
        customer's number, for the recording's message; None for an agent's leg)."""
        recording = (
            self.url("/recording", c=caller, k="call", s=session)
            if caller is not None and self.settings.record_calls
            else None
        )
        return twiml.conference(
            conversation_id,
            caller=caller is not None,
            status_callback=self.url("/conference", s=session),
            recording_callback=recording,
            hold_music_url=self.settings.hold_music_url,
        )

    async def _event(self, session: str, event: CallEvent) -> None:
        await self.ctx.sink.call_event(self.inbox, session, event)

    async def _previous_leg(self, conversation_id: str) -> tuple[str, str] | None:
        value = await self.ctx.state.get(f"leg:{conversation_id}")
        if not value or " " not in value:
            return None
        agent, sid = value.split(" ", 1)
        return agent, sid

    async def _dial_agent(self, conversation_id: str, session: str, device: AgentDevice) -> str:
        sid = await self.client.dial(
            device.address,
            self.settings.from_,
            self._conference(conversation_id, session, None),
            self.url("/status", s=session, a=device.agent),
            self.settings.agent_ring_timeout,
        )
        await self.ctx.state.put(f"leg:{conversation_id}", f"{device.agent} {sid}")
        return sid

    async def connect_agent(self, conversation_id: str, session: str, device: AgentDevice) -> None:
        """The agent who took the conversation of thread ``session`` talks to its caller."""
        caller_sid = parse.call_sid_of(session)
        if caller_sid is None:
            raise CallError("this conversation is not a call", code="not_a_call")
        previous = await self._previous_leg(conversation_id)
        if previous is None:  # the caller still waits in the provider's queue
            try:
                await self.client.redirect(
                    caller_sid, self._conference(conversation_id, session, "")
                )
            except CallError as exc:
                await self._event(
                    session,
                    CallEvent(
                        call_sid=caller_sid,
                        state="failed",
                        at=self.ctx.clock(),
                        agent=device.agent,
                        detail=str(exc),
                    ),
                )
                raise
        leg = await self._dial_agent(conversation_id, session, device)
        if previous is not None and previous[0] != device.agent:
            await self.client.hang_up(previous[1])
            await self._event(
                session,
                CallEvent(
                    call_sid=caller_sid,
                    state="transferred",
                    at=self.ctx.clock(),
                    agent=device.agent,
                    detail=f"from {previous[0]}",
                    key=f"transfer:{leg}",
                ),
            )

    async def call_back(
        self, conversation_id: str, session: str, to: Identity, device: AgentDevice
    ) -> None:
        """Call the agent, then the customer at ``to``, into the conversation's conference."""
        if to.kind != "phone":
            raise CallError(f"a {to.kind} address cannot be called", code="not_a_number")
        await self._dial_agent(conversation_id, session, device)
        customer_sid = await self.client.dial(
            to.address,
            self.settings.from_,
            self._conference(conversation_id, session, to.address),
            self.url("/status", s=session),
            self.settings.agent_ring_timeout * 2,
        )
        await self._event(
            session,
            CallEvent(
                call_sid=customer_sid,
                state="callback_dialed",
                at=self.ctx.clock(),
                agent=device.agent,
                detail=f"to {to.address}",
            ),
        )

    async def hold(self, conversation_id: str, session: str, on: bool) -> None:
        """Hold or resume the caller in the conversation's conference; the provider's
        conference event (participant-hold/-unhold) puts it in the timeline."""
        caller_sid = parse.call_sid_of(session)
        if caller_sid is None:
            raise CallError("this conversation is not a call", code="not_a_call")
        await self.client.hold(conversation_id, caller_sid, on, self.settings.hold_music_url)

    async def speak(self, outbound: Outbound) -> Delivery:
        """Call the recipient and read them the reply's text (:class:`SendError` on failure)."""
        if outbound.recipient.kind != "phone":
            raise SendError(
                f"a call cannot reach a {outbound.recipient.kind} address",
                code="unsupported_recipient",
                retryable=False,
            )
        try:
            sid = await self.client.dial(
                outbound.recipient.address,
                self.settings.from_,
                twiml.spoken(outbound.text, self.settings.language),
                self.url("/status", s=f"reply:{outbound.message_id}"),
                self.settings.agent_ring_timeout,
            )
        except CallError as exc:
            raise SendError(str(exc), code=exc.code, retryable=exc.retryable) from None
        return Delivery(status=DeliveryStatus.QUEUED, provider_id=sid)
