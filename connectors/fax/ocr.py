"""Text recognition with tesseract (through pytesseract), and whether it can run at all.

Recognition runs in the fax worker process, one tesseract child per page with a timeout, so a
page that makes tesseract spin is killed rather than holding the line. A missing binary or
language pack is found at start-up and reported by ``/readyz``; faxes still arrive, without text.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytesseract
from PIL import Image

# one thread per tesseract: the worker pool is the parallelism, OpenMP threads only fight it
os.environ.setdefault("OMP_THREAD_LIMIT", "1")


@dataclass(frozen=True, slots=True)
class Recognized:
    text: str
    problem: str | None = None  # "timeout", "failed: …"; None when recognized


def problem(languages: str) -> str | None:
    """Why OCR in ``languages`` cannot run here, or None. Runs tesseract: call off the loop."""
    try:
        pytesseract.get_tesseract_version()
        installed = set(pytesseract.get_languages(config=""))
    except pytesseract.TesseractNotFoundError:
        return "tesseract is not installed (Debian: apt-get install tesseract-ocr)"
    except (OSError, RuntimeError, pytesseract.TesseractError) as exc:
        return f"tesseract does not run: {exc}"
    missing = [lang for lang in languages.split("+") if lang not in installed]
    if missing:
        packages = " ".join(f"tesseract-ocr-{lang}" for lang in missing)
        return (
            f"tesseract lacks the language data {', '.join(missing)} (apt-get install {packages})"
        )
    return None


def recognize(image: Image.Image, languages: str, timeout: float) -> Recognized:
    """The text on one page (page segmentation: automatic)."""
    try:
        text = pytesseract.image_to_string(image, lang=languages, config="--psm 3", timeout=timeout)
    except RuntimeError as exc:
        if "timeout" in str(exc).lower():
            return Recognized("", "timeout")
        return Recognized("", f"failed: {exc}"[:300])
    except (pytesseract.TesseractError, pytesseract.TesseractNotFoundError, OSError) as exc:
        return Recognized("", f"failed: {exc}"[:300])
    return Recognized(_tidy(text))


def _tidy(text: str) -> str:
    """Tesseract's output without its trailing form feed and runs of blank lines."""
    lines = [line.rstrip() for line in text.replace("\f", "\n").splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()
