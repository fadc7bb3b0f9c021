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

import msgspec

from connectors.shared.mail import headers, message_ids, structure
from connectors.shared.mail.mime import Body, Bounce, Part, walk
from hub.envelope import Attachment, Direction, Envelope, Identity, ThreadHints

_HEADER_END = re.compile(rb"\r?\n\r?\n")
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
    message, too_complex = _message(raw)
    fallback = structure.declared_charsets(message)
    sender = _sender(message, fallback)
    own_id = headers.message_id(message)
    in_reply_to = headers.message_ids(message, "In-Reply-To")
    subject = headers.text_header(message, "Subject", 500, fallback)
    body = _body(raw, message, too_complex, options)
    auto_reason = headers.automated(message, sender)
    if body.bounce is not None and auto_reason is None:
        auto_reason = "delivery status notification"
    bounce = _bounce(raw, body, sender, options.id_domain)
    threading = _threading(message, in_reply_to, bounce, options)
    auth = headers.authentication(message, options.trusted_authserv_ids)
    metadata = _metadata(
        message,
        fallback,
        _Findings(own_id, sender, auto_reason, bounce, body, too_complex, threading.forged),
        auth,
    )
    cc = headers.addresses(message, "Cc", fallback)
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
            session=_subject_session(sender, subject, options),
            in_reply_to=in_reply_to[-1]
            if in_reply_to and in_reply_to[-1] in threading.trusted
            else None,
            references=threading.trusted,
            conversation=threading.conversation,
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


def _message(raw: bytes) -> tuple[EmailMessage, str | None]:
    """The parsed message, and why its body is not walked (None: it is). The stdlib parser
    works line by line and recurses once per nesting level: a mail whose structure no real
    mail has is not walked at all (headers parsed, body kept whole)."""
    repaired = structure.repair_header_block(raw)
    too_complex = structure.complexity(repaired)
    message: Message | None = None
    if too_complex is None:
        try:
            message = email.message_from_bytes(repaired, policy=headers.POLICY)
        except RecursionError:
            too_complex = "multipart nesting deeper than the parser can follow"
    if message is None:
        message = structure.headers_with_opaque_body(repaired)
    assert isinstance(message, EmailMessage)
    return message, too_complex


def _sender(message: EmailMessage, fallback: tuple[str, ...]) -> Identity | None:
    """Who sent it: From, or without any From (bounces, broken tools) the envelope-ish
    headers. A From that is there but unparseable ("a@x.org b@y.org") is not replaced by
    them: its writer is unknown, and the agent sees the header as written (from_header)."""
    from_ = headers.addresses(message, "From", fallback)
    if from_:
        return from_[0]
    if headers.text_header(message, "From", 300, fallback):
        return None
    for name in ("Sender", "Reply-To", "Return-Path"):
        found = headers.addresses(message, name, fallback)
        if found:
            return found[0]
    return None


def _body(raw: bytes, message: EmailMessage, too_complex: str | None, options: Options) -> Body:
    """The text, HTML and files; a multipart mail too complex to walk is attached whole."""
    if too_complex is not None and message.get_content_maintype() == "multipart":
        return Body(
            f"[This mail is too complex to show ({too_complex}); the original is attached as "
            "original.eml.]",
            None,
            (Part("original.eml", "message/rfc822", raw),),
            None,
            True,
        )
    # a single text part is still read, however many lines it has
    return walk(message, max_parts=options.max_attachments, max_bytes=options.max_bytes)


def _bounce(raw: bytes, body: Body, sender: Identity | None, id_domain: str) -> Bounce | None:
    """The delivery report this mail is, naming which of our mails failed if it can."""
    bounce = body.bounce
    if bounce is not None and bounce.original_message_id is None:
        # some reports quote only the text: any id of ours in the raw bytes names the mail
        return Bounce(
            _our_id_in(raw, id_domain), bounce.recipient, bounce.status, bounce.diagnostic
        )
    if (
        bounce is None
        and sender is not None
        and "mailer" in sender.address.lower()
        and headers.AUTOMATED_SENDERS.match(sender.address)
    ):
        quoted = _our_id_in(raw, id_domain)
        if quoted is not None:  # a non-standard bounce quoting our mail
            return Bounce(quoted, None, None, body.text[:500] or None)
    return bounce


