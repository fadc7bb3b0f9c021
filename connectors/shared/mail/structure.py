"""The shape of a mail around parsing: structure no real mail has, refused before the stdlib
parser sees it (:func:`complexity`); broken header blocks mended; the charsets its parts
declare; its parts below the top, counted without deep recursion. Pure, like the reader."""

from __future__ import annotations

import re
from email.message import EmailMessage
from email.parser import BytesParser

from connectors.shared.mail import headers
from connectors.shared.mail.mime import MAX_PARTS

HEADER_END = re.compile(rb"\r?\n\r?\n")
MAX_BOUNDARIES = 200  # declared multipart boundaries
MAX_LINES = 1_000_000  # a 25 MB mail of base64 has about 340,000
MAX_DELIMITERS = 2 * MAX_PARTS  # lines starting with "--" (MIME part delimiters)


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


def headers_with_opaque_body(raw: bytes) -> EmailMessage:
    """The header block parsed, the body attached as it came (no line-by-line work)."""
    found = HEADER_END.search(raw)
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


def repair_header_block(raw: bytes) -> bytes:
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


def declared_charsets(message: EmailMessage) -> tuple[str, ...]:
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


def leaves(message: EmailMessage) -> list[EmailMessage]:
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
