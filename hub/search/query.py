"""What a search asks for, checked and turned into each database's query syntax. Pure.

A query is words: letters and digits (any script); everything else separates them, so no
character a user types reaches FTS5's or PostgreSQL's query language as syntax (``"``, ``*``,
``NEAR``, ``:``, ``&``, ``!`` are just separators or words). Every word must occur in the
message (or the customer), each as a word prefix: ``K0003`` finds ``K00034``. Too long or
empty queries and malformed cursors raise :class:`BadQuery`, which the API answers with 400.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

import msgspec

MAX_QUERY_CHARS = 200
MAX_TERMS = 8
MAX_TERM_CHARS = 64
MAX_LIMIT = 50
DEFAULT_LIMIT = 20

_WORD = re.compile(r"[^\W_]+")  # letters and digits; '_' separates, as in both tokenizers
_OPERATORS = {"and", "or", "not", "near"}  # FTS5 keywords: harmless quoted, but say nothing


class BadQuery(ValueError):
    """The request cannot be searched; the message says what to change."""


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the previous page ended: its last hit's time, kind and key (newest first)."""

    at: float
    match: str
    key: str


@dataclass(frozen=True, slots=True)
class SearchQuery:
    text: str  # as typed, trimmed (also compared with identity addresses)
    terms: tuple[str, ...]  # lowercased words, each searched as a prefix
    limit: int
    after: Cursor | None

    def fts5(self) -> str:
        """The FTS5 MATCH expression: every term a quoted prefix (``"k0003"* AND "anna"*``)."""
        return " AND ".join(f'"{term}"*' for term in self.terms)

    def tsquery(self) -> str:
        """The ``to_tsquery('simple', …)`` text: every term a quoted prefix lexeme."""
        return " & ".join(f"'{term}':*" for term in self.terms)


def terms_of(text: str) -> tuple[str, ...]:
    """The words of ``text`` to search for, lowercased, without repeats, in order."""
    words = [w.lower() for w in _WORD.findall(text)]
    seen: dict[str, None] = {}
    for word in words:
        if word not in _OPERATORS:
            seen.setdefault(word, None)
    terms = tuple(seen)
    if len(terms) > 1:  # one-letter words match nearly everything; keep them only alone
        longer = tuple(t for t in terms if len(t) > 1)
        terms = longer or terms
    return terms


def parse(q: str | None, cursor: str | None = None, limit: str | None = None) -> SearchQuery:
    """Check the ``q``, ``cursor`` and ``limit`` parameters of ``GET /api/search``."""
    text = (q or "").strip()
    if not text:
        raise BadQuery("q is empty: give words to search for")
    if len(text) > MAX_QUERY_CHARS:
        raise BadQuery(f"q is longer than {MAX_QUERY_CHARS} characters")
    terms = terms_of(text)
    if not terms:
        raise BadQuery("q has no letters or digits to search for")
    if len(terms) > MAX_TERMS:
        raise BadQuery(f"q has more than {MAX_TERMS} words")
    if any(len(term) > MAX_TERM_CHARS for term in terms):
        raise BadQuery(f"a word of q is longer than {MAX_TERM_CHARS} characters")
    return SearchQuery(text=text, terms=terms, limit=_limit(limit), after=decode_cursor(cursor))


def _limit(value: str | None) -> int:
    if value is None or value == "":
        return DEFAULT_LIMIT
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise BadQuery(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return int(value)


_CURSOR = msgspec.json.Decoder(tuple[float, str, str])


def encode_cursor(cursor: Cursor) -> str:
    raw = msgspec.json.encode((cursor.at, cursor.match, cursor.key))
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(value: str | None) -> Cursor | None:
    """The cursor a previous page answered (``next_cursor``); anything else is refused."""
    if value is None or value == "":
        return None
    if len(value) > 200:
        raise BadQuery("cursor is not one this API gave out")
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        at, match, key = _CURSOR.decode(raw)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise BadQuery("cursor is not one this API gave out") from None
    if match not in ("message", "customer") or not key or len(key) > 64:
        raise BadQuery("cursor is not one this API gave out")
    return Cursor(at=at, match=match, key=key)


def snippet(text: str, terms: tuple[str, ...], width: int = 160) -> str:
    """Up to ``width`` characters of ``text`` around the first word that starts a term."""
    flat = " ".join(text.split())
    if len(flat) <= width:
        return flat
    lowered = flat.lower()
    starts = [
        m.start() for term in terms for m in [re.search(rf"\b{re.escape(term)}", lowered)] if m
    ]
    at = min(starts) if starts else 0
    begin = max(0, min(at - width // 4, len(flat) - width))
    piece = flat[begin : begin + width]
    return ("…" if begin else "") + piece + ("…" if begin + width < len(flat) else "")
