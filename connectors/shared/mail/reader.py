"""Raw RFC 5322 bytes → :class:`ParsedMail` (an envelope without blob refs, plus the files).

Pure and picklable both ways, so connectors run it in a worker process: full MIME parsing of a
large mail costs milliseconds, and one huge mail must never stall chat traffic on the event
loop. The email connector stores the envelope as it is (docs/email.md lists its fields); the
fax connector's mail gateway reads the fax out of it.
"""

from __future__ import annotations

import email
import hashlib
import re
from dataclasses import dataclass
from email.message import EmailMessage, Message
from email.parser import BytesParser

import msgspec

from connectors.shared.mail import headers, message_ids
from connectors.shared.mail.mime import MAX_PARTS, Body, Bounce, Part, walk
from hub.envelope import Attachment, Direction, Envelope, Identity, ThreadHints

_HEADER_END = re.compile(rb"\r?\n\r?\n")
MAX_BOUNDARIES = 200  # declared multipart boundaries
MAX_LINES = 1_000_000  # a 25 MB mail of base64 has about 340,000
MAX_DELIMITERS = 2 * MAX_PARTS  # lines starting with "--" (MIME part delimiters)
UNKNOWN_SENDER = Identity(kind="email", address="unknown@invalid")


class BadMail(ValueError):
    """Bytes that are not a mail at all (empty, or over the size limit)."""


@dataclass(frozen=True, slots=True)
class Options:
    """What parsing needs to know of the inbox; ``secret`` verifies our Message-IDs."""

    inbox: str
    secret: bytes
    id_domain: str
    trusted_authserv_ids: tuple[str, ...] = ()
    subject_threading: bool = False
    reopen_closed: bool = True
    max_bytes: int = 25 * 1024 * 1024
    max_attachments: int = 50


@dataclass(frozen=True, slots=True)
class ParsedMail:
    envelope: Envelope
    parts: tuple[Part, ...]
    bounce: Bounce | None = None


def content_key(raw: bytes, message_id: str | None, inbox: str) -> str:
    """The idempotency key: the inbox, the Message-ID and a hash of the body.

    Relays add trace headers and may rewrite line ends, so only the body (line ends
    normalized) is hashed; the Message-ID alone is not enough, as broken senders reuse one."""
    found = _HEADER_END.search(raw)
    body = raw[found.end() :] if found else b""
    digest = hashlib.sha256(body.replace(b"\r\n", b"\n").rstrip()).hexdigest()
    mixed = hashlib.sha256(f"{inbox}\n{message_id or ''}\n{digest}".encode()).hexdigest()
    return f"email:{mixed[:40]}"


def raw_key(raw: bytes, inbox: str) -> str:
    """The idempotency key of a mail that could not be parsed: a hash of all of it.

    Without a parse there is no Message-ID, and the body alone is not enough: two customers
    who send the same text would collapse into one message and the second would be lost. A
    redelivery of the same bytes (IMAP after a crash) still maps to the same key."""
    digest = hashlib.sha256(raw.replace(b"\r\n", b"\n").rstrip()).hexdigest()
    mixed = hashlib.sha256(f"{inbox}\nraw\n{digest}".encode()).hexdigest()
    return f"email:{mixed[:40]}"


