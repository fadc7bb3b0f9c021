"""A real SMTP server (aiosmtpd) on a free loopback port that keeps what it receives.

``answer`` makes it refuse recipients with a given reply ("451 4.2.0 try later", "550 5.1.1 no
such user") to test how the hub treats temporary and permanent failures.
"""

from __future__ import annotations

import asyncio
import email
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email import policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import SMTP


class Relay:
    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []
        self.answer: list[str] = []  # RCPT replies to give before accepting again
        self.port = 0
        self.arrived = asyncio.Event()

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.answer:
            return self.answer.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        self.arrived.set()
        return "250 2.0.0 queued"

    def messages(self) -> list[EmailMessage]:
        return [
            email.message_from_bytes(raw, policy=policy.default)  # type: ignore[misc]
            for _, _, raw in self.received
        ]

    async def wait(self, count: int, timeout: float = 10.0) -> list[EmailMessage]:
        async def enough() -> None:
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(enough(), timeout)
        return self.messages()


@asynccontextmanager
async def running_relay() -> AsyncIterator[Relay]:
    relay = Relay()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(relay, hostname="relay.test", loop=loop), "127.0.0.1", 0
    )
    relay.port = int(server.sockets[0].getsockname()[1])
    try:
        yield relay
    finally:
        server.close()
        await server.wait_closed()
