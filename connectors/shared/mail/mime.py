"""Walking a MIME tree: the readable body, the attachments, and a bounce report if it is one.

The walk is iterative with a depth cap (a 1,000-deep nesting costs a loop, not a stack), part
and byte counts are capped, and every text part is decoded with a forgiving charset chain so a
wrong or unknown charset yields replacement characters, never an exception. Pure.
"""

from __future__ import annotations

import html as htmllib
import re
import unicodedata
from dataclasses import dataclass
from email import message_from_bytes
from email.message import EmailMessage, Message

import nh3

from connectors.shared.mail import charsets
from connectors.shared.mail.headers import POLICY

MAX_DEPTH = 30
MAX_PARTS = 1000
MAX_TEXT = 1_000_000  # characters of body text kept; the rest is in the original HTML/mail

_BLANK_LINES = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")
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


MAX_HTML_DEPTH = 256  # browsers' parsers stop nesting at 512
MAX_HTML_CHARS = 4_000_000
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9:-]{0,40})[^<>]*?(/?)>")
# elements that never nest (void) or that real mail leaves open by the thousand (their next
# sibling closes them): they do not deepen the tree the parser keeps
_FLAT = frozenset(
    {
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
        "p",
        "li",
        "dt",
        "dd",
        "tr",
        "td",
        "th",
        "tbody",
        "thead",
        "tfoot",
        "colgroup",
        "option",
        "optgroup",
        "rb",
        "rt",
        "rp",
        "html",
        "head",
        "body",
    }
)


def html_too_complex(markup: str) -> str | None:
    """Why ``markup`` is not run through the HTML sanitizer, or None.

    The HTML parser behind nh3 looks through its stack of open elements at every block-level
    start tag, so its cost is tags times depth: 40,000 nested ``<div>`` lines (600 KB) take
    seconds per pass. Size and nesting are bounded before it starts; the depth counted here
    is an upper estimate made in one pass over the tags."""
    if len(markup) > MAX_HTML_CHARS:
        return f"{len(markup):,} characters of HTML, more than {MAX_HTML_CHARS:,}"
    if markup.count("<") <= MAX_HTML_DEPTH:
        return None
    depth = 0
    for found in _TAG.finditer(markup):
        if found[3] or found[2].lower() in _FLAT:
            continue
        if found[1]:
            depth = max(depth - 1, 0)
            continue
        depth += 1
        if depth > MAX_HTML_DEPTH:
            return f"HTML nested more than {MAX_HTML_DEPTH} elements deep"
    return None


_ANY_TAG = re.compile(r"<[^<>]*>")


def html_to_text(markup: str) -> str:
    """Readable text of an HTML body: tags dropped (scripts and styles with their content).

    HTML too complex for the sanitizer (:func:`html_too_complex`) has its tags cut out by one
    linear pattern instead; the content of scripts and styles then stays, as plain text."""
    spaced = re.sub(r"(?i)<\s*(br|/p|/div|/tr|/li|/h[1-6])\b[^>]*>", "\n", markup)
    if html_too_complex(markup) is None:
        stripped = nh3.clean(spaced, tags=set(), clean_content_tags={"script", "style"})
    else:
        stripped = _ANY_TAG.sub("", spaced)
    text = htmllib.unescape(stripped)
    return _BLANK_LINES.sub("\n\n", text.replace("\r", "")).strip()


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


def walk(message: EmailMessage, *, max_parts: int, max_bytes: int) -> Body:
    """The body text and HTML, attachments (at most ``max_parts``, ``max_bytes`` together) and
    the bounce report of ``message``.

    Of a multipart/alternative the plain part gives the text and the HTML part the HTML; the
    inline text parts of a multipart/mixed (a text and an HTML signature, say) are joined."""
    texts: list[str] = []
    markups: list[str] = []
    parts: list[Part] = []
    total = 0
    truncated = False
    bounce_fields: dict[str, str] = {}
    bounced_headers: Message | None = None
    is_report = (
        message.get_content_type() == "multipart/report"
        and str(message.get_param("report-type") or "").lower() == "delivery-status"
    )

    def keep(part: Part) -> None:
        nonlocal total, truncated
        if len(parts) >= max_parts or total + len(part.data) > max_bytes:
            truncated = True
            return
        total += len(part.data)
        parts.append(part)

    stack: list[tuple[Message, int, int]] = [(message, 0, _ALONE)]
    seen = 0
    while stack:
        part, depth, role = stack.pop()
        seen += 1
        if seen > MAX_PARTS:
            truncated = True
            break
        kind = part.get_content_type()
        filename = _filename(part)
        if kind in ("message/rfc822", "text/rfc822-headers"):
            # an attached or bounced mail: a file, never part of this mail's body
            if is_report:
                bounced_headers = _attached_headers(part)
            if not is_report or kind == "message/rfc822":
                data = _attached_bytes(part)
                if data is not None:
                    keep(Part(safe_filename(filename, "attached.eml"), "message/rfc822", data))
            continue
        if kind in ("message/delivery-status", "message/global-delivery-status") and is_report:
            bounce_fields.update(_delivery_status(part))
            continue
        if part.is_multipart():
            if depth >= MAX_DEPTH:
                truncated = True
                continue
            children = _children(part)
            roles = [role] * len(children)
            if kind == "multipart/alternative":
                has_plain = any(
                    child.get_content_type() == "text/plain"
                    and child.get_content_disposition() != "attachment"
                    for child in children
                )
                roles = [
                    _PLAIN_ALTERNATIVE
                    if child.get_content_type() == "text/plain"
                    else (_HTML_ONLY if has_plain else role)
                    for child in children
                ]
            # reversed onto the stack so parts are visited in document order
            stack.extend(
                (child, depth + 1, child_role)
                for child, child_role in reversed(list(zip(children, roles, strict=True)))
            )
            continue
        disposition = (part.get_content_disposition() or "").lower()
        is_body = kind in ("text/plain", "text/html") and disposition != "attachment"
        if is_body and filename and disposition != "inline":
            is_body = False  # a named text file is an attachment, whatever its disposition
        if is_body and kind == "text/plain":
            if role != _HTML_ONLY:
                texts.append(decode_text(part))
            continue
        if is_body and kind == "text/html":
            markup = decode_text(part)
            markups.append(markup)
            if role != _HTML_ONLY:
                texts.append(html_to_text(markup))
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        if not data and not filename:
            continue
        content_id = _content_id(part)
        keep(
            Part(
                name=safe_filename(filename, f"part-{len(parts) + 1}.{_extension(kind)}"),
                content_type=kind,
                data=data,
                inline=disposition == "inline" or (content_id is not None and not disposition),
                content_id=content_id,
            )
        )
    body_text = "\n\n".join(text.strip("\r\n") for text in texts if text.strip())
    body_text = body_text.replace("\r\n", "\n")
    if len(body_text) > MAX_TEXT:
        body_text, truncated = body_text[:MAX_TEXT], True
    original = "\n".join(markups) if markups else None
    if original is not None:
        parts.insert(0, Part("original.html", "text/html", original.encode("utf-8")))
    bounce = None
    if is_report:
        bounce = Bounce(
            original_message_id=_first_id(bounced_headers),
            recipient=bounce_fields.get("final-recipient")
            or bounce_fields.get("original-recipient"),
            status=bounce_fields.get("status"),
            diagnostic=bounce_fields.get("diagnostic-code"),
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
