"""The fax gateway for fax services that speak mail: their mail read, replies mailed. I/O.

Nothing here re-implements email: mail arrives through the shared mail doors (an IMAP mailbox
followed with IDLE, an SMTP server of our own), is read by the shared mail reader in the fax
worker pool, and replies leave through the shared SMTP sender. What the mail means, and the
mail a reply becomes, is :mod:`connectors.fax.parse_email`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import partial

from connectors.base import Route, SendError
from connectors.fax import parse_email
from connectors.fax.client import Hooks
from connectors.fax.parse import IncomingFax, OutgoingFax
from connectors.fax.settings import MailGatewaySettings
from connectors.shared.mail import reader
from connectors.shared.mail.doors import MailDoors
from connectors.shared.mail.smtp_in import SmtpReceiver
from connectors.shared.mail.smtp_out import SmtpSender
from hub.envelope import Delivery, DeliveryStatus


class MailGateway:
    name = "email"

    def __init__(
        self,
        settings: MailGatewaySettings,
        run: Callable[[Callable[[], IncomingFax]], Awaitable[IncomingFax]],
    ) -> None:
        self.settings = settings
        self._run = run  # runs a job in the fax worker pool
        self._hooks: Hooks | None = None
        self._options: reader.Options | None = None
        self._doors = MailDoors()
        self._sender = SmtpSender(settings.smtp) if settings.smtp is not None else None

    def routes(self) -> Sequence[Route]:
        return ()

    async def start(self, hooks: Hooks) -> None:
        self._hooks = hooks
        ctx = hooks.ctx
        domain = self.settings.address.rpartition("@")[2] or "localhost"
        self._options = reader.Options(
            inbox=ctx.instance,
            secret=ctx.secret,
            id_domain=domain,
            max_bytes=self.settings.max_message_bytes,
        )
        await self._doors.start(
            ctx,
            self.receive,
            imap=self.settings.imap,
            smtp_in=self.settings.smtp_in,
            max_bytes=self.settings.max_message_bytes,
        )

    async def stop(self) -> None:
        await self._doors.stop()

    def health(self) -> str | None:
        return self._doors.health()

    @property
    def receiver(self) -> SmtpReceiver | None:
        return self._doors.receiver

    async def receive(self, raw: bytes, oversize: int | None) -> None:
        """One fax mail, stored before IMAP marks it or SMTP answers 250."""
        assert self._hooks is not None and self._options is not None
        job = partial(
            parse_email.fax_of_mail,
            raw,
            self._options,
            self.settings.number_pattern,
            self._hooks.ctx.clock(),
        )
        try:
            fax = await self._run(job)
        except reader.BadMail as exc:
            fax = parse_email.unreadable(raw, self._options.inbox, exc)
        if oversize is not None:  # only the header came; the mail stays in the mailbox
            fax = parse_email.oversized(fax, oversize)
        await self._hooks.receive(fax)

    async def send(self, fax: OutgoingFax) -> Delivery:
        if self._sender is None or not self.settings.gateway_domain:
            raise SendError(
                "email-to-fax needs smtp and gateway_domain in this line's email settings",
                code="no_relay",
                retryable=False,
            )
        message, message_id = parse_email.reply_mail(
            fax, self.settings.address, self.settings.gateway_domain
        )
        await self._sender.send(message, self.settings.address, str(message["To"]))
        return Delivery(status=DeliveryStatus.SENT, provider_id=message_id)
