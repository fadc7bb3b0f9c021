"""Mail HTML as text and how much of it the sanitizer may take: bounded before nh3 parses it
(:func:`html_too_complex`), tags dropped for the body text (:func:`html_to_text`)."""

from __future__ import annotations

import html as htmllib
import re

import nh3

_BLANK_LINES = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")
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
