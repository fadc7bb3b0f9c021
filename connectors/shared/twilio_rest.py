"""Twilio's REST API through the official SDK's async interface, at any base URL.

Only the SDK's public extension points are used (twilio-python 9):

* ``Client(http_client=...)`` takes any :class:`twilio.http.AsyncHttpClient`. Ours,
  :class:`SessionHttpClient`, sends through the hub's shared aiohttp session with the inbox's
  timeout (the SDK's own client opens a session per client, and passes ``timeout=None`` per
  request, which turns a session's timeout off).
* The API domain's ``base_url`` (``client.api.base_url``), the attribute the SDK builds every
  Messages, Calls, Conferences and Queues URL from, and what the SDKs of Twilio-compatible
  providers (SignalWire's) set: so ``api_base_url`` reaches a compatible provider or a test
  server, a path included (``https://SPACE.signalwire.com/api/laml``). The SDK's
  ``edge``/``region`` settings only rewrite Twilio's own host names.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
from twilio.http import AsyncHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from connectors.shared.basic_auth import basic_authorization

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


def rest_client(
    account_sid: str,
    auth_token: str,
    *,
    base_url: str,
    session: aiohttp.ClientSession,
    timeout: float,
) -> Client:
    """An SDK client sending through ``session`` to ``base_url`` (Twilio or compatible)."""
    client = Client(account_sid, auth_token, http_client=SessionHttpClient(session, timeout))
    client.api.base_url = base_url.rstrip("/")
    return client