def parse_mail(raw: bytes, options: Options, received_at: float) -> ParsedMail:
    """Parse one mail; never raises for malformed MIME (defects are counted in metadata)."""
    if not raw.strip():
        raise BadMail("empty message")
    if len(raw) > options.max_bytes:
        raise BadMail(f"message of {len(raw)} bytes exceeds the {options.max_bytes} limit")
    repaired = _repair_header_block(raw)
    # the stdlib parser works line by line and recurses once per nesting level: a mail whose
    # structure no real mail has is not walked at all (headers parsed, body kept whole)
    too_complex = complexity(repaired)
    message: Message | None = None
    if too_complex is None:
        try:
            message = email.message_from_bytes(repaired, policy=headers.POLICY)
        except RecursionError:
            too_complex = "multipart nesting deeper than the parser can follow"
    if message is None:
        message = _headers_with_opaque_body(repaired)
    assert isinstance(message, EmailMessage)
    fallback = _declared_charsets(message)
    from_ = headers.addresses(message, "From", fallback)
    sender = from_[0] if from_ else None
    has_from = bool(headers.text_header(message, "From", 300, fallback))
    if sender is None and not has_from:
        # no From at all (bounces, broken tools): the envelope-ish headers say who sent it. A
        # From that is there but unparseable ("a@x.org b@y.org") is not replaced by them:
        # its writer is unknown, and the agent sees the header as written (from_header)
        for name in ("Sender", "Reply-To", "Return-Path"):
            found = headers.addresses(message, name, fallback)
            if found:
                sender = found[0]
                break
    own_id = headers.message_id(message)
    in_reply_to = headers.message_ids(message, "In-Reply-To")
    references = headers.message_ids(message, "References")
    subject = headers.text_header(message, "Subject", 500, fallback)
    if too_complex is not None and message.get_content_maintype() == "multipart":
        body = Body(
            f"[This mail is too complex to show ({too_complex}); the original is attached as "
            "original.eml.]",
            None,
            (Part("original.eml", "message/rfc822", raw),),
            None,
            True,
        )
    else:  # a single text part is still read, however many lines it has
        body = walk(message, max_parts=options.max_attachments, max_bytes=options.max_bytes)
    auth = headers.authentication(message, options.trusted_authserv_ids)
    auto_reason = headers.automated(message, sender)
    if body.bounce is not None and auto_reason is None:
        auto_reason = "delivery status notification"
    bounce = body.bounce
    if bounce is not None and bounce.original_message_id is None:
        # some reports quote only the text: any id of ours in the raw bytes names the mail
        bounce = Bounce(
            _our_id_in(raw, options.id_domain), bounce.recipient, bounce.status, bounce.diagnostic
        )
    elif (
        bounce is None
        and sender is not None
        and "mailer" in sender.address.lower()
        and headers.AUTOMATED_SENDERS.match(sender.address)
    ):
        quoted = _our_id_in(raw, options.id_domain)
        if quoted is not None:  # a non-standard bounce quoting our mail
            bounce = Bounce(quoted, None, None, body.text[:500] or None)
    refs = [*references, *(i for i in in_reply_to if i not in references)]
    if bounce is not None and bounce.original_message_id:
        refs.append(bounce.original_message_id)
    conversation = None
    forged = []
    for ref in reversed(refs):  # the newest reference naming a conversation wins
        if message_ids.looks_ours(ref, options.id_domain):
            found_conv = message_ids.conversation_of(options.secret, ref, options.id_domain)
            if found_conv is None:
                forged.append(ref)
            elif conversation is None:
                conversation = found_conv
    trusted_refs = tuple(ref for ref in refs if ref not in forged)
    session = None
    if options.subject_threading and sender is not None and subject:
        normalized = headers.thread_subject(subject)
        if normalized:
            session = (
                "subject:"
                + hashlib.sha256(f"{sender.address.lower()}\n{normalized}".encode()).hexdigest()[
                    :32
                ]
            )
    metadata: dict[str, object] = {}
    if own_id:
        metadata["message_id"] = own_id
    date = headers.header(message, "Date", 200)
    if date:
        metadata["date"] = date
    cc = headers.addresses(message, "Cc", fallback)
    reply_to = headers.addresses(message, "Reply-To", fallback)
    if reply_to and sender is not None and reply_to[0].address != sender.address:
        metadata["reply_to"] = reply_to[0].address
    if auto_reason:
        metadata["auto_reason"] = auto_reason
    if auth.results:
        metadata["authentication"] = {"authserv_id": auth.authserv_id, **auth.results}
    elif auth.problem:
        metadata["authentication"] = {"authserv_id": auth.authserv_id, "problem": auth.problem}
    if forged:
        metadata["forged_references"] = forged[:5]
    if bounce is not None:
        metadata["bounce"] = {
            "original_message_id": bounce.original_message_id,
            "recipient": bounce.recipient,
            "status": bounce.status,
            "diagnostic": bounce.diagnostic,
        }
    if body.truncated or too_complex:
        metadata["truncated"] = True
    if too_complex:
        metadata["too_complex"] = too_complex
    if body.html_skipped:
        metadata["html_not_shown"] = body.html_skipped
    defects = len(message.defects) + sum(len(p.defects) for p in _leaves(message))
    if defects:
        metadata["mime_defects"] = defects
    if sender is None:
        metadata["sender_missing"] = True
        raw_from = headers.text_header(message, "From", 300, fallback)
        if raw_from:
            metadata["from_header"] = raw_from  # unparseable, but the agent should see it
    envelope = Envelope(
        channel="email",
        inbox=options.inbox,
        direction=Direction.INBOUND,
        idempotency_key=content_key(raw, own_id, options.inbox),
        provider_id=own_id,
        sender=sender or UNKNOWN_SENDER,
        received_at=received_at,
        recipients=tuple(headers.addresses(message, "To", fallback) + cc),
        thread=ThreadHints(
            session=session,
            in_reply_to=in_reply_to[-1]
            if in_reply_to and in_reply_to[-1] in trusted_refs
            else None,
            references=trusted_refs,
            conversation=conversation,
            reopen=options.reopen_closed,
            delivery_report=bounce is not None,
        ),
        subject=subject,
        text=body.text,
        html=body.html,
        auto_submitted=auto_reason is not None,
        sender_verified=auth.verified and sender is not None,
        metadata=metadata,
    )
    return ParsedMail(envelope, body.parts, bounce)


def complexity(raw: bytes) -> str | None:
    """Why ``raw`` is not walked as MIME, or None: more multipart boundaries, lines or part
    delimiters than any real mail has. Counted with byte searches, before any parsing: the
    stdlib parser's cost grows with each of these (3 million short lines took seconds and
    hundreds of MB; 100,000 empty parts, seconds), and so would ours on top of it."""
    head = raw[:5_000_000]
    if (
        head.lower().count(b"boundary") > MAX_BOUNDARIES
        and len(re.findall(rb"(?i)boundary\s*=", head)) > MAX_BOUNDARIES
    ):
        return f"more than {MAX_BOUNDARIES} multipart boundaries"
    lines = raw.count(b"\n")
    if lines > MAX_LINES:
        return f"{lines:,} lines, more than {MAX_LINES:,}"
    delimiters = raw.count(b"\n--")
    if delimiters > MAX_DELIMITERS:
        return f"{delimiters:,} MIME delimiter lines, more than {MAX_DELIMITERS:,}"
    return None


