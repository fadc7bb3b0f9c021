"""Fax documents made in the tests: German text drawn at fax resolution, saved as a CCITT G4
TIFF and as a PDF wrapping G4 images (what gateways deliver), plus hostile documents.

Text is drawn with DejaVu Sans (Debian's fonts-dejavu-core, which chromium pulls in); tests that
OCR skip off-CI when it or tesseract is missing, and fail under CI=true.
"""

from __future__ import annotations

import io
import shutil
import struct
import zlib
from pathlib import Path

import pypdf
import pytest
from PIL import Image, ImageDraw, ImageFont, TiffImagePlugin

from tests.helpers import IN_CI

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
ORDER = [
    "Bestellung Nr. 4711",
    "Sehr geehrte Damen und Herren,",
    "bitte liefern Sie 12 Stück Größe M.",
    "Mit freundlichen Grüßen",
    "Jürgen Müller, Köln",
]
SECOND = ["Seite zwei: Rücksendung", "Übergabe am Montag"]


def require_ocr() -> None:
    """Skip (on a laptop without them) or fail (in CI) when tesseract or the font is missing."""
    missing = [
        name
        for name, present in (
            ("tesseract", shutil.which("tesseract") is not None),
            (
                "tesseract-ocr-deu",
                Path("/usr/share/tesseract-ocr/5/tessdata/deu.traineddata").exists(),
            ),
            ("fonts-dejavu-core", FONT.exists()),
        )
        if not present
    ]
    if missing:
        message = f"{', '.join(missing)} not installed (apt-get install {' '.join(missing)})"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def page(lines: list[str], *, fine: bool = True) -> Image.Image:
    """An A4 fax page (1728 dots wide) with ``lines``; ``fine``: 196 dpi tall, else 98."""
    width, height = 1728, 2292
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(str(FONT), 40)
    y = 150
    for line in lines:
        draw.text((120, y), line, font=font, fill=0)
        y += 70
    bilevel = image.point(lambda v: 255 if v > 128 else 0).convert("1")
    if not fine:
        bilevel = bilevel.resize((width, height // 2))
    return bilevel


def g4_tiff(pages: list[Image.Image] | None = None) -> bytes:
    """A multi-page CCITT G4 TIFF, each page with its own resolution (fine pages 204 x 196
    dpi, standard ones 204 x 98), as fax modems write them."""
    pages = pages or [page(ORDER), page(SECOND, fine=False)]
    out = io.BytesIO()
    with TiffImagePlugin.AppendingTiffWriter(out) as writer:
        for image in pages:
            y_dpi = 196 if image.height > 1500 else 98
            image.save(writer, format="TIFF", compression="group4", dpi=(204, y_dpi))
            writer.newFrame()
    return out.getvalue()


def g4_pdf(pages: list[Image.Image] | None = None) -> bytes:
    """A PDF with one CCITT G4 image per A4 page, as fax gateways deliver them (a standard-
    resolution image is as tall on paper as a fine one: half the dots, same page)."""
    pages = pages or [page(ORDER), page(SECOND, fine=False)]
    writer = pypdf.PdfWriter()
    for image in pages:
        single = io.BytesIO()
        y_dpi = 196 if image.height > 1500 else 98
        image.save(single, format="PDF", dpi=(204, y_dpi))
        writer.append(io.BytesIO(single.getvalue()))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def pdf_bomb() -> bytes:
    """A one-page PDF whose image declares 100,000 x 100,000 pixels (10 gigapixels)."""
    stream = zlib.compress(b"\x00" * 1000)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
        b"/Resources << /XObject << /Im0 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /XObject /Subtype /Image /Width 100000 /Height 100000 /ColorSpace "
        b"/DeviceGray /BitsPerComponent 8 /Filter /FlateDecode /Length "
        + str(len(stream)).encode()
        + b" >>\nstream\n"
        + stream
        + b"\nendstream",
        b"<< /Length 33 >>\nstream\nq 595 0 0 842 0 0 cm /Im0 Do Q\nendstream",
    ]
    return _pdf(objects)


def _pdf(objects: list[bytes]) -> bytes:
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n".encode() + body + b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    for offset in offsets:
        out.write(f"{offset:010d} 00000 n \n".encode())
    out.write(
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return out.getvalue()


def tiff_bomb() -> bytes:
    """A tiny TIFF header declaring a 60,000 x 60,000 page (3.6 gigapixels)."""
    entries = [
        (256, 4, 1, 60000),  # ImageWidth
        (257, 4, 1, 60000),  # ImageLength
        (258, 3, 1, 1),  # BitsPerSample
        (259, 3, 1, 4),  # Compression: G4
        (262, 3, 1, 0),  # Photometric
        (273, 4, 1, 200),  # StripOffsets
        (278, 4, 1, 60000),  # RowsPerStrip
        (279, 4, 1, 16),  # StripByteCounts
    ]
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        ifd += struct.pack("<HHII", tag, kind, count, value)
    ifd += struct.pack("<I", 0)
    head = b"II*\x00" + struct.pack("<I", 8)
    body = head + ifd
    return body + b"\x00" * (200 - len(body)) + b"\xff" * 16


def pixel_heavy_pdf(pages: int = 100, size: tuple[int, int] = (5400, 7333)) -> bytes:
    """What held a webhook for 82 s: ``pages`` pages, each one just under the per-page cap
    (5400 x 7333 = 39.6 Mpx, a bilevel G4 image), all within the byte cap (the pages share one
    image, so the file is ~20 KB)."""
    image = Image.new("1", size, 1)
    draw = ImageDraw.Draw(image)
    for y in range(0, size[1], 200):
        draw.line((0, y, size[0], y), fill=0, width=3)
    single = io.BytesIO()
    image.save(single, format="PDF", dpi=(400, 400))
    template = pypdf.PdfReader(io.BytesIO(single.getvalue())).pages[0]
    writer = pypdf.PdfWriter()
    for _ in range(pages):
        writer.add_page(template)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
