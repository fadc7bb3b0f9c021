"""Echo's messages API, the I/O half of sending: one ``POST {api_url}/v1/messages``.

What the request carries and what the answer means is :mod:`echo_connector.parse`; this only
moves bytes, on the hub's shared HTTP session (never one of its own).
"""

from __future__ import annotations

import aiohttp

from connectors.base import SendError
from echo_connector import parse
from echo_connector.settings import EchoSettings
from hub.envelope import Delivery, Outbound


class EchoClient:
    """Sends replies to Echo; every failure is a :class:`~connectors.base.SendError`."""

    def __init__(self, session: aiohttp.ClientSession, settings: EchoSettings) -> None:
        self.session = session
        self.settings = settings

    async def send(self, outbound: Outbound) -> Delivery:
        url = f"{self.settings.api_url.rstrip('/')}/v1/messages"
        headers = {
            "Authorization": f"Bearer {self.settings.api_token.get_secret_value()}",
            # the same key on every retry of this reply: the provider sends it only once
            "Idempotency-Key": outbound.idempotency_key,
        }
        try:
            async with self.session.post(
                url,
                json=parse.to_request(outbound),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.settings.send_timeout),
            ) as response:
                status, body = response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SendError(f"Echo unreachable: {exc.__class__.__name__}", code="network") from None
        return parse.delivery(status, body)
