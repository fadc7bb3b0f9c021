"""An SMTP server of our own (aiosmtpd), for an MX record or a forwarder pointed at the hub.

It runs on the hub's event loop. A recipient outside the allow-list is refused at RCPT (550), a
mail over the size limit at DATA (552), and the final 250 is sent only after the mail is
durably stored: if storing fails the sender gets 451 and retries, so nothing is lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from connectors.email.settings import SmtpInSettings

Handle = Callable[[bytes], Awaitable[None]]


def accepts(allowed: tuple[str, ...], address: str) -> bool:
    """Whether ``address`` is on the allow-list (exact address or ``@domain``)."""
    address = address.strip().lower()
    domain = "@" + address.rsplit("@", 1)[-1] if "@" in address else ""
    return any(item.lower() in (address, domain) for item in allowed)


class _Handler:
    def __init__(self, settings: SmtpInSettings, handle: Handle, logger: logging.Logger):
        self.settings = settings
        self.handle = handle
        self.logger = logger

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if not accepts(self.settings.recipients, address):
            return "550 5.1.1 no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        if not isinstance(raw, bytes):
            raw = str(raw or "").encode("utf-8", "surrogateescape")
        try:
            await self.handle(raw)
        except Exception:
            self.logger.exception("storing a mail received by SMTP failed; the sender retries")
            return "451 4.3.0 not stored, try again later"
        return "250 2.0.0 stored"


class SmtpReceiver:
    """The listening server; :attr:`port` is the bound port (useful with ``port: 0``)."""

    def __init__(self, settings: SmtpInSettings, handle: Handle, logger: logging.Logger) -> None:
        self.settings = settings
        self.handler = _Handler(settings, handle, logger)
        self.server: asyncio.Server | None = None
        self.port: int | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()

        def factory() -> Any:
            return SMTP(
                self.handler,
                data_size_limit=self.settings.max_message_bytes,
                enable_SMTPUTF8=True,
                decode_data=False,
                hostname="channelhub",
                ident="channelhub ESMTP",
                loop=loop,
            )

        self.server = await loop.create_server(factory, self.settings.host, self.settings.port)
        self.port = int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
