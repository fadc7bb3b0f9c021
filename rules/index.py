"""The candidate index: the rules that can match a message, found without trying the others.

At compile time each enabled rule gets *keys* from its hints (rules.hints): the conjuncts of its
top-level ``and`` that name an exact value, a list member, a keyword or a regular expression of
a field, at most one per field and kind. Rules with the same kinds of key form a group and are
filed in its table under every combination of their values: ``inbox == "shop-1" and
contains_any(message.text, ["refund", "return"])`` under "shop-1", then "refund" and "return"
(a table with an exact-value key is looked up by that value first). Per message each field is
read once (a text's words intersected with the keywords in use; the patterns that one RE2 set
finds in it) and each group looks up only the combinations the message has, in C
(``map``/``product``/``chain``, in one function generated for the rule set), so the cost
follows what matches rather than how many rules there are. A rule found has all its keyed
conjuncts true; only its residual (the other conjuncts) still runs. Rules with no key but a
numeric threshold are found by bisecting sorted thresholds; rules with neither are always
candidates.
"""

from __future__ import annotations

import bisect
import logging
import math
import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from itertools import chain, product
from operator import attrgetter
from typing import Any

import re2  # type: ignore[import-untyped]

from rules.expr import Compiled
from rules.hints import IndexHint
from rules.matching import Regex, compile_regex
from rules.vocabulary import NAMES

log = logging.getLogger(__name__)

KEYED = ("exact", "member", "keyword", "regex")
# a rule is filed under at most this many combinations; past it, its widest key is checked by
# its residual instead
MAX_KEYS_PER_RULE = 256


class RegexSet:
    """Every pattern used on one field, matched in one pass with an RE2 set.

    Pattern ``i`` is reported as ``i + 1``: 0 is an empty pattern that matches every text, so
    an answer without it means RE2 gave up (its DFA ran out of memory) and the patterns are
    then tried one by one. The same answer either way.
    """

    def __init__(
        self, getter: Callable[[Any], Any], patterns: list[str], *, max_mem: int = 32 << 20
    ) -> None:
        self.getter = getter
        self.regexes: list[Regex] = [compile_regex(pattern) for pattern in patterns]
        options = re2.Options()
        options.log_errors = False
        options.never_capture = True
        options.max_mem = max_mem
        try:
            matcher = re2.Set.SearchSet(options)
            matcher.Add(b"")
            for pattern in patterns:
                matcher.Add(pattern.encode())
            matcher.Compile()
        except re2.error:
            log.warning(
                "%d patterns on one field are too many for one RE2 set: each runs on its own",
                len(patterns),
            )
            matcher = None
        # the binding's own matcher (bytes in, list out) where it is exposed: half the cost
        self.match: Callable[[bytes], list[int] | None] | None = getattr(
            getattr(matcher, "_set", None), "Match", None
        ) or getattr(matcher, "Match", None)

    def __call__(self, context: Any) -> Collection[int]:
        data = context.utf8(self.getter(context))
        if data is None:
            return ()
        if self.match is not None:
            found = self.match(data)
            if found:
                return found
        return [number + 1 for number, regex in enumerate(self.regexes) if regex.search(data)]


@dataclass(slots=True)
class Thresholds:
    """Rules found by one numeric comparison of one field, thresholds sorted ascending."""

    getter: Callable[[Any], Any]
    above: bool
    strict: list[tuple[Any, int]] = field(default_factory=list)  # (threshold, rule) for > / <
    inclusive: list[tuple[Any, int]] = field(default_factory=list)  # for >= / <=
    strict_keys: list[Any] = field(default_factory=list)
    strict_rules: list[int] = field(default_factory=list)
    inclusive_keys: list[Any] = field(default_factory=list)
    inclusive_rules: list[int] = field(default_factory=list)

    def freeze(self) -> None:
        self.strict.sort()
        self.inclusive.sort()
        self.strict_keys = [key for key, _ in self.strict]
        self.strict_rules = [rule for _, rule in self.strict]
        self.inclusive_keys = [key for key, _ in self.inclusive]
        self.inclusive_rules = [rule for _, rule in self.inclusive]

    def satisfied(self, context: Any) -> Iterable[int]:
        value = self.getter(context)
        if value != value:  # NaN: no comparison holds
            return ()
        # a value that is no number raises TypeError here, as the comparison itself would
        if self.above:  # t < value, or t <= value
            return chain(
                self.strict_rules[: bisect.bisect_left(self.strict_keys, value)],
                self.inclusive_rules[: bisect.bisect_right(self.inclusive_keys, value)],
            )
        return chain(  # t > value, or t >= value
            self.strict_rules[bisect.bisect_right(self.strict_keys, value) :],
            self.inclusive_rules[bisect.bisect_left(self.inclusive_keys, value) :],
        )


