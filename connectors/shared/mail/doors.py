"""The two ways mail reaches an inbox, run together: an IMAP mailbox followed with IDLE, and
the hub's own SMTP server. Used by the email connector and by the fax connector's
fax-to-email gateway, so both acknowledge mail the same way (only after ``receive`` returns).
"""

from __future__ import annotations

import asyncio
import contextlib

from connectors.base import ConnectorContext
from connectors.shared.mail.imap import Handle, MailboxFollower
from connectors.shared.mail.settings import ImapSettings, SmtpInSettings
from connectors.shared.mail.smtp_in import SmtpReceiver


class MailDoors:
    def __init__(self) -> None:
        self.follower: MailboxFollower | None = None
        self.receiver: SmtpReceiver | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(
        self,
        ctx: ConnectorContext,
        receive: Handle,
        *,
        imap: ImapSettings | None,
        smtp_in: SmtpInSettings | None,
        max_bytes: int,
    ) -> None:
        """Open whichever doors are configured; ``receive(raw, oversize)`` stores one mail."""
        if smtp_in is not None:

            async def whole(raw: bytes) -> None:  # SMTP refuses oversized mail itself (552)
                await receive(raw, None)

            self.receiver = SmtpReceiver(smtp_in, whole, ctx.logger)
            await self.receiver.start()
        if imap is not None:
            self.follower = MailboxFollower(
                imap, receive, ctx.state, ctx.logger, ctx.clock, max_bytes=max_bytes
            )
            self._task = asyncio.create_task(self.follower.run(), name=f"imap-{ctx.instance}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.follower is not None:
            await self.follower.close()
        if self.receiver is not None:
            await self.receiver.stop()
            self.receiver = None

    def health(self) -> str | None:
        if self.follower is not None and self.follower.problem is not None:
            return f"IMAP: {self.follower.problem}"
        return None
