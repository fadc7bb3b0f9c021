"""Walking a MIME tree: the readable body, the attachments, and a bounce report if it is one.

The walk is iterative with a depth cap (a 1,000-deep nesting costs a loop, not a stack), part
and byte counts are capped, and every text part is decoded with a forgiving charset chain so a
wrong or unknown charset yields replacement characters, never an exception. Pure.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage, Message

import nh3

from connectors.shared.mail import charsets
from connectors.shared.mail.headers import POLICY
from connectors.shared.mail.markup import html_to_text, html_too_complex

MAX_DEPTH = 30
MAX_PARTS = 1000
MAX_TEXT = 1_000_000  # characters of body text kept; the rest is in the original HTML/mail

_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f-\x9f/\\:*?\"<>|]+")
# format characters (bidi overrides and isolates, zero-width marks, BOM) and line/paragraph
# separators: nothing a file name needs, all of them ways to disguise one
_INVISIBLE = frozenset({"Cf", "Zl", "Zp"})


@dataclass(frozen=True, slots=True)
class Part:
    """A file that came with the mail; ``name`` is the sender's filename, metadata only."""

    name: str
    content_type: str
    data: bytes
    inline: bool = False
    content_id: str | None = None


@dataclass(frozen=True, slots=True)
class Bounce:
    """A delivery status notification about a mail we sent (RFC 3464)."""

    original_message_id: str | None
    recipient: str | None
    status: str | None
    diagnostic: str | None


@dataclass(frozen=True, slots=True)
class Body:
    text: str
    html: str | None
    parts: tuple[Part, ...]
    bounce: Bounce | None
    truncated: bool
    html_skipped: str | None = None  # why the HTML is only kept as original.html


def decode_text(part: Message, data: bytes | None = None) -> str:
    """A text part's payload as str: declared charset, then UTF-8, then Windows-1252."""
    if data is None:
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
    declared = (part.get_content_charset() or "").strip().lower()
    if not declared and b"\x1b$" in data:
        declared = "iso-2022-jp"
    # ISO-2022-JP with 8-bit bytes is Shift_JIS under the wrong label, more often than not
    stand_in = "cp932" if declared and charsets.is_iso2022jp(declared) else None
    for charset in filter(None, (declared, stand_in, "utf-8")):
        try:
            return charsets.decode(data, charset)
        except (LookupError, UnicodeDecodeError, ValueError):
            continue
    return data.decode("cp1252", errors="replace")


def safe_filename(name: str | None, fallback: str) -> str:
    """The sender's filename as display metadata: no path, no controls, bounded length.

    Invisible format characters are dropped: a right-to-left override (U+202E) made
    ``invoice<RLO>fdp.exe`` display as ``invoiceexe.pdf``; the other bidi controls, zero-width
    characters and line separators can disguise a name the same way."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if unicodedata.category(ch) not in _INVISIBLE)
    base = _UNSAFE_NAME.sub("_", base).strip(" .")
    return base[:200] or fallback


def _extension(content_type: str) -> str:
    sub = content_type.rsplit("/", 1)[-1]
    return re.sub(r"[^a-z0-9]", "", sub.lower())[:10] or "bin"


def _children(part: Message) -> list[Message]:
    payload = part.get_payload()
    return [child for child in payload if isinstance(child, Message)] if part.is_multipart() else []


# a part's role in building the body: standalone, the plain alternative, or an HTML
# alternative whose plain sibling already gives the text
_ALONE, _PLAIN_ALTERNATIVE, _HTML_ONLY = 0, 1, 2
_Visit = tuple[Message, int, int]  # a part, its depth, its role


@dataclass
class _Found:
    """What walking a mail collects: body texts and HTML, files within the limits, the
    delivery report's fields and the headers of the mail it reports on."""

    max_parts: int
    max_bytes: int
    is_report: bool
    texts: list[str] = field(default_factory=list)
    markups: list[str] = field(default_factory=list)
    parts: list[Part] = field(default_factory=list)
    total: int = 0
    truncated: bool = False
    bounce_fields: dict[str, str] = field(default_factory=dict)
    bounced_headers: Message | None = None

    def keep(self, part: Part) -> None:
        if len(self.parts) >= self.max_parts or self.total + len(part.data) > self.max_bytes:
            self.truncated = True
            return
        self.total += len(part.data)
        self.parts.append(part)


def walk(message: EmailMessage, *, max_parts: int, max_bytes: int) -> Body:
    """The body text and HTML, attachments (at most ``max_parts``, ``max_bytes`` together) and
    the bounce report of ``message``.

    Of a multipart/alternative the plain part gives the text and the HTML part the HTML; the
    inline text parts of a multipart/mixed (a text and an HTML signature, say) are joined."""
    is_report = (
        message.get_content_type() == "multipart/report"
        and str(message.get_param("report-type") or "").lower() == "delivery-status"
    )
    found = _Found(max_parts, max_bytes, is_report)
    stack: list[_Visit] = [(message, 0, _ALONE)]
    seen = 0
    while stack:
        part, depth, role = stack.pop()
        seen += 1
        if seen > MAX_PARTS:
            found.truncated = True
            break
        # reversed onto the stack so parts are visited in document order
        stack.extend(reversed(_visit(part, depth, role, found)))
    return _body(found)