def _headers_with_opaque_body(raw: bytes) -> EmailMessage:
    """The header block parsed, the body attached as it came (no line-by-line work)."""
    found = _HEADER_END.search(raw)
    head, body = (raw[: found.start()], raw[found.end() :]) if found else (raw, b"")
    message = BytesParser(policy=headers.POLICY).parsebytes(head + b"\r\n\r\n", headersonly=True)
    assert isinstance(message, EmailMessage)
    message.set_payload(body.decode("ascii", "surrogateescape"))
    return message


_HEADER_LINE = re.compile(rb"^[!-9;-~]+:")
_EAST_ASIAN = {
    "iso-2022-jp": ("cp932", "euc_jp"),
    "shift_jis": ("cp932", "euc_jp"),
    "euc-jp": ("euc_jp", "cp932"),
    "gb2312": ("gb18030", "big5"),
    "gbk": ("gb18030", "big5"),
    "big5": ("big5", "gb18030"),
    "euc-kr": ("cp949",),
    "ks_c_5601-1987": ("cp949",),
}
_SINGLE_BYTE = ("iso-8859", "windows-125", "cp125", "us-ascii", "ascii", "latin")


def _repair_header_block(raw: bytes) -> bytes:
    """Mend two breakages mail tools produce: a banner line above the headers ("---- Original
    message ----"), and a folded line that lost its leading space (which would otherwise end
    the header block there and turn From and Subject into body text)."""
    first, _, rest = raw.partition(b"\n")
    if first.strip() and not _HEADER_LINE.match(first) and _HEADER_LINE.match(rest):
        raw = rest
    end = re.search(rb"\r?\n\r?\n", raw)
    if end is None:
        return raw
    block = raw[: end.start()].split(b"\n")
    mended = [
        line if index == 0 or line[:1] in (b" ", b"\t") or _HEADER_LINE.match(line) else b" " + line
        for index, line in enumerate(block)
    ]
    if mended == block:
        return raw
    return b"\n".join(mended) + raw[end.start() :]


def _declared_charsets(message: EmailMessage) -> tuple[str, ...]:
    """Charsets to read raw 8-bit header bytes with, best guess first: whatever multi-byte
    charsets the parts declare (and their usual real-world stand-ins), then single-byte ones."""
    declared: list[str] = []
    stack = [message]
    while stack and len(declared) < 20:
        part = stack.pop()
        charset = (part.get_content_charset() or "").lower()
        if charset and charset not in declared:
            declared.append(charset)
        payload = part.get_payload() if part.is_multipart() else None
        if isinstance(payload, list):
            stack.extend(p for p in reversed(payload[:20]) if isinstance(p, EmailMessage))
    wide = [c for c in declared if not c.startswith(_SINGLE_BYTE)]
    narrow = [c for c in declared if c.startswith(_SINGLE_BYTE)]
    out: list[str] = []
    for charset in wide:
        out.extend([charset, *_EAST_ASIAN.get(charset, ())])
    return tuple(dict.fromkeys([*out, *narrow]))


def _leaves(message: EmailMessage) -> list[EmailMessage]:
    """Up to 200 parts below the top, for counting defects without deep recursion."""
    out: list[EmailMessage] = []
    stack = [message]
    while stack and len(out) < 200:
        part = stack.pop()
        if part.is_multipart():
            payload = part.get_payload()
            if isinstance(payload, list):
                stack.extend(p for p in payload if isinstance(p, EmailMessage))
        if part is not message:
            out.append(part)
    return out


_OUR_ID = re.compile(rb"<(ch\.[a-z2-7]{16}\.[0-9a-z]{1,40}\.[a-z2-7]{16}@[A-Za-z0-9.-]+)>", re.I)


def _our_id_in(raw: bytes, domain: str) -> str | None:
    for found in _OUR_ID.finditer(raw[:2_000_000]):
        value = found[1].decode("ascii", "replace")
        if message_ids.looks_ours(value, domain):
            return value
    return None


def with_attachments(parsed: ParsedMail, attachments: tuple[Attachment, ...]) -> Envelope:
    """The envelope of ``parsed`` carrying its stored files."""
    return msgspec.structs.replace(parsed.envelope, attachments=attachments)


def unstored_attachments(parsed: ParsedMail) -> tuple[Attachment, ...]:
    """Attachment metadata as it would be stored, for tools that do not store (the CLI)."""
    return tuple(
        Attachment(
            name=part.name,
            content_type=part.content_type,
            size=len(part.data),
            sha256=hashlib.sha256(part.data).hexdigest(),
            blob_ref="",
            inline=part.inline,
            content_id=part.content_id,
        )
        for part in parsed.parts
    )
