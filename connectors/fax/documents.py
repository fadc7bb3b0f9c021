"""Reading fax documents: PDF (pypdf) and multi-page TIFF (Pillow, CCITT G3/G4 included).

A fax page is a picture; a PDF from a gateway wraps one image per page (often CCITT G4), and a
PDF made by a computer may carry a text layer instead. Each page yields its text layer (if any)
and its picture at a corrected aspect ratio (standard-resolution faxes are 204 x 98 dpi, half
as tall as they should look). Hostile documents are bounded: bytes, pages, pixels per page and
pixels of the whole document are capped before anything is decoded, and Pillow's
decompression-bomb check is an error here.
Pure (no I/O but the bytes given); meant to run in a worker process.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pypdf
from PIL import Image
from pypdf.errors import PdfReadError, PyPdfError
from pypdf.filters import CCITTFaxDecode

_MB = 1024 * 1024
# pypdf decodes streams up to these sizes: far above any fax page, far below a bomb's output
_PDF_LIMITS = {
    "maximum_declared_stream_length": 64 * _MB,
    "zlib_maximum_output_length": 64 * _MB,
    "lzw_maximum_output_length": 64 * _MB,
    "run_length_maximum_output_length": 64 * _MB,
    "jbig2_maximum_output_length": 64 * _MB,
    "image_maximum_buffer_size": 64 * _MB,
    "page_tree_maximum_entries": 10_000,
}


class BadDocument(ValueError):
    """A document that is not a readable PDF or TIFF, or breaks a limit."""


class BudgetSpent(BadDocument):
    """The next page would take the document past its pixel budget; the pages before it were
    read (``pages_read``), the rest are not decoded."""

    def __init__(self, message: str, pages_read: int) -> None:
        super().__init__(message)
        self.pages_read = pages_read

    def __reduce__(self) -> tuple[type[BudgetSpent], tuple[str, int]]:
        # raised in a worker process: it must cross back intact
        return BudgetSpent, (str(self), self.pages_read)


@dataclass(frozen=True, slots=True)
class Limits:
    max_bytes: int = 30 * 1024 * 1024
    max_pages: int = 100
    max_pixels: int = 40_000_000  # per page image
    # all pages together: a hundred pages each just under max_pixels held a webhook for 82 s
    max_document_pixels: int = 500_000_000


@dataclass(slots=True)
class Page:
    number: int
    text_layer: str
    image: Image.Image | None  # grayscale, aspect corrected; None: no picture on the page


@dataclass(frozen=True, slots=True)
class Document:
    kind: str  # "pdf" or "tiff"
    content_type: str
    page_count: int  # all pages in the document
    pages: tuple[Page, ...]  # the first max_pages of them


def sniff(data: bytes) -> str | None:
    """``pdf``, ``tiff`` or None, from the first bytes (never from a file name)."""
    head = data[:1024]
    if b"%PDF-" in head:
        return "pdf"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    return None


def read(data: bytes, limits: Limits) -> Document:
    """All pages of a PDF or TIFF at once; :class:`BadDocument` if it is neither or breaks a
    limit. For long documents prefer :func:`open_pages` (one page image in memory at a time)."""
    opened = open_pages(data, limits)
    return Document(opened.kind, opened.content_type, opened.page_count, tuple(opened.pages))


@dataclass(frozen=True, slots=True)
class Opened:
    kind: str
    content_type: str
    page_count: int
    pages: Iterator[Page]  # the first max_pages, decoded as they are taken


@contextmanager
def _guarded(limits: Limits) -> Iterator[None]:
    """Pillow's bomb check as an error at this document's pixel cap, pypdf's stream limits,
    and every failure of either as :class:`BadDocument`."""
    with warnings.catch_warnings():
        # Pillow warns about damaged tags it reads past; a page it cannot decode still fails
        warnings.filterwarnings("ignore", category=UserWarning, module="PIL")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        previous = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = limits.max_pixels
        try:
            with pypdf.apply_configuration(None, **_PDF_LIMITS):
                yield
        except BadDocument:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise BadDocument(f"a page image is too large: {exc}") from None
        except (PdfReadError, PyPdfError, KeyError, TypeError) as exc:
            raise BadDocument(f"unreadable PDF: {exc}") from None
        except RecursionError:
            raise BadDocument("unreadable document: nested too deeply") from None
        except (OSError, ValueError, EOFError, SyntaxError) as exc:
            raise BadDocument(f"unreadable document: {exc}") from None
        finally:
            Image.MAX_IMAGE_PIXELS = previous


def open_pages(data: bytes, limits: Limits) -> Opened:
    """The page count now, the pages one by one; :class:`BadDocument` (also while iterating)
    if the document is not a PDF or TIFF or breaks a limit."""
    if len(data) > limits.max_bytes:
        raise BadDocument(f"the document has {len(data)} bytes; the limit is {limits.max_bytes}")
    kind = sniff(data)
    if kind is None:
        raise BadDocument("not a PDF or TIFF document")
    if kind == "pdf":
        with _guarded(limits):
            try:
                reader = pypdf.PdfReader(io.BytesIO(data), strict=False)
                if reader.is_encrypted and not reader.decrypt(""):
                    raise BadDocument("the PDF is encrypted")
                count = len(reader.pages)
            except (OSError, ValueError) as exc:
                raise BadDocument(f"unreadable PDF: {exc}") from None
        return Opened("pdf", "application/pdf", count, _pdf_pages(reader, count, limits))
    with _guarded(limits):
        try:
            image = Image.open(io.BytesIO(data))
            count = int(getattr(image, "n_frames", 1))
        except (OSError, ValueError, EOFError, SyntaxError) as exc:
            raise BadDocument(f"unreadable TIFF: {exc}") from None
    return Opened("tiff", "image/tiff", count, _tiff_pages(image, count, limits))


def _upright(image: Image.Image) -> Image.Image:
    """Grayscale, with the vertical resolution raised to the horizontal one."""
    dpi = image.info.get("dpi")
    gray = image.convert("L")
    if isinstance(dpi, tuple) and len(dpi) == 2:
        x_dpi, y_dpi = float(dpi[0] or 0), float(dpi[1] or 0)
        if x_dpi > 0 and 0 < y_dpi < x_dpi * 0.8:
            height = round(gray.height * x_dpi / y_dpi)
            gray = gray.resize((gray.width, height), Image.Resampling.LANCZOS)
            gray.info["dpi"] = (x_dpi, x_dpi)
            return gray
    if isinstance(dpi, tuple) and len(dpi) == 2:
        gray.info["dpi"] = dpi
    return gray


class _Budget:
    """Pixels of the document decoded so far, charged from the image headers before decoding."""

    def __init__(self, limits: Limits) -> None:
        self.limit = limits.max_document_pixels
        self.spent = 0

    def charge(self, pixels: int, index: int) -> None:
        if self.spent + pixels > self.limit:
            raise BudgetSpent(
                f"page {index + 1} and the rest were not read: the document's pixel budget "
                f"({self.limit / 1e6:.0f} Mpx) is spent",
                pages_read=index,
            )
        self.spent += pixels


def _tiff_pages(image: Image.Image, count: int, limits: Limits) -> Iterator[Page]:
    budget = _Budget(limits)
    for index in range(min(count, limits.max_pages)):
        with _guarded(limits):
            try:
                image.seek(index)
                if image.width * image.height > limits.max_pixels:
                    raise BadDocument(
                        f"page {index + 1} has {image.width} x {image.height} pixels; "
                        f"the limit is {limits.max_pixels}"
                    )
                budget.charge(_upright_pixels(image.width, image.height, image.info), index)
                frame = image.copy()
            except BadDocument:
                raise
            except (OSError, ValueError, EOFError, SyntaxError) as exc:
                raise BadDocument(f"unreadable TIFF: {exc}") from None
            frame.info["dpi"] = image.info.get("dpi")
            page = Page(index + 1, "", _upright(frame))
        yield page


def _pdf_pages(reader: pypdf.PdfReader, count: int, limits: Limits) -> Iterator[Page]:
    budget = _Budget(limits)
    for index in range(min(count, limits.max_pages)):
        with _guarded(limits):
            pdf_page = reader.pages[index]
            image = _page_image(pdf_page, index, limits, budget)
            page = Page(index + 1, _text_layer(pdf_page), image)
        yield page


def _upright_pixels(width: int, height: int, info: Mapping[Any, Any]) -> int:
    """Pixels a page will have once :func:`_upright` stretched it (twice a standard-resolution
    fax's), so the budget counts what is really decoded and drawn."""
    dpi = info.get("dpi")
    if isinstance(dpi, tuple) and len(dpi) == 2:
        try:
            x_dpi, y_dpi = float(dpi[0] or 0), float(dpi[1] or 0)
        except (TypeError, ValueError):
            return width * height
        if x_dpi > 0 and 0 < y_dpi < x_dpi * 0.8:
            return width * round(height * x_dpi / y_dpi)
    return width * height


def _text_layer(page: Any) -> str:
    try:
        text = page.extract_text() or ""
    except Exception:  # a broken content stream: the picture (OCR) still counts
        return ""
    return text.strip()[:200_000]


def _images(page: Any) -> Iterator[tuple[str, int, int, Any]]:
    """(name, width, height, object) of the page's image XObjects, from their dictionaries."""
    resources = page.get("/Resources")
    resources = resources.get_object() if resources is not None else None
    xobjects = resources.get("/XObject") if resources else None
    xobjects = xobjects.get_object() if xobjects is not None else None
    if not xobjects:
        return
    for name in list(xobjects.keys())[:50]:
        item = xobjects[name].get_object()
        if item.get("/Subtype") == "/Image":
            yield str(name), int(item.get("/Width", 0)), int(item.get("/Height", 0)), item


def _page_image(page: Any, index: int, limits: Limits, budget: _Budget) -> Image.Image | None:
    """The page's largest picture, checked against the pixel caps before it is decoded."""
    sizes = list(_images(page))
    if not sizes:
        return None
    for _name, width, height, _item in sizes:
        if width * height > limits.max_pixels:
            raise BadDocument(
                f"page {index + 1} has a {width} x {height} image; the limit is "
                f"{limits.max_pixels} pixels"
            )
    # every picture of the page counts: finding the largest by name may decode them all
    budget.charge(sum(width * height for _name, width, height, _item in sizes), index)
    largest = max(sizes, key=lambda item: item[1] * item[2])
    fast = _ccitt_image(largest[3])
    if fast is not None:
        return _pdf_image(fast, page)
    for found in page.images:
        if found.name.lstrip("/").rsplit(".", 1)[0] == largest[0].lstrip("/"):
            return _pdf_image(found.image, page)
    found = max(page.images, key=lambda f: f.image.width * f.image.height, default=None)
    return _pdf_image(found.image, page) if found is not None else None


def _ccitt_image(item: Any) -> Image.Image | None:
    """A CCITT G3/G4 image (what fax PDFs hold) decoded straight from its stream: pypdf's own
    route decodes it, then re-encodes it to TIFF, three times the work. None: not that kind."""
    filters = item.get("/Filter")
    if isinstance(filters, list | tuple):
        filters = filters[0] if len(filters) == 1 else None
    if filters != "/CCITTFaxDecode" or item.get("/ImageMask") or item.get("/Decode"):
        return None
    tiff = CCITTFaxDecode.decode(item._data, item.get("/DecodeParms"), item.get("/Height", 0))
    image = Image.open(io.BytesIO(tiff))
    image.load()
    return image


def _pdf_image(image: Image.Image | None, page: Any) -> Image.Image | None:
    """The picture at the resolution its place on the page implies (fax PDFs scale a 204 x 98
    dpi image onto A4, so the aspect comes from the page, not the pixels)."""
    if image is None:
        return None
    try:
        width_pt, height_pt = float(page.mediabox.width), float(page.mediabox.height)
    except (TypeError, ValueError):
        width_pt = height_pt = 0.0
    if width_pt > 0 and height_pt > 0:
        x_dpi = image.width / (width_pt / 72)
        y_dpi = image.height / (height_pt / 72)
        image.info["dpi"] = (x_dpi, y_dpi)
    return _upright(image)


def preview_png(image: Image.Image, width: int) -> bytes:
    """A PNG of the page, ``width`` pixels wide, small enough for the console."""
    scaled = image
    if image.width > width:
        height = max(1, round(image.height * width / image.width))
        # area averaging: right for shrinking black-and-white scans, and 4x faster than Lanczos
        scaled = image.resize((width, height), Image.Resampling.BOX)
    out = io.BytesIO()
    scaled.save(out, format="PNG")  # optimize=True would double the time for 10 % less
    return out.getvalue()