def _visit(part: Message, depth: int, role: int, found: _Found) -> list[_Visit]:
    """Take in one part; the parts within it, to visit next."""
    kind = part.get_content_type()
    filename = _filename(part)
    if kind in ("message/rfc822", "text/rfc822-headers"):
        # an attached or bounced mail: a file, never part of this mail's body
        if found.is_report:
            found.bounced_headers = _attached_headers(part)
        if not found.is_report or kind == "message/rfc822":
            data = _attached_bytes(part)
            if data is not None:
                found.keep(Part(safe_filename(filename, "attached.eml"), "message/rfc822", data))
        return []
    if kind in ("message/delivery-status", "message/global-delivery-status") and found.is_report:
        found.bounce_fields.update(_delivery_status(part))
        return []
    if part.is_multipart():
        if depth >= MAX_DEPTH:
            found.truncated = True
            return []
        children = _children(part)
        roles = _roles(kind, children, role)
        return [
            (child, depth + 1, child_role)
            for child, child_role in zip(children, roles, strict=True)
        ]
    _leaf(part, kind, filename, role, found)
    return []


def _roles(kind: str, children: list[Message], role: int) -> list[int]:
    """Children inherit their parent's role, except in a multipart/alternative with a plain
    part: that part gives the text, the others only their HTML."""
    if kind != "multipart/alternative":
        return [role] * len(children)
    has_plain = any(
        child.get_content_type() == "text/plain" and child.get_content_disposition() != "attachment"
        for child in children
    )
    return [
        _PLAIN_ALTERNATIVE
        if child.get_content_type() == "text/plain"
        else (_HTML_ONLY if has_plain else role)
        for child in children
    ]


def _leaf(part: Message, kind: str, filename: str | None, role: int, found: _Found) -> None:
    """A part that holds content: body text, body HTML or a file."""
    disposition = (part.get_content_disposition() or "").lower()
    is_body = kind in ("text/plain", "text/html") and disposition != "attachment"
    if is_body and filename and disposition != "inline":
        is_body = False  # a named text file is an attachment, whatever its disposition
    if is_body and kind == "text/plain":
        if role != _HTML_ONLY:
            found.texts.append(decode_text(part))
        return
    if is_body and kind == "text/html":
        markup = decode_text(part)
        found.markups.append(markup)
        if role != _HTML_ONLY:
            found.texts.append(html_to_text(markup))
        return
    payload = part.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else b""
    if not data and not filename:
        return
    content_id = _content_id(part)
    found.keep(
        Part(
            name=safe_filename(filename, f"part-{len(found.parts) + 1}.{_extension(kind)}"),
            content_type=kind,
            data=data,
            inline=disposition == "inline" or (content_id is not None and not disposition),
            content_id=content_id,
        )
    )


def _body(found: _Found) -> Body:
    """The :class:`Body` of what the walk found: texts joined and bounded, the HTML kept as
    a file and sanitized for showing, the report's fields as a :class:`Bounce`."""
    truncated = found.truncated
    body_text = "\n\n".join(text.strip("\r\n") for text in found.texts if text.strip())
    body_text = body_text.replace("\r\n", "\n")
    if len(body_text) > MAX_TEXT:
        body_text, truncated = body_text[:MAX_TEXT], True
    parts = list(found.parts)
    original = "\n".join(found.markups) if found.markups else None
    if original is not None:
        parts.insert(0, Part("original.html", "text/html", original.encode("utf-8")))
    bounce = None
    if found.is_report:
        fields = found.bounce_fields
        bounce = Bounce(
            original_message_id=_first_id(found.bounced_headers),
            recipient=fields.get("final-recipient") or fields.get("original-recipient"),
            status=fields.get("status"),
            diagnostic=fields.get("diagnostic-code"),
        )
    skipped = html_too_complex(original) if original is not None else None
    sanitized = nh3.clean(original) if original is not None and skipped is None else None
    return Body(body_text, sanitized, tuple(parts), bounce, truncated, skipped)


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except Exception:  # a broken RFC 2231 parameter
        return None
    return str(name) if name else None


def _content_id(part: Message) -> str | None:
    value = part.get("Content-ID")
    if value is None:
        return None
    cid = re.sub(r"[\x00-\x20<>\x7f]", "", str(value))[:200]
    return cid or None


def _attached_bytes(part: Message) -> bytes | None:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        try:
            return payload[0].as_bytes()
        except Exception:  # a broken attached message is kept as what decodes
            return None
    raw = part.get_payload(decode=True)
    return raw if isinstance(raw, bytes) and raw else None


def _attached_headers(part: Message) -> Message | None:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return payload[0]
    raw = part.get_payload(decode=True)
    if isinstance(raw, bytes):
        return message_from_bytes(raw.split(b"\n\n", 1)[0] + b"\n\n", policy=POLICY)
    return None


def _first_id(headers: Message | None) -> str | None:
    if headers is None:
        return None
    found = re.search(r"<([^<>\s]{1,900})>", str(headers.get("Message-ID", "")))
    return found[1] if found else None


def _delivery_status(part: Message) -> dict[str, str]:
    """The per-recipient fields of a message/delivery-status part (first failed recipient)."""
    payload = part.get_payload()
    blocks: list[Message] = []
    if isinstance(payload, list):
        blocks = [item for item in payload if isinstance(item, Message)]
    else:  # kept as text by a non-conforming generator: read it as header blocks ourselves
        from email.parser import HeaderParser

        raw = part.get_payload(decode=True)
        chunk = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(payload)
        blocks = [HeaderParser().parsestr(block) for block in re.split(r"\n\s*\n", chunk)]
    fields: dict[str, str] = {}
    for block in blocks:
        for key in ("Final-Recipient", "Original-Recipient", "Status", "Diagnostic-Code", "Action"):
            value = block.get(key)
            if value is not None and key.lower() not in fields:
                text = re.sub(r"[\x00-\x1f\x7f]+", " ", str(value)).strip()
                if key in ("Final-Recipient", "Original-Recipient") and ";" in text:
                    text = text.split(";", 1)[1].strip()
                fields[key.lower()] = text[:500]
    return fields