@dataclass(frozen=True, slots=True)
class _Threading:
    conversation: str | None  # named by the newest genuine reference of ours
    trusted: tuple[str, ...]  # the references, without forged ones
    forged: list[str]  # look like ours, but our signature does not check out


def _threading(
    message: EmailMessage, in_reply_to: list[str], bounce: Bounce | None, options: Options
) -> _Threading:
    references = headers.message_ids(message, "References")
    refs = [*references, *(i for i in in_reply_to if i not in references)]
    if bounce is not None and bounce.original_message_id:
        refs.append(bounce.original_message_id)
    conversation = None
    forged = []
    for ref in reversed(refs):  # the newest reference naming a conversation wins
        if message_ids.looks_ours(ref, options.id_domain):
            found = message_ids.conversation_of(options.secret, ref, options.id_domain)
            if found is None:
                forged.append(ref)
            elif conversation is None:
                conversation = found
    return _Threading(conversation, tuple(ref for ref in refs if ref not in forged), forged)


def _subject_session(sender: Identity | None, subject: str | None, options: Options) -> str | None:
    """With subject threading, one thread per sender and normalized subject."""
    if not (options.subject_threading and sender is not None and subject):
        return None
    normalized = headers.thread_subject(subject)
    if not normalized:
        return None
    key = f"{sender.address.lower()}\n{normalized}".encode()
    return "subject:" + hashlib.sha256(key).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class _Findings:
    """What parsing found that the metadata reports."""

    own_id: str | None
    sender: Identity | None
    auto_reason: str | None
    bounce: Bounce | None
    body: Body
    too_complex: str | None
    forged: list[str]


def _metadata(
    message: EmailMessage,
    fallback: tuple[str, ...],
    found: _Findings,
    auth: headers.Authentication,
) -> dict[str, object]:
    """The envelope's metadata (docs/email.md lists each key)."""
    metadata: dict[str, object] = {}
    if found.own_id:
        metadata["message_id"] = found.own_id
    date = headers.header(message, "Date", 200)
    if date:
        metadata["date"] = date
    reply_to = headers.addresses(message, "Reply-To", fallback)
    if reply_to and found.sender is not None and reply_to[0].address != found.sender.address:
        metadata["reply_to"] = reply_to[0].address
    if found.auto_reason:
        metadata["auto_reason"] = found.auto_reason
    if auth.results:
        metadata["authentication"] = {"authserv_id": auth.authserv_id, **auth.results}
    elif auth.problem:
        metadata["authentication"] = {"authserv_id": auth.authserv_id, "problem": auth.problem}
    if found.forged:
        metadata["forged_references"] = found.forged[:5]
    if found.bounce is not None:
        metadata["bounce"] = {
            "original_message_id": found.bounce.original_message_id,
            "recipient": found.bounce.recipient,
            "status": found.bounce.status,
            "diagnostic": found.bounce.diagnostic,
        }
    if found.body.truncated or found.too_complex:
        metadata["truncated"] = True
    if found.too_complex:
        metadata["too_complex"] = found.too_complex
    if found.body.html_skipped:
        metadata["html_not_shown"] = found.body.html_skipped
    defects = len(message.defects) + sum(len(p.defects) for p in structure.leaves(message))
    if defects:
        metadata["mime_defects"] = defects
    if found.sender is None:
        metadata["sender_missing"] = True
        raw_from = headers.text_header(message, "From", 300, fallback)
        if raw_from:
            metadata["from_header"] = raw_from  # unparseable, but the agent should see it
    return metadata


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
