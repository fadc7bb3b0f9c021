"""Sending SMS and WhatsApp through Twilio's Messages API (the SDK client of
:mod:`connectors.shared.twilio_rest`, at any ``api_base_url``)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

import aiohttp
from twilio.base.exceptions import TwilioRestException

from connectors.base import SendError
from connectors.shared.twilio_rest import rest_client
from connectors.sms import parse
from hub.envelope import Delivery

#: seconds before a reply's first attempt its message may seem to date from: Twilio's
#: date_created has whole seconds, and its clock is not ours
CLOCK_SLACK = 2.0


class TwilioSender:
    """Sends one reply, classifying every failure as retryable or not."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        base_url: str,
        session: aiohttp.ClientSession,
        timeout: float,
    ) -> None:
        self.client = rest_client(
            account_sid, auth_token, base_url=base_url, session=session, timeout=timeout
        )

    async def find_earlier(
        self, to: str, body: str, since: float, foreign: Collection[str] = ()
    ) -> Delivery | None:
        """A message an earlier attempt of this reply already created, if the API lists one.

        Twilio cannot deduplicate creates (its Messages API takes no idempotency key), so after
        a crash or a lost answer we look before sending again: same recipient, same text,
        created at or after the reply's first attempt (``since``, less :data:`CLOCK_SLACK`),
        and not one of the ``foreign`` ids the hub has recorded for other replies. Newest first,
        so a lost answer's own message wins over an older one with the same text.
        """
        try:
            found = await self.client.messages.list_async(to=to, limit=50)
        except TwilioRestException as exc:
            raise _send_error(exc) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SendError(f"could not check for an earlier send: {exc}", code="network") from None
        cutoff = datetime.fromtimestamp(since - CLOCK_SLACK, UTC)
        for message in found:
            created = message.date_created
            if created is None or created < cutoff:
                continue
            if message.body == body and message.sid not in foreign:
                return _delivery(message)
        return None

    async def create(self, fields: dict[str, Any]) -> Delivery:
        try:
            message = await self.client.messages.create_async(**fields)
        except TwilioRestException as exc:
            raise _send_error(exc) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SendError(f"the provider did not answer: {exc}", code="network") from None
        return _delivery(message)


def _delivery(message: Any) -> Delivery:
    code = str(message.error_code) if message.error_code else None
    return Delivery(
        status=parse.delivery_status(message.status),
        provider_id=message.sid,
        error_code=code,
        error_message=parse.reason(code, message.error_message) if code else None,
    )


def _send_error(exc: TwilioRestException) -> SendError:
    return parse.send_error(exc.status, exc.code, exc.msg)
