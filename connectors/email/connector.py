"""Email: IMAP (IDLE) and an optional SMTP server in, an SMTP relay out.

Every inbound mail, from either door, takes the same path: parse in a worker process, files to
the blob store, the envelope to the hub, and only then the acknowledgement (\\Seen or a move,
or SMTP's 250). A bounce also marks the reply it reports as failed. See docs/email.md.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
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
from connectors.email.compose import File, Sender, build_reply, is_auto_reply, message_id_of
from connectors.email.doors import MailDoors
from connectors.email.imap import MailboxFollower
from connectors.email.mime import Part
from connectors.email.settings import EmailSettings
from connectors.email.smtp_in import SmtpReceiver
from connectors.email.smtp_out import SmtpSender
from connectors.workers import WorkerPool
from hub.envelope import Attachment, Delivery, DeliveryStatus, Direction, Envelope, Outbound


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
        options = parse.Options(inbox=inbox, secret=b"", id_domain="invalid")
        parsed = parse.parse_mail(raw, options, now)
        return parse.with_attachments(parsed, parse.unstored_attachments(parsed))

    def __init__(self, name: str, settings: EmailSettings) -> None:
        super().__init__(name, settings)
        self._ctx: ConnectorContext | None = None
        self._pool: WorkerPool | None = None
        self._doors = MailDoors()
        self._sender = SmtpSender(settings.smtp) if settings.smtp is not None else None
        self._auto_replies: dict[str, deque[float]] = defaultdict(deque)
        self._options: parse.Options | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, ctx: ConnectorContext) -> None:
        self._ctx = ctx
        settings = self.settings
        self._options = parse.Options(
            inbox=self.name,
            secret=ctx.secret,
            id_domain=settings.id_domain,
            trusted_authserv_ids=settings.trusted_authserv_ids,
            subject_threading=settings.subject_threading,
            reopen_closed=settings.closed_reply == "reopen",
            max_bytes=settings.max_message_bytes,
            max_attachments=settings.max_attachments,
        )
        if settings.parse_workers:
            # a mail over its parse budget gets its worker killed and replaced: it never holds
            # up the mail behind it for longer than its own parse_timeout
            self._pool = WorkerPool(
                settings.parse_workers, preload=("connectors.email.parse",), name="mail-parse"
            )
            await self._pool.start()
        await self._doors.start(
            ctx,
            self.receive,
            imap=settings.imap,
            smtp_in=settings.smtp_in,
            max_bytes=settings.max_message_bytes,
        )

    async def stop(self) -> None:
        await self._doors.stop()
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    def health(self) -> str | None:
        return self._doors.health()

    @property
    def follower(self) -> MailboxFollower | None:
        return self._doors.follower

    @property
    def receiver(self) -> SmtpReceiver | None:
        return self._doors.receiver

    # -- inbound -----------------------------------------------------------------------------

    async def _parse(self, raw: bytes, received_at: float) -> parse.ParsedMail:
        assert self._options is not None
        budget = self.settings.parse_timeout
        if self._pool is not None:
            return await self._pool.run(
                parse.parse_mail, raw, self._options, received_at, budget=budget
            )
        # parse_workers: 0 (small installs, tests): a thread cannot be stopped, so a mail over
        # its budget is stored unparsed while its thread finishes in the background
        job = partial(parse.parse_mail, raw, self._options, received_at)
        return await asyncio.wait_for(asyncio.to_thread(job), budget)

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
            parsed = _unparsed(raw, self._options, received_at, exc)
        if oversize is not None:
            note = (
                f"[This mail is {oversize / 1e6:.1f} MB, over this inbox's limit of "
                f"{self.settings.max_message_bytes / 1e6:.1f} MB; it was left in the mailbox.]"
            )
            envelope = msgspec.structs.replace(
                parsed.envelope,
                text=note,
                html=None,
                idempotency_key=parsed.envelope.idempotency_key + ":oversize",
                metadata={**parsed.envelope.metadata, "oversize": oversize},
            )
            parsed = parse.ParsedMail(envelope, (), None)
        stored: list[Attachment] = []
        for part in parsed.parts:
            stored.append(
                msgspec.structs.replace(
                    await ctx.blobs.put(part.data, name=part.name, content_type=part.content_type),
                    inline=part.inline,
                    content_id=part.content_id,
                )
            )
        accepted = await ctx.sink.ingest(parse.with_attachments(parsed, tuple(stored)))
        bounce = parsed.bounce
        if bounce is not None and bounce.original_message_id and not accepted.duplicate:
            status = bounce.status or ""
            await ctx.sink.delivery_update(
                self.name,
                bounce.original_message_id,
                Delivery(
                    status=DeliveryStatus.FAILED
                    if not status.startswith("4")
                    else DeliveryStatus.UNDELIVERED,
                    provider_id=bounce.original_message_id,
                    error_code="bounced" + (f"_{status}" if status else ""),
                    error_message=(bounce.diagnostic or "the recipient's server returned it")[:300],
                ),
            )

    # -- outbound ------------------------------------------------------------------------------

    def _auto_reply_allowed(self, address: str, now: float) -> bool:
        """At most ``auto_reply_cap.count`` automatic replies per sender per window."""
        cap = self.settings.auto_reply_cap
        sent = self._auto_replies[address.lower()]
        while sent and sent[0] <= now - cap.window:
            sent.popleft()
        if len(sent) >= cap.count:
            return False
        sent.append(now)
        return True

    async def send(self, outbound: Outbound) -> Delivery:
        ctx = self._ctx
        if ctx is None:
            raise SendError("the email connector is not started", code="not_started")
        if self._sender is None:
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
        if is_auto_reply(outbound) and not self._auto_reply_allowed(
            outbound.recipient.address, ctx.clock()
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
        await self._sender.send(message, self.settings.address, outbound.recipient.address)
        return Delivery(status=DeliveryStatus.SENT, provider_id=message_id_of(message))


def _unparsed(
    raw: bytes, options: parse.Options, received_at: float, error: BaseException
) -> parse.ParsedMail:
    """What arrives for a mail the parser could not read: the raw bytes and why."""
    envelope = Envelope(
        channel="email",
        inbox=options.inbox,
        direction=Direction.INBOUND,
        idempotency_key=parse.raw_key(raw, options.inbox),
        sender=parse.UNKNOWN_SENDER,
        received_at=received_at,
        text=f"[This mail could not be read ({error.__class__.__name__}); "
        "the original is attached.]",
        sender_verified=False,
        auto_submitted=True,
        metadata={"parse_error": f"{error.__class__.__name__}: {error}"[:300]},
    )
    part = Part("original.eml", "message/rfc822", raw[: options.max_bytes])
    return parse.ParsedMail(envelope, (part,), None)
