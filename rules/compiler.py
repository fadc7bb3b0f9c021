"""Compiling a validated rules file into a :class:`RuleSet` with a candidate index.

Every rule's ``when`` becomes one compiled predicate. On top, the index (rules.index) files each
rule under the conditions of its top-level ``and`` it can answer for all rules at once; at
evaluation only the rules it finds are looked at, in file order, and each runs what is left of
its expression. What a matching rule contributes to the decision is prepared here too, so the
evaluation merges precomputed parts. The index only ever skips rules that cannot match.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rules.decision import Decision
from rules.errors import Problem, RulesError
from rules.expr import Compiled, ExpressionError, compile_expression
from rules.index import RuleIndex, build_index
from rules.model import RulesFile, RuleSpec


@dataclass(slots=True)
class CompiledRule:
    index: int
    spec: RuleSpec
    predicate: Callable[[Any], Any] | None
    source: str
    auto_reply_text: str | None
    # what is left to check once the index found the rule (None: nothing, it matches)
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


# the decision fields a rule can set, first matching rule wins: route fields, then auto_reply
FIRST_WINS = ("queue", "priority", "sla", "skills", "agent", "auto_reply")


@dataclass
class RuleSet:
    """A compiled, immutable rules revision."""

    defaults: Any
    rules: list[CompiledRule]
    templates: dict[str, str]
    digest: str
    calendars: set[str] = field(default_factory=set)
    enabled: list[int] = field(default_factory=list)
    index: RuleIndex = field(default_factory=RuleIndex)
    # per rule (by position): name, instructions, tags; and, for the evaluation's merge:
    names: list[str] = field(default_factory=list)
    instructions: list[tuple[str, ...]] = field(default_factory=list)
    tags: list[tuple[str, ...]] = field(default_factory=list)
    tagged: frozenset[int] = frozenset()
    # the instruction of rules with exactly one; the rules with none or several
    single: list[str | None] = field(default_factory=list)
    irregular: frozenset[int] = frozenset()
    # per FIRST_WINS field some rule sets: (field position, rules setting it, value per rule)
    setters: list[tuple[int, frozenset[int], list[Any]]] = field(default_factory=list)
    # rules that need a look once found: a residual to run, or ``stop``
    checked: frozenset[int] = frozenset()
    nothing: Decision | None = None  # the decision when no rule matches
    # decisions by the rules that matched, in order (rules.evaluate keeps them)
    decisions: dict[tuple[int, ...], Decision] = field(default_factory=dict)

    def candidates(self, context: Any) -> list[int]:
        """Positions of the rules the index finds for ``context``, in file order."""
        return sorted(self.index.candidates(context))


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
    _prepare(ruleset)
    return ruleset


def _prepare(ruleset: RuleSet) -> None:
    """Build the index and the per-rule parts the evaluation merges."""
    rules = ruleset.rules
    ruleset.enabled = [rule.index for rule in rules if rule.spec.enabled]
    ruleset.index, residuals = build_index([(i, rules[i].compiled) for i in ruleset.enabled])
    for position, residual in residuals.items():
        rules[position].residual = residual
    for rule in rules:
        rule.compiled = None  # the source pieces are not needed any more
    ruleset.names = [rule.name for rule in rules]
    ruleset.instructions = [rule.instructions for rule in rules]
    ruleset.tags = [rule.tags for rule in rules]
    ruleset.tagged = frozenset(rule.index for rule in rules if rule.tags)
    ruleset.single = [
        rule.instructions[0] if len(rule.instructions) == 1 else None for rule in rules
    ]
    ruleset.irregular = frozenset(rule.index for rule in rules if len(rule.instructions) != 1)
    ruleset.checked = frozenset(
        position
        for position in ruleset.enabled
        if rules[position].residual is not None or rules[position].stop
    )
    for number in range(len(FIRST_WINS)):
        values = [
            (rule.route[number] if rule.route is not None else None)
            if number < 5
            else rule.auto_reply_text
            for rule in rules
        ]
        setting = frozenset(i for i in ruleset.enabled if values[i] is not None)
        if setting:
            ruleset.setters.append((number, setting, values))
    defaults = ruleset.defaults
    ruleset.nothing = Decision(
        queue=defaults.queue,
        priority=defaults.priority,
        sla_seconds=defaults.sla,
        skills=defaults.skills,
        revision=ruleset.digest,
    )
