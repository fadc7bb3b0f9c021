"""Fax documents without the hub: reading PDF and G4 TIFF, previews, OCR of German text,
the reply PDF, bombs and broken files."""

from __future__ import annotations

import io
import resource
import time

import pytest
from PIL import Image

from connectors.fax import documents, ocr, render, worker
from tests.fax_samples import (
    FONT,
    ORDER,
    g4_pdf,
    g4_tiff,
    page,
    pdf_bomb,
    pixel_heavy_pdf,
    require_ocr,
    tiff_bomb,
)

JOB = worker.Job(documents.Limits(), 850, "deu", 30.0)


def _words(text: str) -> set[str]:
    return set(text.replace(",", " ").replace(".", " ").split())


@pytest.mark.parametrize("make", [g4_tiff, g4_pdf], ids=["g4-tiff", "g4-pdf"])
def test_german_fax_pages_ocr_back_with_umlauts(make: object) -> None:
    require_ocr()
    data = make()  # type: ignore[operator]
    examined = worker.examine(data, JOB)
    assert examined.page_count == 2
    assert [p.source for p in examined.pages] == ["ocr", "ocr"]
    assert all(p.problem is None for p in examined.pages)
    first, second = examined.pages
    for line in ORDER:
        assert line in first.text, (line, first.text)
    # the second page was sent at standard resolution (98 dpi): stretched back before OCR
    assert "Rücksendung" in second.text and "Übergabe am Montag" in second.text
    for result in examined.pages:
        assert result.preview is not None
        preview = Image.open(io.BytesIO(result.preview))
        assert preview.format == "PNG" and preview.width == 850
        # A4 proportions for both pages, the 98 dpi one included
        assert 1.3 < preview.height / preview.width < 1.5


def test_a_text_layer_is_used_without_ocr() -> None:
    letter = render.render(
        "Sehr geehrte Frau Schäfer, Ihre Rücksendung ist angekommen.",
        render.Letter(company="Beispiel GmbH", font=str(FONT) if FONT.exists() else None),
        to_number="+4930123456",
        subject="Rücksendung",
    )
    examined = worker.examine(letter.pdf, worker.Job(documents.Limits(), 850, None, 5))
    [result] = examined.pages
    assert result.source == "text layer"
    assert "Rücksendung ist angekommen" in result.text.replace("\n", " ")
    assert result.preview is None  # no picture on a computer-made page


def test_reply_pdf_has_header_cover_and_appended_documents() -> None:
    scan = g4_tiff()
    enclosed = g4_pdf([page(["Anlage"])])
    rendered = render.render(
        "Guten Tag Herr Müller,\n\nanbei die Unterlagen.",
        render.Letter(
            company="Beispiel GmbH",
            header_lines=("Hauptstraße 1, 10115 Berlin",),
            cover_page=True,
            font=str(FONT) if FONT.exists() else None,
            own_number="+4930901820",
        ),
        to_number="+4930123456",
        subject="Ihre Unterlagen",
        enclosures=(
            render.Enclosure("scan.tiff", "image/tiff", scan),
            render.Enclosure("anlage.pdf", "application/pdf", enclosed),
        ),
    )
    # cover + letter + 2 TIFF pages + 1 PDF page
    assert rendered.pages == 5
    document = documents.read(rendered.pdf, documents.Limits())
    cover, body = document.pages[0].text_layer, document.pages[1].text_layer
    assert "+4930123456" in cover and "Ihre Unterlagen" in cover
    assert "Beispiel GmbH" in body and "Hauptstraße 1" in body and "Herr Müller" in body
    assert [p.image is not None for p in document.pages] == [False, False, True, True, True]


def test_helvetica_fallback_keeps_latin1_and_replaces_the_rest() -> None:
    rendered = render.render(
        "Grüße aus Köln \u2013 東京 😀",
        render.Letter(font="/nonexistent.ttf"),
        to_number="+4930123456",
        subject=None,
    )
    text = documents.read(rendered.pdf, documents.Limits()).pages[0].text_layer
    assert "Grüße aus Köln" in text


def test_things_that_are_not_documents_cannot_be_faxed() -> None:
    with pytest.raises(render.CannotFax, match="cannot be faxed"):
        render.render(
            "x",
            render.Letter(),
            to_number="+4930123456",
            subject=None,
            enclosures=(render.Enclosure("sheet.xlsx", "application/vnd.ms-excel", b"PK\x03\x04"),),
        )
    with pytest.raises(render.CannotFax, match=r"broken\.pdf"):
        render.render(
            "x",
            render.Letter(),
            to_number="+4930123456",
            subject=None,
            enclosures=(render.Enclosure("broken.pdf", "application/pdf", b"%PDF-1.4\ngarbage"),),
        )


