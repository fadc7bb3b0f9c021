"""Twilio's REST API through the official SDK's async client, pointed at any base URL.

``edge``/``region`` rewrite host names in a way only Twilio's own hosts survive, so a
Twilio-compatible provider (SignalWire's compatibility API, Telnyx TeXML) or a test server is
reached by replacing the SDK's ``https://api.twilio.com`` prefix in :class:`BaseUrlHttpClient`.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

import aiohttp
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from connectors.base import SendError
from connectors.sms import parse
from connectors.sms.media import basic_authorization
from hub.envelope import Delivery

TWILIO_PREFIX = "https://api.twilio.com"
#: seconds before a reply's first attempt its message may seem to date from: Twilio's
#: date_created has whole seconds, and its clock is not ours
CLOCK_SLACK = 2.0


def rewrite(url: str, base_url: str) -> str:
    """``url`` with Twilio's API host replaced by ``base_url``."""
    base = base_url.rstrip("/")
    if base != TWILIO_PREFIX and url.startswith(TWILIO_PREFIX + "/"):
        return base + url[len(TWILIO_PREFIX) :]
    return url


class BaseUrlHttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]
    """The SDK's async client sending to ``base_url``, every request bounded by ``timeout``.

    ``request`` is replaced rather than extended: the SDK's passes ``timeout=None`` per request,
    which disables aiohttp's session timeout, and uses aiohttp's deprecated ``auth=``.
    """

    def __init__(self, base_url: str, timeout: float) -> None:
        super().__init__(pool_connections=False, timeout=timeout)
        self.base_url = base_url
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout), trust_env=False
        )

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the SDK's signature; the session's applies
        allow_redirects: bool = False,
    ) -> Response:
        headers = dict(headers or {})
        if auth is not None:
            headers["Authorization"] = basic_authorization(*auth)
        async with self.session.request(
            method.upper(),
            rewrite(url, self.base_url),
            params=params,
            data=data,
            headers=headers,
            allow_redirects=allow_redirects,
        ) as response:
            return Response(response.status, await response.text(), response.headers)


class TwilioSender:
    """Sends one reply, classifying every failure as retryable or not."""

    def __init__(self, account_sid: str, auth_token: str, base_url: str, timeout: float) -> None:
        self.http = BaseUrlHttpClient(base_url, timeout)
        self.client = Client(account_sid, auth_token, http_client=self.http)

    async def close(self) -> None:
        await self.http.close()

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
    """429 and 5xx are worth another try; other 4xx will fail the same way again."""
    code = str(exc.code) if exc.code else f"http_{exc.status}"
    message = parse.reason(str(exc.code) if exc.code else None, exc.msg) or exc.msg
    retryable = exc.status == 429 or exc.status >= 500
    return SendError(message or f"HTTP {exc.status}", code=code, retryable=retryable)


def template_variables(names: tuple[str, ...], values: dict[str, str]) -> str:
    """Twilio's ContentVariables: JSON of {"1": …, "2": …} from the agent's named values."""
    return json.dumps(
        {str(index): values[name] for index, name in enumerate(names, 1)}, ensure_ascii=False
    )
