"""Twilio's REST API through the official SDK's async interface, at any base URL.

Only the SDK's public extension points are used (twilio-python 9):

* ``Client(http_client=...)`` takes any :class:`twilio.http.AsyncHttpClient`. Ours,
  :class:`SessionHttpClient`, sends through the hub's shared aiohttp session with the inbox's
  ``send_timeout`` (the SDK's own client opens a session per client, and passes
  ``timeout=None`` per request, which turns a session's timeout off).
* The API domain's ``base_url`` (``client.api.base_url``), the attribute the SDK builds every
  Messages URL from, and what the SDKs of Twilio-compatible providers (SignalWire's) set: so
  ``api_base_url`` reaches a compatible provider or a test server, a path included
  (``https://SPACE.signalwire.com/api/laml``). The SDK's ``edge``/``region`` settings only
  rewrite Twilio's own host names.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

import aiohttp
from twilio.base.exceptions import TwilioRestException
from twilio.http import AsyncHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from connectors.base import SendError
from connectors.shared.basic_auth import basic_authorization
from connectors.sms import parse
from hub.envelope import Delivery

#: seconds before a reply's first attempt its message may seem to date from: Twilio's
#: date_created has whole seconds, and its clock is not ours
CLOCK_SLACK = 2.0
_logger = logging.getLogger(__name__)


class SessionHttpClient(AsyncHttpClient):  # type: ignore[misc]
    """The SDK's HTTP interface on an aiohttp session we own the use of, every request
    bounded by ``timeout`` seconds (the per-request ``timeout`` the SDK passes is ignored)."""

    def __init__(self, session: aiohttp.ClientSession, timeout: float) -> None:
        super().__init__(_logger, True, timeout)
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the SDK's signature; ours applies
        allow_redirects: bool = False,
    ) -> Response:
        headers = dict(headers or {})
        if auth is not None:
            headers["Authorization"] = basic_authorization(*auth)
        async with self._session.request(
            method.upper(),
            url,
            params=params,
            data=data,
            headers=headers,
            allow_redirects=allow_redirects,
            timeout=self._timeout,
        ) as response:
            return Response(response.status, await response.text(), response.headers)


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
        self.client = Client(
            account_sid, auth_token, http_client=SessionHttpClient(session, timeout)
        )
        self.client.api.base_url = base_url.rstrip("/")

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
