"""Fax-to-email in, email-to-fax out: the gateway for fax servers and providers that speak mail
(HylaFAX+ ``faxrcvd``, Sinch's ``…@sinchfax.com``, most fax providers).

Nothing here re-implements email: mail arrives through the email connector's IMAP follower or
SMTP server, is parsed by its parser (in the fax worker pool), and replies leave through its
SMTP sender. What is fax-specific: the sender's number is found in the Subject (then the From
header) with ``number_pattern``, the first PDF or TIFF attachment is the fax, and a reply is a
mail to ``{number}@gateway_domain`` with the rendered PDF attached.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable, Sequence
from email.message import EmailMessage
from email.utils import formatdate
from functools import partial

from connectors.base import Route, SendError
from connectors.email import parse as mail_parse
from connectors.email.doors import MailDoors
from connectors.email.smtp_in import SmtpReceiver
from connectors.email.smtp_out import SmtpSender
from connectors.fax.documents import sniff
from connectors.fax.gateway import Hooks, IncomingFax, OutgoingFax, reply_ref
from connectors.fax.settings import MailGatewaySettings
from hub.envelope import Delivery, DeliveryStatus

_DIGITS = re.compile(r"[^0-9+]")


def fax_of_mail(
    raw: bytes, options: mail_parse.Options, pattern: str, received_at: float
) -> IncomingFax:
    """The fax a gateway's mail carries (pure; runs in the worker pool)."""
    parsed = mail_parse.parse_mail(raw, options, received_at)
    envelope = parsed.envelope
    subject = envelope.subject or ""
    from_header = f"{envelope.sender.display_name or ''} {envelope.sender.address}"
    number = ""
    for text in (subject, from_header, envelope.text[:2000]):
        found = re.search(pattern, text)
        if found and found.group("number"):
            number = _DIGITS.sub("", found.group("number"))
            break
    document = next((p for p in parsed.parts if sniff(p.data) is not None), None)
    return IncomingFax(
        fax_id=envelope.idempotency_key.removeprefix("email:"),
        from_number=number or "anonymous",
        to_number="",
        data=document.data if document is not None else None,
        problem=None if document is not None else "the mail carries no PDF or TIFF document",
        metadata={
            "mail_subject": subject[:300],
            "mail_from": envelope.sender.address[:320],
            **({"message_id": envelope.provider_id} if envelope.provider_id else {}),
        },
    )


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
        self._options: mail_parse.Options | None = None
        self._doors = MailDoors()
        self._sender = SmtpSender(settings.smtp) if settings.smtp is not None else None

    def routes(self) -> Sequence[Route]:
        return ()

    async def start(self, hooks: Hooks) -> None:
        self._hooks = hooks
        ctx = hooks.ctx
        domain = self.settings.address.rpartition("@")[2] or "localhost"
        self._options = mail_parse.Options(
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
            fax_of_mail, raw, self._options, self.settings.number_pattern, self._hooks.ctx.clock()
        )
        try:
            fax = await self._run(job)
        except mail_parse.BadMail as exc:
            fax = IncomingFax(
                # all of the mail: two unreadable mails with the same body are two faxes
                fax_id=mail_parse.raw_key(raw, self._options.inbox).removeprefix("email:"),
                from_number="anonymous",
                to_number="",
                data=None,
                problem=f"the mail could not be read: {exc}",
            )
        if oversize is not None:  # only the header came; the mail stays in the mailbox
            fax = dataclasses.replace(
                fax,
                data=None,
                problem=f"the mail is {oversize / 1e6:.1f} MB, over this line's limit; "
                "it was left in the mailbox",
            )
        await self._hooks.receive(fax)

    async def send(self, fax: OutgoingFax) -> Delivery:
        if self._sender is None or not self.settings.gateway_domain:
            raise SendError(
                "email-to-fax needs smtp and gateway_domain in this line's email settings",
                code="no_relay",
                retryable=False,
            )
        number = fax.to_number.lstrip("+")
        if not number.isdigit():
            raise SendError(
                f"{fax.to_number!r} is not a fax number", code="bad_recipient", retryable=False
            )
        message = EmailMessage()
        message["From"] = self.settings.address
        message["To"] = f"{number}@{self.settings.gateway_domain}"
        message["Subject"] = (fax.subject or "Fax").replace("\r", " ").replace("\n", " ")[:200]
        message["Date"] = formatdate(fax.created_at, usegmt=True)
        domain = self.settings.address.rpartition("@")[2] or "localhost"
        # from the whole key, hashed: the same on a retry (the relay sees one mail) and never
        # shared by two replies (a cut or cleaned key was, e.g. behind a long agent id)
        message_id = f"<fax.{reply_ref(fax.key)}@{domain}>"
        message["Message-ID"] = message_id
        message.set_content(f"Fax to {fax.to_number}, {fax.pages} page(s), attached.\n")
        message.add_attachment(fax.pdf, maintype="application", subtype="pdf", filename="fax.pdf")
        await self._sender.send(message, self.settings.address, str(message["To"]))
        return Delivery(status=DeliveryStatus.SENT, provider_id=message_id.strip("<>"))
