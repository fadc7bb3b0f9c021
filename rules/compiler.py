"""Compiling a validated rules file into a :class:`RuleSet` with candidate indexes.

Every rule's ``when`` becomes one compiled predicate. On top, each rule is filed under one
*necessary* condition taken from its top-level ``and`` (an exact value of a field, a keyword of
``contains_any``, a numeric threshold); at evaluation only rules whose condition can hold are
tried, in file order, and each is still checked with its full predicate. Rules without such a
condition are always tried. The index only ever skips rules that cannot match.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from rules.expr import NAMES, Compiled, ExpressionError, IndexHint, compile_expression
from rules.model import RulesFile, RuleSpec

# a message holds a few dozen words: a keyword hint is that much likelier to hit than one value
WORDS_PER_MESSAGE = 30
# nothing is known of how numbers are distributed: assume a threshold lets half through
THRESHOLD_SELECTIVITY = 0.5


@dataclass(frozen=True, slots=True)
class Problem:
    """A compile problem: ``loc`` in the YAML document, plus a line/col inside an expression."""

    loc: tuple[str | int, ...]
    message: str
    line: int = 0
    col: int = 0


class RulesError(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(problem.message for problem in problems))
        self.problems = problems


@dataclass(slots=True)
class CompiledRule:
    index: int
    spec: RuleSpec
    predicate: Callable[[Any], Any] | None
    source: str
    hints: list[IndexHint]
    auto_reply_text: str | None
    hint: IndexHint | None = None  # the one the index files this rule under
    # what is left to check once the index found the rule through ``hint``
    residual: Callable[[Any], Any] | None = None
    compiled: Compiled | None = None
    # what a match contributes, precomputed for the evaluation loop
    name: str = ""
    route: tuple[Any, Any, Any, Any, Any] | None = None  # queue, priority, sla, skills, agent
    instructions: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    stop: bool = False

    def __post_init__(self) -> None:
        spec = self.spec
        self.name = spec.name
        if spec.route is not None:
            route = spec.route
            self.route = (route.queue, route.priority, route.sla, route.skills, route.agent)
        self.instructions = spec.instructions
        self.tags = spec.tags
        self.stop = spec.stop


@dataclass(slots=True)
class _Thresholds:
    """Rules needing ``field > t`` (or >=), sorted by t; or ``field < t`` sorted descending."""

    getter: Callable[[Any], Any]
    above: bool
    keys: list[float] = field(default_factory=list)
    inclusive: list[bool] = field(default_factory=list)
    rules: list[int] = field(default_factory=list)

    def candidates(self, value: Any) -> Iterable[int]:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return ()
        if self.above:  # keys ascending: every t < value qualifies, t == value if inclusive
            end = bisect.bisect_right(self.keys, value)
            return [
                r
                for r, k, inc in zip(
                    self.rules[:end], self.keys[:end], self.inclusive[:end], strict=True
                )
                if k < value or inc
            ]
        # keys stored negated ascending (t descending): every t > value qualifies
        end = bisect.bisect_right(self.keys, -value)
        return [
            r
            for r, k, inc in zip(
                self.rules[:end], self.keys[:end], self.inclusive[:end], strict=True
            )
            if -k > value or inc
        ]


@dataclass
class RuleSet:
    """A compiled, immutable rules revision."""

    defaults: Any
    rules: list[CompiledRule]
    templates: dict[str, str]
    digest: str
    always: list[int] = field(default_factory=list)
    exact: dict[str, tuple[Callable[[Any], Any], dict[Any, list[int]]]] = field(
        default_factory=dict
    )
    keywords: dict[str, tuple[Callable[[Any], Any], dict[str, list[int]]]] = field(
        default_factory=dict
    )
    thresholds: list[_Thresholds] = field(default_factory=list)
    calendars: set[str] = field(default_factory=set)
    enabled: list[int] = field(default_factory=list)

    def candidates(self, context: Any) -> list[int]:
        """Indexes of the rules that may match ``context``, in file order."""
        found: set[int] = set(self.always)
        for getter, table in self.exact.values():
            try:
                hits = table.get(getter(context))
            except TypeError:  # an unhashable value never equals a literal
                hits = None
            if hits:
                found.update(hits)
        for getter, table in self.keywords.values():
            text = getter(context)
            if text:
                # set intersection runs in C over the smaller side
                for word in table.keys() & context.words(text):
                    found.update(table[word])
        for thresholds in self.thresholds:
            found.update(thresholds.candidates(thresholds.getter(context)))
        return sorted(found)


def compile_rules(
    spec: RulesFile,
    *,
    text: str = "",
    queues: set[str] | None = None,
    calendars: set[str] | None = None,
) -> RuleSet:
    """Compile a validated rules file; raise :class:`RulesError` listing every problem.

    ``queues`` and ``calendars``, when given (from hub.yaml), are checked too.
    """
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    compiled_rules: list[CompiledRule] = []
    used_calendars: set[str] = set()
    if queues is not None and spec.defaults.queue not in queues:
        problems.append(Problem(("defaults", "queue"), f"unknown queue {spec.defaults.queue!r}"))
    for index, rule in enumerate(spec.rules):
        loc: tuple[str | int, ...] = ("rules", index)
        if rule.name in seen:
            problems.append(
                Problem(
                    (*loc, "name"),
                    f"duplicate rule name {rule.name!r} (first used by rule {seen[rule.name] + 1})",
                )
            )
        seen.setdefault(rule.name, index)
        if (
            rule.route
            and rule.route.queue
            and queues is not None
            and rule.route.queue not in queues
        ):
            problems.append(
                Problem((*loc, "route", "queue"), f"unknown queue {rule.route.queue!r}")
            )
        reply_text = None
        if rule.auto_reply is not None:
            reply_text = spec.templates.get(rule.auto_reply)
            if reply_text is None:
                problems.append(
                    Problem((*loc, "auto_reply"), f"unknown template {rule.auto_reply!r}")
                )
        compiled: Compiled | None = None
        if rule.when is not None:
            try:
                compiled = compile_expression(rule.when, calendars=calendars)
            except ExpressionError as exc:
                problems.append(Problem((*loc, "when"), exc.message, exc.line, exc.col))
        if compiled is not None:
            used_calendars |= compiled.calendars
        compiled_rules.append(
            CompiledRule(
                index=index,
                spec=rule,
                predicate=compiled.predicate if compiled else None,
                source=compiled.source if compiled else "True",
                hints=compiled.hints if compiled else [],
                compiled=compiled,
                auto_reply_text=reply_text,
            )
        )
    if problems:
        raise RulesError(problems)
    ruleset = RuleSet(
        defaults=spec.defaults,
        rules=compiled_rules,
        templates=dict(spec.templates),
        digest=hashlib.sha256(text.encode()).hexdigest(),
        calendars=used_calendars,
    )
    _build_index(ruleset)
    return ruleset


def _getter(path: str) -> Callable[[Any], Any]:
    return attrgetter(NAMES[path][0])


def _choose_hints(rules: list[CompiledRule]) -> None:
    """File each rule under its most selective necessary condition.

    Selectivity is estimated from the rule set itself: a value of a field that rules compare
    with 1,000 different values is rarer than one of a field with five (channel), and a keyword
    out of 20,000 is rarer still, even though a message carries many words.
    """
    distinct: dict[tuple[str, str], set[Any]] = {}
    for rule in rules:
        for hint in rule.hints:
            if hint.kind in ("exact", "keyword"):
                distinct.setdefault((hint.kind, hint.path), set()).update(hint.values)

    def estimate(hint: IndexHint) -> float:
        if hint.kind == "exact":
            return len(hint.values) / max(1, len(distinct[("exact", hint.path)]))
        if hint.kind == "keyword":
            share = (
                len(hint.values) * WORDS_PER_MESSAGE / max(1, len(distinct[("keyword", hint.path)]))
            )
            return min(1.0, share)
        return THRESHOLD_SELECTIVITY

    for rule in rules:
        rule.hint = min(rule.hints, key=estimate) if rule.hints else None
        if rule.hint is not None and rule.compiled is not None:
            rule.residual = rule.compiled.residual(rule.hint)
        else:
            rule.residual = rule.predicate
        rule.compiled = None  # the source pieces are not needed any more


def _build_index(ruleset: RuleSet) -> None:
    _choose_hints(ruleset.rules)
    thresholds: dict[tuple[str, bool], _Thresholds] = {}
    ruleset.enabled = [rule.index for rule in ruleset.rules if rule.spec.enabled]
    for rule in ruleset.rules:
        if not rule.spec.enabled:
            continue
        hint = rule.hint
        if hint is None:
            ruleset.always.append(rule.index)
        elif hint.kind == "exact":
            _, table = ruleset.exact.setdefault(hint.path, (_getter(hint.path), {}))
            for value in hint.values:
                table.setdefault(value, []).append(rule.index)
        elif hint.kind == "keyword":
            _, table = ruleset.keywords.setdefault(hint.path, (_getter(hint.path), {}))
            for word in hint.values:
                table.setdefault(word, []).append(rule.index)
        else:
            above = hint.kind == "above"
            entry = thresholds.setdefault(
                (hint.path, above), _Thresholds(_getter(hint.path), above)
            )
            key = hint.threshold if above else -hint.threshold
            position = bisect.bisect_right(entry.keys, key)
            entry.keys.insert(position, key)
            entry.inclusive.insert(position, hint.inclusive)
            entry.rules.insert(position, rule.index)
    ruleset.thresholds = list(thresholds.values())
