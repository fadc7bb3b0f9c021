"""A fax line's decisions that hold whatever the gateway. Pure.

What a gateway reports (:class:`IncomingFax`) and is asked to send (:class:`OutgoingFax`); the
durable record of a fax kept but not yet read (:class:`Pending`); how a retry recognizes this
reply's own earlier fax (:func:`reply_ref`, :func:`created_before`); and the envelope of a fax
once its document is read (:func:`envelope`). Each gateway's wire format is its own pure module
(:mod:`.parse_sinch`, :mod:`.parse_telnyx`, :mod:`.parse_email`); the I/O is in the
``client*`` modules and :mod:`.connector`.
"""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from hub.envelope import Attachment, Direction, Envelope, Identity, ThreadHints

if TYPE_CHECKING:
    from connectors.fax.worker import Examined

# how much earlier than the reply a provider's clock may date the reply's own fax
CLOCK_SKEW = 300.0


@dataclass(frozen=True, slots=True)
class IncomingFax:
    """A received fax as the gateway reported it; ``data`` is the document (None if it could
    not be had, ``problem`` then says why)."""

    fax_id: str
    from_number: str
    to_number: str
    data: bytes | None
    pages_declared: int | None = None
    partial: bool = False
    problem: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OutgoingFax:
    """A rendered reply: ``ref`` is the stored PDF (served to gateways that fetch by URL),
    ``key`` the reply's idempotency key (sent along so a retry can find an earlier send)."""

    key: str
    to_number: str
    from_number: str
    pdf: bytes
    pages: int
    ref: str
    subject: str | None
    attempt: int
    created_at: float


class Pending(msgspec.Struct, frozen=True, kw_only=True):
    """A received fax kept durably before the gateway was answered, not yet read and stored."""

    fax_id: str
    from_number: str
    to_number: str
    document: Attachment | None
    pages_declared: int | None = None
    partial: bool = False
    problem: str | None = None
    metadata: dict[str, Any] = {}
    received_at: float


def pending(fax: IncomingFax, document: Attachment | None, received_at: float) -> Pending:
    """The durable record of ``fax``, its document already in the blob store."""
    return Pending(
        fax_id=fax.fax_id,
        from_number=fax.from_number,
        to_number=fax.to_number,
        document=document,
        pages_declared=fax.pages_declared,
        partial=fax.partial,
        problem=fax.problem,
        metadata=fax.metadata,
        received_at=received_at,
    )


def reply_ref(key: str) -> str:
    """A short, fixed-length mark of one reply (its idempotency key hashed): what a provider
    stores with the fax (Telnyx ``client_state``, a mail's Message-ID) so that a retry adopts
    this reply's own earlier fax and never another reply's, whatever their content."""
    return hashlib.sha256(key.encode()).hexdigest()[:40]


def created_before(stamp: object, reply_created_at: float) -> bool:
    """True when a provider's creation time (ISO 8601) is clearly before the reply existed:
    such a fax cannot be this reply's. An absent or unreadable time decides nothing."""
    if not isinstance(stamp, str) or not stamp:
        return False
    try:
        when = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return False
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp() < reply_created_at - CLOCK_SKEW


def iso_time(seconds: float) -> str:
    """``seconds`` since the epoch as ISO 8601 UTC (``2026-11-30T09:01:11Z``)."""
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def sender_identity(value: str) -> Identity:
    """The sender as a ``fax`` identity (the hub normalizes it to E.164); ``anonymous`` when
    the caller withheld the number."""
    compact = "".join(ch for ch in value if ch.isdigit() or ch == "+")
    if len(compact.lstrip("+")) < 3:
        return Identity(kind="fax", address="anonymous")
    return Identity(kind="fax", address=compact[:20])


@dataclass(frozen=True, slots=True)
class Line:
    """What the envelope needs to know of the fax line: its instance, number and gateway, and
    whether OCR is on (``ocr_problem``: why it cannot run, if so)."""

    inbox: str
    number: str
    gateway: str
    ocr_enabled: bool
    ocr_problem: str | None = None


def ocr_state(line: Line, examined: Examined | None) -> str:
    """What became of text recognition, for ``metadata.ocr``."""
    if not line.ocr_enabled:
        return "off"
    if line.ocr_problem:
        return f"unavailable: {line.ocr_problem}"
    if examined is None:
        return "no document"
    if any(page.problem for page in examined.pages):
        return "partly failed"
    return "done"


def envelope(
    line: Line,
    key: str,
    fax: Pending,
    examined: Examined | None,
    files: tuple[Attachment, ...],
    problems: tuple[str, ...] = (),
) -> Envelope:
    """The envelope of a kept fax once its document is read: ``examined`` (None if there was
    no document or it could not be read, ``problems`` then say why), ``files`` the document
    and its page previews as stored."""
    notes = [fax.problem] if fax.problem else []
    notes.extend(problems)
    sender = sender_identity(fax.from_number)
    metadata: dict[str, object] = {**fax.metadata, "gateway": line.gateway}
    if fax.to_number:
        metadata["to"] = fax.to_number
    if fax.pages_declared is not None:
        metadata["pages_declared"] = fax.pages_declared
    if fax.partial:
        metadata["partial"] = True
        notes.append("the gateway reports the fax as incomplete (the call broke off)")
    if examined is not None:
        metadata["pages"] = examined.page_count
        metadata["text_sources"] = [page.source for page in examined.pages]
        failed = [p.number for p in examined.pages if p.problem]
        if failed:
            metadata["ocr_failed_pages"] = failed
            notes.append(f"text recognition failed on page(s) {', '.join(map(str, failed))}")
        unread = [p.number for p in examined.pages if p.source == "none" and p.preview]
        if unread and line.ocr_problem:
            notes.append(f"no text recognized: {line.ocr_problem}")
        if examined.stopped:
            metadata["pages_read"] = len(examined.pages)
            notes.append(examined.stopped)
        elif examined.page_count > len(examined.pages):
            notes.append(
                f"only the first {len(examined.pages)} of {examined.page_count} pages were read"
            )
    metadata["ocr"] = ocr_state(line, examined)
    if notes:
        metadata["problems"] = notes
    pages = examined.page_count if examined else fax.pages_declared
    count = f" ({pages} page{'s' if pages != 1 else ''})" if pages else ""
    return Envelope(
        channel="fax",
        inbox=line.inbox,
        direction=Direction.INBOUND,
        idempotency_key=key,
        provider_id=fax.fax_id,
        sender=sender,
        recipients=(Identity(kind="fax", address=fax.to_number),) if fax.to_number else (),
        received_at=fax.received_at,
        subject=f"Fax from {sender.address}{count}",
        text=examined.text[:100_000] if examined else "",
        attachments=files,
        sender_verified=sender.address != "anonymous",
        thread=ThreadHints(session=f"{sender.address}|{line.number}"),
        metadata=metadata,
    )