@dataclass(frozen=True, slots=True)
class Field:
    """A field read for one kind of key: ``values`` are the keys in use (exact, member,
    keyword) or, for ``regex``, the set of patterns."""

    kind: str
    path: str
    values: frozenset[Any] | RegexSet


@dataclass
class RuleIndex:
    fields: list[Field] = field(default_factory=list)
    # (field positions, table): a single field's table is keyed by value, else by tuple
    groups: list[tuple[tuple[int, ...], dict[Any, tuple[int, ...]]]] = field(default_factory=list)
    thresholds: list[Thresholds] = field(default_factory=list)
    always: tuple[int, ...] = ()
    source: str = ""  # of ``candidates``, for reading and debugging

    def candidates(self, context: Any) -> set[int]:
        """The rules whose keyed conjuncts all hold for ``context`` (plus the unkeyed ones).

        Raises whatever reading a field raises (a value of an unexpected type): the caller then
        evaluates rule by rule, which reports the error where it belongs. Replaced by code
        generated for the rule set (:func:`_generate`), which does the same in straight lines.
        """
        return set(self.always)


def _generate(index: RuleIndex) -> None:
    """Write ``index.candidates`` as one function: per field one read, per group one lookup
    (or a few, in C), no loops over groups or fields at run time."""
    namespace: dict[str, Any] = {
        "chain": chain.from_iterable,
        "product": product,
        "_scan": _scan,
        "ALWAYS": index.always,
    }
    single_exact = {
        positions[0]
        for positions, _ in index.groups
        if len(positions) == 1 and index.fields[positions[0]].kind == "exact"
    }
    lines: list[str] = []
    for group, (positions, table) in enumerate(index.groups):
        namespace[f"T{group}"] = table
        if len(positions) == 1:
            (position,) = positions
            if position in single_exact:
                lines += [
                    f"    hit = T{group}.get(x{position})",
                    "    if hit:",
                    "        found.update(hit)",
                ]
            else:
                lines += [
                    f"    if f{position}:",
                    f"        found.update(chain(filter(None, map(T{group}.get, f{position}))))",
                ]
            continue
        outer = next((p for p in positions if index.fields[p].kind == "exact"), None)
        if outer is None:
            lines += _combinations(f"T{group}", positions, indent="    ")
            continue
        # keyed by the exact value first: one lookup, then only the rest's combinations
        where = positions.index(outer)
        inner = positions[:where] + positions[where + 1 :]
        nested: dict[Any, dict[Any, tuple[int, ...]]] = {}
        for key, found in table.items():
            rest = key[:where] + key[where + 1 :]
            nested.setdefault(key[where], {})[rest[0] if len(rest) == 1 else rest] = found
        namespace[f"T{group}"] = nested
        lines += [f"    sub = T{group}.get(x{outer})", "    if sub:"]
        if len(inner) > 1:
            lines += _combinations("sub", inner, indent="        ")
        elif index.fields[inner[0]].kind == "exact":
            lines += [
                f"        hit = sub.get(x{inner[0]})",
                "        if hit:",
                "            found.update(hit)",
            ]
        else:
            lines += [
                f"        if f{inner[0]}:",
                f"            found.update(chain(filter(None, map(sub.get, f{inner[0]}))))",
            ]
    for number, thresholds in enumerate(index.thresholds):
        namespace[f"L{number}"] = thresholds
        lines.append(f"    found.update(L{number}.satisfied(c))")
    lines.append("    return found")
    reads = _reads(index, namespace, set(re.findall(r"\bf(\d+)\b", "\n".join(lines))))
    index.source = "\n".join(reads + lines) + "\n"
    exec(compile(index.source, "<rules index>", "exec"), namespace)  # noqa: S102 - our own code
    index.candidates = namespace["candidates"]  # type: ignore[method-assign]


def _reads(index: RuleIndex, namespace: dict[str, Any], used: set[str]) -> list[str]:
    """The generated function's start: each field read once, and the values of it that some
    rule's table holds (``f<n>``) where a lookup needs them."""
    reads = ["def candidates(c):", "    found = set(ALWAYS)"]
    for number, entry in enumerate(index.fields):
        namespace[f"V{number}"] = entry.values
        read = f"c.{NAMES[entry.path][0]}"
        if entry.kind == "regex":
            reads.append(f"    f{number} = V{number}(c)")
            continue
        reads.append(f"    x{number} = {read}")
        if entry.kind == "exact" and str(number) in used:  # else only looked up as it is
            reads.append(f"    f{number} = (x{number},) if x{number} in V{number} else ()")
        elif entry.kind == "member":
            reads.append(f"    f{number} = V{number}.intersection(x{number}) if x{number} else ()")
        elif entry.kind == "keyword":
            reads.append(
                f"    f{number} = V{number}.intersection(c.tokens(x{number})) if x{number} else ()"
            )
    return reads


