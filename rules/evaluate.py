"""Evaluating a :class:`RuleSet` against one message: the decision and, on request, why.

Semantics (docs/rules.md): rules run in file order; each route field (queue, priority, sla,
skills) is set by the first matching rule that sets it; instructions and tags accumulate in
rule order; ``stop: true`` ends evaluation; ``defaults`` fill what no rule set. A rule whose
expression fails at evaluation (a type mismatch, say) counts as not matching and is reported;
the others still apply.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from rules.compiler import CompiledRule, RuleSet
from rules.decision import Decision, Priority

log = logging.getLogger(__name__)

ROUTE_FIELDS = ("queue", "priority", "sla", "skills")


@dataclass
class Outcome:
    decision: Decision
    errors: list[tuple[str, str]] = field(default_factory=list)  # (rule, error)
    trace: list[dict[str, Any]] | None = None


def evaluate(ruleset: RuleSet, context: Any, *, explain: bool = False) -> Outcome:
    """The decision for one message. With ``explain``, every rule is reported in the trace
    (matched, not matched, error, skipped and why); otherwise only candidate rules run."""
    route: dict[str, Any] = {}
    set_by: dict[str, str] = {}
    instructions: list[str] = []
    tags: list[str] = []
    fired: list[str] = []
    errors: list[tuple[str, str]] = []
    auto_reply: str | None = None
    trace: list[dict[str, Any]] | None = [] if explain else None
    order = range(len(ruleset.rules)) if explain else ruleset.candidates(context)
    stopped_by: str | None = None
    for position in order:
        rule = ruleset.rules[position]
        spec = rule.spec
        if stopped_by is not None:
            if trace is not None:
                trace.append(
                    {"rule": spec.name, "result": "skipped", "reason": f"stopped by {stopped_by}"}
                )
            continue
        if not spec.enabled:
            if trace is not None:
                trace.append({"rule": spec.name, "result": "skipped", "reason": "disabled"})
            continue
        matched, error = _check(rule, context)
        if error is not None:
            errors.append((spec.name, error))
            log.warning("rule %s failed: %s (treated as not matching)", spec.name, error)
            if trace is not None:
                trace.append({"rule": spec.name, "result": "error", "error": error})
            continue
        if not matched:
            if trace is not None:
                trace.append({"rule": spec.name, "result": "not matched", "when": spec.when})
            continue
        fired.append(spec.name)
        entry: dict[str, Any] = (
            {"rule": spec.name, "result": "matched", "set": {}, "ignored": {}}
            if trace is not None
            else {}
        )
        if spec.route is not None:
            for name in ROUTE_FIELDS:
                value = getattr(spec.route, name)
                if value is None:
                    continue
                if name in route:
                    if trace is not None:
                        entry["ignored"][name] = f"already set by {set_by[name]}"
                    continue
                route[name] = value
                set_by[name] = spec.name
                if trace is not None:
                    entry["set"][name] = (
                        list(value)
                        if name == "skills"
                        else str(value)
                        if name == "priority"
                        else value
                    )
        instructions.extend(spec.instructions)
        tags.extend(tag for tag in spec.tags if tag not in tags)
        if rule.auto_reply_text is not None and auto_reply is None:
            auto_reply = rule.auto_reply_text
        if trace is not None:
            if spec.instructions:
                entry["instructions"] = list(spec.instructions)
            if spec.tags:
                entry["tags"] = list(spec.tags)
            if spec.auto_reply:
                entry["auto_reply"] = spec.auto_reply
            trace.append(entry)
        if spec.stop:
            stopped_by = spec.name
    defaults = ruleset.defaults
    decision = Decision(
        queue=route.get("queue", defaults.queue),
        priority=Priority(route.get("priority", defaults.priority)),
        sla_seconds=route.get("sla", defaults.sla),
        skills=tuple(route.get("skills", defaults.skills)),
        instructions=tuple(instructions),
        tags=tuple(tags),
        auto_reply=auto_reply,
        rules=tuple(fired),
        revision=ruleset.digest,
    )
    return Outcome(decision, errors, trace)


def _check(rule: CompiledRule, context: Any) -> tuple[bool, str | None]:
    if rule.predicate is None:
        return True, None
    try:
        return bool(rule.predicate(context)), None
    except Exception as exc:  # an admin's rule must never take the hub down
        return False, f"{type(exc).__name__}: {exc}"


def linear_scan(ruleset: RuleSet, context: Any) -> Decision:
    """Evaluate every rule without the index (the benchmark's baseline and a test oracle)."""
    route: dict[str, Any] = {}
    instructions: list[str] = []
    tags: list[str] = []
    fired: list[str] = []
    auto_reply = None
    for rule in ruleset.rules:
        spec = rule.spec
        if not spec.enabled:
            continue
        matched, _ = _check(rule, context)
        if not matched:
            continue
        fired.append(spec.name)
        if spec.route is not None:
            for name in ROUTE_FIELDS:
                value = getattr(spec.route, name)
                if value is not None and name not in route:
                    route[name] = value
        instructions.extend(spec.instructions)
        tags.extend(tag for tag in spec.tags if tag not in tags)
        if rule.auto_reply_text is not None and auto_reply is None:
            auto_reply = rule.auto_reply_text
        if spec.stop:
            break
    defaults = ruleset.defaults
    return Decision(
        queue=route.get("queue", defaults.queue),
        priority=Priority(route.get("priority", defaults.priority)),
        sla_seconds=route.get("sla", defaults.sla),
        skills=tuple(route.get("skills", defaults.skills)),
        instructions=tuple(instructions),
        tags=tuple(tags),
        auto_reply=auto_reply,
        rules=tuple(fired),
        revision=ruleset.digest,
    )