def _bounded(call: object) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with pytest.raises(documents.BadDocument) as caught:
        call()  # type: ignore[operator]
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    return time.perf_counter() - started, grown, str(caught.value)  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("pdf image bomb", pdf_bomb(), "100000 x 100000"),
        ("tiff bomb", tiff_bomb(), "too large"),
        ("not a document", b"MZ\x90\x00 executable", "not a PDF or TIFF"),
        ("empty", b"", "not a PDF or TIFF"),
        ("truncated pdf", g4_pdf()[:600], "unreadable PDF"),
        ("truncated tiff", g4_tiff()[:300], "TIFF"),
        ("encrypted-looking garbage", b"%PDF-1.7\n" + b"\x00" * 5000, "unreadable PDF"),
    ],
)
def test_hostile_documents_are_refused_quickly(name: str, data: bytes, reason: str) -> None:
    seconds, grown_mb, message = _bounded(lambda: documents.read(data, documents.Limits()))
    assert reason in message, message
    assert seconds < 5, name
    assert grown_mb < 200, name


def test_size_and_page_caps() -> None:
    data = g4_tiff([page(["eins"]), page(["zwei"]), page(["drei"])])
    with pytest.raises(documents.BadDocument, match="limit is 1000"):
        documents.read(data, documents.Limits(max_bytes=1000))
    capped = documents.read(data, documents.Limits(max_pages=2))
    assert capped.page_count == 3 and len(capped.pages) == 2
    with pytest.raises(documents.BadDocument, match="pixels"):
        documents.read(data, documents.Limits(max_pixels=1_000_000))


def test_ocr_timeout_is_reported_not_raised() -> None:
    require_ocr()
    big = Image.new("L", (6000, 6000), 255)
    found = ocr.recognize(big, "deu", timeout=0.01)
    assert found.text == "" and found.problem == "timeout"


def test_missing_language_data_is_named() -> None:
    require_ocr()
    assert ocr.problem("deu+eng") is None
    problem = ocr.problem("deu+xyz")
    assert problem is not None and "tesseract-ocr-xyz" in problem


def test_a_whole_document_pixel_budget_stops_reading() -> None:
    """Issue 14 item 9: 100 pages of 39.6 Mpx each passed every per-page cap and were all
    decoded and previewed (82 s on the audit's machine). The document's pixel budget (500 Mpx)
    stops before the page that would pass it; the pages before it are kept."""
    data = pixel_heavy_pdf()
    examined = worker.examine(data, worker.Job(documents.Limits(), 850, None, 30.0))
    assert examined.page_count == 100
    assert len(examined.pages) == 12  # 12 x 39.6 Mpx = 475 Mpx; the 13th would pass 500
    assert all(page.preview is not None for page in examined.pages)
    assert examined.stopped is not None and "page 13" in examined.stopped
    assert "pixel budget" in examined.stopped
    # a reply enclosure that big cannot be put on paper either
    with pytest.raises(documents.BadDocument, match="pixel budget"):
        documents.read(data, documents.Limits(max_document_pixels=100_000_000))


def test_a_whole_document_time_budget_stops_reading() -> None:
    """No page is begun after the document's time budget (the clock is the worker's, passed
    in): the pages read until then are kept and the rest named."""
    data = g4_tiff([page(["eins"]), page(["zwei"]), page(["drei"]), page(["vier"])])
    ticks = iter([0.0, 1.0, 2.0, 11.0, 12.0, 13.0])
    job = worker.Job(documents.Limits(), 850, None, 30.0, seconds=10.0)
    examined = worker.examine(data, job, clock=lambda: next(ticks))
    assert [p.number for p in examined.pages] == [1, 2]
    assert examined.stopped is not None and "page 3" in examined.stopped
    assert "time budget (10 s)" in examined.stopped
    whole = worker.examine(data, worker.Job(documents.Limits(), 850, None, 30.0))
    assert len(whole.pages) == 4 and whole.stopped is None


def test_standard_resolution_pages_count_as_stretched() -> None:
    """A 98 dpi page is drawn twice as tall: the pixel budget counts what is decoded."""
    fine, standard = page(["fein"]), page(["normal"], fine=False)
    one_fine = fine.width * fine.height
    data = g4_tiff([standard, fine])
    limits = documents.Limits(max_document_pixels=one_fine + one_fine // 2)
    examined = worker.examine(data, worker.Job(limits, 850, None, 30.0))
    assert len(examined.pages) == 1 and examined.stopped is not None
