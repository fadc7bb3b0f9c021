"""The email connector's mail servers: an IMAP mailbox and our SMTP server in, a relay out.

The protocols are the shared mail transport (:mod:`connectors.shared.mail`); this is one
inbox's configuration of them. Mail is acknowledged (IMAP ``\\Seen`` or a move, SMTP's 250)
only after the ``receive`` handed to :meth:`MailServers.start` returns.
"""

from __future__ import annotations

from email.message import EmailMessage

from connectors.base import ConnectorContext, SendError
from connectors.email.settings import EmailSettings
from connectors.shared.mail.doors import MailDoors
from connectors.shared.mail.imap import Handle, MailboxFollower
from connectors.shared.mail.smtp_in import SmtpReceiver
from connectors.shared.mail.smtp_out import SmtpSender


class MailServers:
    """Where one inbox's mail comes from and where its replies go."""

    def __init__(self, settings: EmailSettings) -> None:
        self.settings = settings
        self._doors = MailDoors()
        self._relay = SmtpSender(settings.smtp) if settings.smtp is not None else None

    async def start(self, ctx: ConnectorContext, receive: Handle) -> None:
        """Open the configured doors; ``receive(raw, oversize)`` stores one mail durably."""
        await self._doors.start(
            ctx,
            receive,
            imap=self.settings.imap,
            smtp_in=self.settings.smtp_in,
            max_bytes=self.settings.max_message_bytes,
        )

    async def stop(self) -> None:
        await self._doors.stop()

    def health(self) -> str | None:
        return self._doors.health()

    @property
    def follower(self) -> MailboxFollower | None:
        return self._doors.follower

    @property
    def receiver(self) -> SmtpReceiver | None:
        return self._doors.receiver

    @property
    def relay_configured(self) -> bool:
        return self._relay is not None

    async def send(self, message: EmailMessage, recipient: str) -> None:
        """Hand ``message`` to the relay, from the inbox's address to ``recipient``;
        :class:`SendError` if there is no relay or it refuses."""
        if self._relay is None:
            raise SendError(
                "no smtp relay is configured; replies cannot leave",
                code="no_relay",
                retryable=False,
            )
        await self._relay.send(message, self.settings.address, recipient)
