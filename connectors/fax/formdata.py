"""``multipart/form-data`` (RFC 7578) parsed from a whole body in memory: pure, bytes in.

Why not aiohttp's streaming reader: it looks for the first boundary line by line on the event
loop, so a body without one costs a loop step per line (40 MB of short lines stall every other
request), and a line longer than its buffer is an error it does not type (the webhook answered
500). Here the delimiters are found with ``bytes.find`` (C speed, no per-line Python work), the
first one must open the body, and every failure is :class:`BadForm` (400) or
:class:`FormTooLarge` (413).
"""

from __future__ import annotations

import base64
import binascii
import quopri
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32

MAX_HEADER_BYTES = 8 * 1024  # the header block of one part
MAX_PREAMBLE = 1024  # bytes before the first delimiter (RFC 2046 allows them; nobody sends many)
_TRANSFER = {"", "7bit", "8bit", "binary", "base64", "quoted-printable"}


class BadForm(ValueError):
    """A body that is not well-formed ``multipart/form-data``."""


class FormTooLarge(ValueError):
    """A part over its size limit."""

    def __init__(self, message: str, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


@dataclass(frozen=True, slots=True)
class Part:
    name: str
    filename: str | None
    content_type: str
    data: bytes


def boundary_of(content_type: str) -> str:
    """The ``boundary`` parameter of a ``Content-Type`` header; :class:`BadForm` if it is
    missing or not what RFC 2046 allows (1 to 70 characters)."""
    header = Message(policy=compat32)
    header["Content-Type"] = content_type
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not 0 < len(boundary) <= 70:
        raise BadForm("the Content-Type has no valid boundary parameter")
    try:
        boundary.encode("ascii")
    except UnicodeEncodeError:
        raise BadForm("the boundary is not ASCII") from None
    return boundary


def parse(
    body: bytes, boundary: str, *, max_parts: int, limit_of: Callable[[str], int]
) -> list[Part]:
    """The named parts of ``body`` in order (parts without a name are skipped); each part's
    data may be at most ``limit_of(name)`` bytes."""
    delimiter = b"--" + boundary.encode("ascii")
    first = body.find(delimiter, 0, MAX_PREAMBLE + len(delimiter))
    if first < 0 or (first > 0 and body[first - 2 : first] != b"\r\n"):
        raise BadForm(f"the body does not begin with its boundary line (--{boundary})")
    position = first + len(delimiter)
    parts: list[Part] = []
    seen = 0
    while True:
        if body.startswith(b"--", position):
            return parts  # the close delimiter; what follows is an epilogue
        line_end = body.find(b"\r\n", position, position + 80)
        if line_end < 0 or body[position:line_end].strip(b" \t"):
            raise BadForm("a boundary line is not followed by a line break")
        start = line_end + 2
        if body.startswith(b"\r\n", start):
            headers, content = b"", start + 2
        else:
            end = body.find(b"\r\n\r\n", start, start + MAX_HEADER_BYTES)
            if end < 0:
                raise BadForm(f"a part's headers are missing or over {MAX_HEADER_BYTES} bytes")
            headers, content = body[start:end], end + 4
        close = body.find(b"\r\n" + delimiter, content)
        if close < 0:
            raise BadForm("a part is not closed by the boundary")
        seen += 1
        if seen > max_parts:
            raise BadForm(f"more than {max_parts} parts")
        part = _part(headers, body[content:close], limit_of)
        if part is not None:
            parts.append(part)
        position = close + 2 + len(delimiter)


def _part(headers: bytes, data: bytes, limit_of: Callable[[str], int]) -> Part | None:
    parsed = BytesHeaderParser(policy=compat32).parsebytes(headers + b"\r\n\r\n")
    disposition = parsed.get("Content-Disposition")
    if disposition is None or disposition.split(";", 1)[0].strip().lower() != "form-data":
        raise BadForm("a part has no Content-Disposition: form-data")
    name = parsed.get_param("name", header="content-disposition")
    if not isinstance(name, str) or not name:
        return None
    limit = limit_of(name)
    if len(data) > limit:
        raise FormTooLarge(f"part {name[:40]!r} is over {limit} bytes", limit)
    transfer = str(parsed.get("Content-Transfer-Encoding", "")).strip().lower()
    if transfer not in _TRANSFER:
        raise BadForm(f"part {name[:40]!r} has an unknown transfer encoding")
    if transfer == "base64":
        try:
            data = base64.b64decode(data, validate=False)
        except (binascii.Error, ValueError):
            raise BadForm(f"part {name[:40]!r} is not base64") from None
    elif transfer == "quoted-printable":
        data = quopri.decodestring(data)
    filename = parsed.get_filename()
    return Part(
        name, filename if isinstance(filename, str) else None, parsed.get_content_type(), data
    )
