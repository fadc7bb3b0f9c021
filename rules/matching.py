"""How rules match text: RE2 regular expressions (linear time, compiled when the rule is)
and the word sets of ``contains_any``."""

from __future__ import annotations

import re
from typing import Any

import re2  # type: ignore[import-untyped]


def _regex_options() -> Any:
    options = re2.Options()
    options.log_errors = False
    options.never_capture = True  # we only ask "does it match": no groups to track
    options.max_mem = 8 << 20
    return options


_OPTIONS = _regex_options()
_ANCHORS = getattr(getattr(getattr(re2, "_re2", None), "RE2", None), "Anchor", None)
_UNANCHORED: Any = getattr(_ANCHORS, "UNANCHORED", None)


class Regex:
    """An RE2 pattern (linear time) that answers one question: does it occur in the text?

    ``search`` takes the text as UTF-8 bytes (the evaluation context encodes each text once).
    It calls RE2's matcher directly where the binding exposes it, which costs half of the
    public ``search`` (no match object is built), and falls back to the public API otherwise.
    """

    __slots__ = ("_match", "_regex", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._regex = re2.compile(pattern.encode(), _OPTIONS)
        low_level = getattr(self._regex, "_regexp", None)
        self._match = getattr(low_level, "Match", None) if _UNANCHORED is not None else None

    def search(self, data: bytes) -> bool:
        if self._match is not None:
            return bool(self._match(_UNANCHORED, data, 0, len(data))[0][0] >= 0)
        return self._regex.search(data) is not None


def compile_regex(pattern: str) -> Regex:
    """Compile an admin's pattern with RE2; raises re2.error for invalid or unsupported syntax."""
    return Regex(pattern)


def _words(text: str) -> list[str]:

    # \w+ has no nested quantifiers: linear on any input; unicode-aware, unlike RE2's \b
    return re.findall(r"\w+", text.casefold())


def keyword_set(words: list[str]) -> tuple[frozenset[str], tuple[str, ...]]:
    """Single words and multi-word phrases of a contains_any list, normalized."""
    singles: set[str] = set()
    phrases: list[str] = []
    for word in words:
        tokens = _words(word)
        if len(tokens) == 1:
            singles.add(tokens[0])
        elif tokens:
            phrases.append(" ".join(tokens))
    return frozenset(singles), tuple(phrases)
