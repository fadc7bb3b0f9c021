"""What the email connector makes of a mail, beyond reading it. Pure.

Reading a mail (MIME, headers, threading hints, authentication) is
:func:`connectors.shared.mail.reader.parse_mail`, shared with the fax connector's mail gateway;
here are the email channel's own decisions: the reader's options from an inbox's settings, what
arrives for a mail that could not be read or is over the size cap, and what a bounce says about
the reply it returns. Replies going out are built in :mod:`connectors.email.compose`.
"""

from __future__ import annotations

import msgspec

from connectors.email.settings import EmailSettings
from connectors.shared.mail import reader
from connectors.shared.mail.mime import Bounce, Part
from hub.envelope import Delivery, DeliveryStatus, Direction, Envelope


def options(settings: EmailSettings, inbox: str, secret: bytes) -> reader.Options:
    """How mail of the inbox ``inbox`` is read; ``secret`` verifies our Message-IDs."""
    return reader.Options(
        inbox=inbox,
        secret=secret,
        id_domain=settings.id_domain,
        trusted_authserv_ids=settings.trusted_authserv_ids,
        subject_threading=settings.subject_threading,
        reopen_closed=settings.closed_reply == "reopen",
        max_bytes=settings.max_message_bytes,
        max_attachments=settings.max_attachments,
    )


def sample(raw: bytes, inbox: str, now: float) -> Envelope:
    """A raw RFC 5322 mail as the connector would receive it, its files listed but not stored
    (no signing secret, so nothing threads into a conversation); BadMail (a ValueError) if it
    is not a mail."""
    blind = reader.Options(inbox=inbox, secret=b"", id_domain="invalid")
    parsed = reader.parse_mail(raw, blind, now)
    return reader.with_attachments(parsed, reader.unstored_attachments(parsed))


def unparsed(
    raw: bytes, options: reader.Options, received_at: float, error: BaseException
) -> reader.ParsedMail:
    """What arrives for a mail the reader could not read: the raw bytes and why."""
    envelope = Envelope(
        channel="email",
        inbox=options.inbox,
        direction=Direction.INBOUND,
        idempotency_key=reader.raw_key(raw, options.inbox),
        sender=reader.UNKNOWN_SENDER,
        received_at=received_at,
        text=f"[This mail could not be read ({error.__class__.__name__}); "
        "the original is attached.]",
        sender_verified=False,
        auto_submitted=True,
        metadata={"parse_error": f"{error.__class__.__name__}: {error}"[:300]},
    )
    part = Part("original.eml", "message/rfc822", raw[: options.max_bytes])
    return reader.ParsedMail(envelope, (part,), None)


def oversized(parsed: reader.ParsedMail, size: int, limit: int) -> reader.ParsedMail:
    """What arrives for a mail over the inbox's size cap (``parsed`` is its header only): a
    note in place of the body, no files, its own idempotency key."""
    note = (
        f"[This mail is {size / 1e6:.1f} MB, over this inbox's limit of "
        f"{limit / 1e6:.1f} MB; it was left in the mailbox.]"
    )
    envelope = msgspec.structs.replace(
        parsed.envelope,
        text=note,
        html=None,
        idempotency_key=parsed.envelope.idempotency_key + ":oversize",
        metadata={**parsed.envelope.metadata, "oversize": size},
    )
    return reader.ParsedMail(envelope, (), None)


def bounce_report(bounce: Bounce | None) -> tuple[str, Delivery] | None:
    """(our Message-ID, the failed delivery) of the reply a bounce returns; None when the
    bounce does not name one of our mails. A 4.x.x status is temporary (undelivered so far)."""
    if bounce is None or not bounce.original_message_id:
        return None
    status = bounce.status or ""
    return bounce.original_message_id, Delivery(
        status=DeliveryStatus.FAILED if not status.startswith("4") else DeliveryStatus.UNDELIVERED,
        provider_id=bounce.original_message_id,
        error_code="bounced" + (f"_{status}" if status else ""),
        error_message=(bounce.diagnostic or "the recipient's server returned it")[:300],
    )
