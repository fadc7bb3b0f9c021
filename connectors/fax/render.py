"""An agent's reply as a fax: a clean A4 PDF (fpdf2) with the company's header, an optional
cover page, and the attached documents appended (PDF pages as they are, pictures one per page).

Pure: text and bytes in, PDF bytes out.
"""

from __future__ import annotations

import datetime
import io
import os
from dataclasses import dataclass

import pypdf
from fpdf import FPDF
from PIL import Image

from connectors.fax import documents


class CannotFax(ValueError):
    """An attachment that cannot be put on paper (a spreadsheet, a broken PDF)."""


@dataclass(frozen=True, slots=True)
class Letter:
    company: str = ""
    header_lines: tuple[str, ...] = ()
    cover_page: bool = False
    font: str | None = None
    own_number: str = ""


@dataclass(frozen=True, slots=True)
class Enclosure:
    name: str
    content_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Rendered:
    pdf: bytes
    pages: int


_DEFAULT_LIMITS = documents.Limits()
_IMAGES = {"image/png", "image/jpeg", "image/tiff", "image/gif"}


def render(
    text: str,
    letter: Letter,
    *,
    to_number: str,
    subject: str | None,
    enclosures: tuple[Enclosure, ...] = (),
    now: datetime.datetime | None = None,
    limits: documents.Limits = _DEFAULT_LIMITS,
) -> Rendered:
    """The fax to send for ``text``; :class:`CannotFax` if an enclosure is not a document."""
    when = now or datetime.datetime.now(datetime.UTC)
    pdf = FPDF(format="A4", unit="mm")
    pdf.set_auto_page_break(auto=True, margin=18)
    pdf.set_margins(20, 18, 20)
    family = _font(pdf, letter.font)
    pdf.set_title(subject or "Fax")
    pdf.set_creator("channelhub")
    if letter.cover_page:
        _cover(pdf, family, letter, to_number, subject, when)
    pdf.add_page()
    _header(pdf, family, letter)
    if subject:
        pdf.set_font(family, size=12, style="B" if family != "body" else "")
        pdf.multi_cell(0, 6, _printable(subject, family), new_x="LMARGIN", new_y="NEXT")
        pdf.ln(3)
    pdf.set_font(family, size=11)
    pdf.multi_cell(0, 5.5, _printable(text, family), new_x="LMARGIN", new_y="NEXT")
    letter_pdf = bytes(pdf.output())
    appended = [_enclosure_pdf(item, limits) for item in enclosures]
    if not appended:
        return Rendered(letter_pdf, pdf.pages_count)
    writer = pypdf.PdfWriter()
    writer.append(io.BytesIO(letter_pdf))
    for data in appended:
        writer.append(io.BytesIO(data))
    out = io.BytesIO()
    writer.write(out)
    return Rendered(out.getvalue(), len(writer.pages))


def _font(pdf: FPDF, path: str | None) -> str:
    """``body`` (the TrueType font, all of Unicode it covers) or Helvetica (Latin-1)."""
    if path and os.path.isfile(path):
        pdf.add_font("body", "", path)
        return "body"
    return "helvetica"


def _printable(text: str, family: str) -> str:
    if family == "body":
        return text
    return text.encode("latin-1", "replace").decode("latin-1")


def _header(pdf: FPDF, family: str, letter: Letter) -> None:
    if not (letter.company or letter.header_lines):
        return
    if letter.company:
        pdf.set_font(family, size=14)
        pdf.cell(0, 7, _printable(letter.company, family), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(family, size=9)
    for line in letter.header_lines:
        pdf.cell(0, 4.5, _printable(line, family), new_x="LMARGIN", new_y="NEXT")
    y = pdf.get_y() + 2
    pdf.line(20, y, 190, y)
    pdf.set_y(y + 6)


def _cover(
    pdf: FPDF,
    family: str,
    letter: Letter,
    to_number: str,
    subject: str | None,
    when: datetime.datetime,
) -> None:
    pdf.add_page()
    _header(pdf, family, letter)
    pdf.set_font(family, size=28)
    pdf.cell(0, 16, "Fax", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(family, size=12)
    rows = [
        ("To", to_number),
        ("From", " ".join(filter(None, [letter.company, letter.own_number]))),
        ("Date", when.strftime("%Y-%m-%d %H:%M UTC")),
        ("Subject", subject or ""),
    ]
    for label, value in rows:
        pdf.cell(30, 8, label)
        pdf.cell(0, 8, _printable(value, family), new_x="LMARGIN", new_y="NEXT")


def _enclosure_pdf(item: Enclosure, limits: documents.Limits) -> bytes:
    """A PDF of the enclosure (checked like an inbound document first)."""
    kind = documents.sniff(item.data)
    if kind == "pdf":
        try:
            documents.read(item.data, documents.Limits(limits.max_bytes, 1, limits.max_pixels))
        except documents.BadDocument as exc:
            raise CannotFax(f"{item.name}: {exc}") from None
        return item.data
    if kind == "tiff" or item.content_type in _IMAGES:
        try:
            pages = documents.read(item.data, limits).pages if kind == "tiff" else ()
            images = [page.image for page in pages if page.image is not None]
            if kind != "tiff":
                with Image.open(io.BytesIO(item.data)) as opened:
                    if opened.width * opened.height > limits.max_pixels:
                        raise CannotFax(f"{item.name}: the picture is too large")
                    images = [opened.convert("L")]
        except (documents.BadDocument, OSError) as exc:
            raise CannotFax(f"{item.name}: {exc}") from None
        pdf = FPDF(format="A4", unit="mm")
        pdf.set_auto_page_break(auto=False)
        for image in images:
            pdf.add_page()
            ratio = min(190 / image.width, 277 / image.height)
            pdf.image(image, x=10, y=10, w=image.width * ratio, h=image.height * ratio)
        return bytes(pdf.output())
    raise CannotFax(f"{item.name} ({item.content_type}) cannot be faxed: send a PDF or a picture")
