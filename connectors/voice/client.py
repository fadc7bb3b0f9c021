"""Twilio's Voice REST API (Calls) through the SDK's async client, at any ``api_base_url``.

Redirecting or hanging up a live call is retried on 429, 5xx and network errors (a few times,
briefly: a caller is waiting; doing it twice changes nothing), placing one never is (a phone
would ring twice); any other 4xx is final and comes back as a :class:`CallError` whose
message the agent sees (the caller hung up, a number the provider refuses).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
from twilio.base.exceptions import TwilioRestException

from connectors.base import CallError
from connectors.shared.twilio_rest import rest_client

T = TypeVar("T")
RETRY_DELAYS = (0.2, 0.5, 1.0)

#: Twilio error codes an agent meets on calls, in words
ERROR_REASONS = {
    20003: "the provider rejected the credentials (check account_sid and auth_token)",
    20404: "the provider does not know this call any more",
    21210: "the caller ID (`from`) is not a number of this account",
    21211: "the number to call is not a valid phone number",
    21215: "calls to this country are not enabled on the account",
    21220: "the caller hung up before the call could be connected: call back",
    13227: "calls to this country are not enabled on the account",
}


def call_error(exc: TwilioRestException) -> CallError:
    """A refused API call as a :class:`CallError` (429 and 5xx retryable)."""
    words = ERROR_REASONS.get(int(exc.code or 0), exc.msg or f"HTTP {exc.status}")
    return CallError(
        str(words),
        code=str(exc.code) if exc.code else f"http_{exc.status}",
        retryable=exc.status == 429 or exc.status >= 500,
    )


class VoiceClient:
    """Calls, redirects and hangs up calls for one account."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        base_url: str,
        session: aiohttp.ClientSession,
        timeout: float,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.client = rest_client(
            account_sid, auth_token, base_url=base_url, session=session, timeout=timeout
        )
        self._sleep = sleep

    async def _retried(self, attempt: Callable[[], Awaitable[T]], retry: bool = True) -> T:
        for delay in (*(RETRY_DELAYS if retry else ()), None):
            try:
                return await attempt()
            except TwilioRestException as exc:
                error = call_error(exc)
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = CallError(f"the provider did not answer: {exc}", code="network")
                error.retryable = True
            if not error.retryable or delay is None:
                raise error
            await self._sleep(delay)
        raise AssertionError("unreachable")

    async def redirect(self, call_sid: str, twiml: str) -> None:
        """Make a live call follow ``twiml`` now (out of the queue, into a conference)."""
        await self._retried(lambda: self.client.calls(call_sid).update_async(twiml=twiml))

    async def dial(
        self, to: str, from_: str, twiml: str, status_callback: str, ring_for: int
    ) -> str:
        """Place a call to ``to`` that follows ``twiml`` when answered; its CallSid."""
        fields: dict[str, Any] = {
            "to": to,
            "from_": from_,
            "twiml": twiml,
            "timeout": ring_for,
            "status_callback": status_callback,
            "status_callback_event": ["initiated", "ringing", "answered", "completed"],
            "status_callback_method": "POST",
        }
        # never retried here: the provider may have placed the call before its answer was lost,
        # and a phone ringing twice is worse than an error the agent sees
        call = await self._retried(lambda: self.client.calls.create_async(**fields), retry=False)
        return str(call.sid)

    async def hang_up(self, call_sid: str) -> None:
        """End a call (an agent's leg after a transfer); one that already ended is fine."""
        try:
            await self._retried(
                lambda: self.client.calls(call_sid).update_async(status="completed")
            )
        except CallError as exc:
            if exc.code not in {"21220", "20404"}:
                raise

    async def hold(self, conference: str, call_sid: str, on: bool, music: str | None) -> None:
        """Hold (``on``) or resume the participant ``call_sid`` of the conference named
        ``conference``; CallError when no such conference is in progress."""
        found = await self._retried(
            lambda: self.client.conferences.list_async(
                friendly_name=conference, status="in-progress", limit=1
            )
        )
        if not found:
            raise CallError("the call is not connected (no conference in progress)", code="no_call")
        fields: dict[str, Any] = {"hold": on}
        if on and music:
            fields["hold_url"] = music
        participant = self.client.conferences(found[0].sid).participants(call_sid)
        await self._retried(lambda: participant.update_async(**fields))