def _combinations(table: str, positions: tuple[int, ...], *, indent: str) -> list[str]:
    """Code looking up every combination of the fields' values, or, when the message has more
    combinations than the table has keys, going through the table instead."""
    parts = ", ".join(f"f{position}" for position in positions)
    size = " * ".join(f"len(f{position})" for position in positions)
    return [
        f"{indent}if {' and '.join(f'f{position}' for position in positions)}:",
        f"{indent}    if {size} <= len({table}):",
        f"{indent}        found.update(chain(filter(None, map({table}.get, product({parts})))))",
        f"{indent}    else:",
        f"{indent}        found.update(_scan({table}, ({parts},)))",
    ]


def _scan(table: dict[Any, tuple[int, ...]], parts: tuple[Collection[Any], ...]) -> Iterable[int]:
    return chain.from_iterable(
        rules
        for key, rules in table.items()
        if all(value in part for value, part in zip(key, parts, strict=True))
    )


Residual = Callable[[Any], Any] | None


def build_index(
    rules: list[tuple[int, Compiled | None]],
) -> tuple[RuleIndex, dict[int, Residual]]:
    """File every (enabled) rule; return the index and, per rule, what is left to check once
    the index found it (None: nothing, it matches)."""
    index = RuleIndex()
    field_ids: dict[tuple[str, str], int] = {}
    vocabularies: dict[tuple[str, str], set[Any]] = {}
    patterns: dict[str, dict[str, int]] = {}
    groups: dict[tuple[int, ...], dict[Any, list[int]]] = {}
    thresholds: dict[tuple[str, bool], Thresholds] = {}
    always: list[int] = []
    residuals: dict[int, Residual] = {}
    for position, compiled in rules:
        if compiled is None:  # no condition: always matches, nothing to check
            always.append(position)
            residuals[position] = None
            continue
        keys = _keys(compiled.hints)
        used: list[IndexHint] = keys
        if keys:
            signature = []
            columns = []
            for hint in keys:
                where = (hint.kind, hint.path)
                field_ids.setdefault(where, len(field_ids))
                signature.append(field_ids[where])
                if hint.kind == "regex":
                    numbers = patterns.setdefault(hint.path, {})
                    (pattern,) = hint.values
                    columns.append([numbers.setdefault(pattern, len(numbers) + 1)])
                else:
                    vocabularies.setdefault(where, set()).update(hint.values)
                    columns.append(list(hint.values))
            table = groups.setdefault(tuple(signature), {})
            combinations = columns[0] if len(columns) == 1 else product(*columns)
            for key in combinations:
                table.setdefault(key, []).append(position)
        else:
            limits = [hint for hint in compiled.hints if hint.kind in ("above", "below")]
            if limits:
                hint = limits[0]
                used = [hint]
                above = hint.kind == "above"
                entry = thresholds.setdefault(
                    (hint.path, above), Thresholds(attrgetter(NAMES[hint.path][0]), above)
                )
                side = entry.inclusive if hint.inclusive else entry.strict
                side.append((hint.threshold, position))
            else:
                always.append(position)
        proven = {hint.conjunct for hint in used if hint.implied}
        residuals[position] = compiled.residual(proven)
    for kind, path in sorted(field_ids, key=field_ids.__getitem__):
        if kind == "regex":
            ordered = sorted(patterns[path].items(), key=lambda item: item[1])
            getter = attrgetter(NAMES[path][0])
            matcher = RegexSet(getter, [pattern for pattern, _ in ordered])
            index.fields.append(Field(kind, path, matcher))
        else:
            index.fields.append(Field(kind, path, frozenset(vocabularies[(kind, path)])))
    index.groups = [
        (signature, {key: tuple(found) for key, found in table.items()})
        for signature, table in groups.items()
    ]
    for entry in thresholds.values():
        entry.freeze()
    index.thresholds = list(thresholds.values())
    index.always = tuple(always)
    _generate(index)
    return index, residuals


def _keys(hints: list[IndexHint]) -> list[IndexHint]:
    """The keyed hints of a rule: one per field and kind, at most MAX_KEYS_PER_RULE combinations
    (the widest are dropped first)."""
    chosen: dict[tuple[str, str], IndexHint] = {}
    for hint in hints:
        if hint.kind in KEYED and hint.values:
            chosen.setdefault((hint.kind, hint.path), hint)
    keys = sorted(chosen.values(), key=lambda hint: len(hint.values))
    while keys and math.prod(len(hint.values) for hint in keys) > MAX_KEYS_PER_RULE:
        keys.pop()
    # the table's key order is the signature's: fields in a fixed order
    return sorted(keys, key=lambda hint: (hint.kind, hint.path))
