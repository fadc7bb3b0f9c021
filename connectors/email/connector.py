"""Email: IMAP (IDLE) and an optional SMTP server in, an SMTP relay out.

Every inbound mail, from either door, takes the same path: parse in a worker process, files to
the blob store, the envelope to the hub, and only then the acknowledgement (\\Seen or a move,
or SMTP's 250). A bounce also marks the reply it reports as failed. See docs/email.md.
"""

from __future__ import annotations

import asyncio
from functools import partial

import msgspec

from connectors.base import (
    Capabilities,
    Connector,
    ConnectorContext,
    SendError,
    attachment_bytes,
)
from connectors.email import parse
from connectors.email.client import MailServers
from connectors.email.compose import File, Sender, build_reply, is_auto_reply, message_id_of
from connectors.email.settings import EmailSettings
from connectors.shared.mail import reader
from connectors.shared.mail.imap import MailboxFollower
from connectors.shared.mail.smtp_in import SmtpReceiver
from connectors.shared.rate_limit import WindowCap
from connectors.shared.workers import WorkerPool
from hub.envelope import Attachment, Delivery, DeliveryStatus, Envelope, Outbound


class EmailConnector(Connector):
    """One inbox: a mailbox followed over IMAP and/or mail received by our SMTP server."""

    channel = "email"
    settings_model = EmailSettings
    capabilities = Capabilities(
        threading=True, attachments=True, html=True, recipient_kinds=("email",)
    )
    settings: EmailSettings

    @classmethod
    def sample_envelope(cls, raw: bytes, inbox: str, now: float) -> Envelope:
        """A raw RFC 5322 mail as this connector would receive it (no signing secret, so
        nothing threads into a conversation); BadMail (a ValueError) if it is not a mail."""
        return parse.sample(raw, inbox, now)

    def __init__(self, name: str, settings: EmailSettings) -> None:
        super().__init__(name, settings)
        self._ctx: ConnectorContext | None = None
        self._pool: WorkerPool | None = None
        self._servers = MailServers(settings)
        cap = settings.auto_reply_cap
        self._auto_replies = WindowCap(cap.count, cap.window)
        self._options: reader.Options | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, ctx: ConnectorContext) -> None:
        self._ctx = ctx
        settings = self.settings
        self._options = parse.options(settings, self.name, ctx.secret)
        if settings.parse_workers:
            # a mail over its parse budget gets its worker killed and replaced: it never holds
            # up the mail behind it for longer than its own parse_timeout
            self._pool = WorkerPool(
                settings.parse_workers, preload=(reader.__name__,), name="mail-parse"
            )
            await self._pool.start()
        await self._servers.start(ctx, self.receive)

    async def stop(self) -> None:
        await self._servers.stop()
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    def health(self) -> str | None:
        return self._servers.health()

    @property
    def follower(self) -> MailboxFollower | None:
        return self._servers.follower

    @property
    def receiver(self) -> SmtpReceiver | None:
        return self._servers.receiver

    # -- inbound -----------------------------------------------------------------------------

    async def _parse(self, raw: bytes, received_at: float) -> reader.ParsedMail:
        assert self._options is not None
        budget = self.settings.parse_timeout
        if self._pool is not None:
            return await self._pool.run(
                reader.parse_mail, raw, self._options, received_at, budget=budget
            )
        # parse_workers: 0 (small installs, tests): a thread cannot be stopped, so a mail over
        # its budget is stored unparsed while its thread finishes in the background
        # (asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
        # that arrives as the awaited call finishes, and stop() would then wait for nothing)
        job = partial(reader.parse_mail, raw, self._options, received_at)
        async with asyncio.timeout(budget):
            return await asyncio.to_thread(job)

    async def receive(self, raw: bytes, oversize: int | None) -> None:
        """Parse and durably store one mail; raises only if the hub could not store it.

        A mail that cannot be parsed still arrives (its raw bytes attached) so nothing is lost
        silently; a mail over the size cap arrives as its header with a note."""
        ctx = self._ctx
        assert ctx is not None and self._options is not None
        received_at = ctx.clock()
        try:
            parsed = await self._parse(raw, received_at)
        except Exception as exc:
            ctx.logger.warning("mail of %d bytes not parsed: %r", len(raw), exc)
            parsed = parse.unparsed(raw, self._options, received_at, exc)
        if oversize is not None:
            parsed = parse.oversized(parsed, oversize, self.settings.max_message_bytes)
        stored: list[Attachment] = []
        for part in parsed.parts:
            stored.append(
                msgspec.structs.replace(
                    await ctx.blobs.put(part.data, name=part.name, content_type=part.content_type),
                    inline=part.inline,
                    content_id=part.content_id,
                )
            )
        accepted = await ctx.sink.ingest(reader.with_attachments(parsed, tuple(stored)))
        report = parse.bounce_report(parsed.bounce)
        if report is not None and not accepted.duplicate:
            await ctx.sink.delivery_update(self.name, *report)

    # -- outbound ------------------------------------------------------------------------------

    async def send(self, outbound: Outbound) -> Delivery:
        ctx = self._ctx
        if ctx is None:
            raise SendError("the email connector is not started", code="not_started")
        if not self._servers.relay_configured:
            raise SendError(
                f"inbox {self.name!r} has no smtp relay configured; replies cannot leave",
                code="no_relay",
                retryable=False,
            )
        if outbound.recipient.kind != "email":
            raise SendError(
                f"email cannot reach a {outbound.recipient.kind} address",
                code="unsupported_recipient",
                retryable=False,
            )
        # at most auto_reply_cap.count automatic replies per sender per window
        if is_auto_reply(outbound) and not self._auto_replies.allow(
            outbound.recipient.address.lower(), ctx.clock()
        ):
            raise SendError(
                "automatic replies to this sender are capped; not sent",
                code="auto_reply_capped",
                retryable=False,
            )
        files = [
            File(item.name, item.content_type, await attachment_bytes(ctx.blobs, item))
            for item in outbound.attachments
        ]
        try:
            message = build_reply(
                outbound,
                Sender(self.settings.address, self.settings.display_name, self.settings.reply_to),
                secret=ctx.secret,
                id_domain=self.settings.id_domain,
                files=tuple(files),
            )
        except ValueError as exc:
            raise SendError(str(exc), code="bad_recipient", retryable=False) from None
        await self._servers.send(message, outbound.recipient.address)
        return Delivery(status=DeliveryStatus.SENT, provider_id=message_id_of(message))
