"""What a fax worker process does with one document: read it, draw previews, recognize text.

Everything returned is plain data (bytes and strings), cheap to send back to the hub's
process. A page with a text layer (a PDF made by a computer) needs no OCR; a picture-only page
is recognized when OCR is on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from connectors.fax import documents, ocr


@dataclass(frozen=True, slots=True)
class Job:
    limits: documents.Limits
    preview_width: int
    ocr_languages: str | None  # None: OCR off or unavailable
    ocr_timeout: float  # per page
    seconds: float = 300.0  # the whole document: pages not begun by then are not read


@dataclass(frozen=True, slots=True)
class PageResult:
    number: int
    text: str
    source: str  # "text layer", "ocr" or "none"
    preview: bytes | None
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class Examined:
    kind: str
    content_type: str
    page_count: int
    pages: tuple[PageResult, ...]
    stopped: str | None = None  # why reading stopped before max_pages (a budget was spent)

    @property
    def text(self) -> str:
        return "\n\n".join(page.text for page in self.pages if page.text)


def examine(data: bytes, job: Job, clock: Callable[[], float] = time.monotonic) -> Examined:
    """Read, preview and recognize ``data``; :class:`documents.BadDocument` if unreadable.

    Pages are decoded one at a time (a 100-page fax never holds 100 page images), and each
    page's preview is drawn while tesseract recognizes it: tesseract is a child process, so the
    thread waiting for it leaves this one free. The document's budgets bound the whole: no page
    is begun after ``job.seconds`` (and OCR gets only what is left of them), and no page is
    decoded past the document's pixel budget; the pages read until then are kept."""
    deadline = clock() + job.seconds
    opened = documents.open_pages(data, job.limits)
    results: list[PageResult] = []
    stopped = None
    pages = iter(opened.pages)
    with ThreadPoolExecutor(1, thread_name_prefix="ocr") as recognizer:
        while True:
            left = deadline - clock()
            if left <= 0 and len(results) < min(opened.page_count, job.limits.max_pages):
                stopped = (
                    f"page {len(results) + 1} and the rest were not read: the document's time "
                    f"budget ({job.seconds:.0f} s) is spent"
                )
                break
            try:
                page = next(pages)
            except StopIteration:
                break
            except documents.BudgetSpent as exc:
                stopped = str(exc)
                break
            pending = None
            if not page.text_layer and page.image is not None and job.ocr_languages:
                timeout = max(1.0, min(job.ocr_timeout, deadline - clock()))
                pending = recognizer.submit(ocr.recognize, page.image, job.ocr_languages, timeout)
            preview = (
                documents.preview_png(page.image, job.preview_width)
                if page.image is not None
                else None
            )
            if page.text_layer:
                results.append(PageResult(page.number, page.text_layer, "text layer", preview))
            elif pending is not None:
                found = pending.result()
                results.append(PageResult(page.number, found.text, "ocr", preview, found.problem))
            else:
                results.append(PageResult(page.number, "", "none", preview))
    return Examined(opened.kind, opened.content_type, opened.page_count, tuple(results), stopped)
