"""Evaluating a :class:`RuleSet` against one message: the decision and, on request, why.

Semantics (docs/rules.md): rules run in file order; each route field (queue, priority, sla,
skills) is set by the first matching rule that sets it; instructions and tags accumulate in
rule order; ``stop: true`` ends evaluation; ``defaults`` fill what no rule set. A rule whose
expression fails at evaluation (a type mismatch, say) counts as not matching and is reported;
the others still apply.
"""

from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from rules.compiler import CompiledRule, RuleSet
from rules.decision import Decision

log = logging.getLogger(__name__)

ROUTE_FIELDS = ("queue", "priority", "sla", "skills", "agent")


@dataclass(slots=True)
class Outcome:
    decision: Decision
    errors: list[tuple[str, str]] = field(default_factory=list)  # (rule, error)
    trace: list[dict[str, Any]] | None = None


def evaluate(ruleset: RuleSet, context: Any, *, explain: bool = False) -> Outcome:
    """The decision for one message. With ``explain``, every rule is reported in the trace
    (matched, not matched, error, skipped and why); otherwise only candidate rules run."""
    if explain:
        return _explain(ruleset, context)
    errors: list[tuple[str, str]] = []
    return Outcome(decide(ruleset, context, errors), errors)


def decide(ruleset: RuleSet, context: Any, errors: list[tuple[str, str]] | None = None) -> Decision:
    """The hot path: the rules the index finds, their residuals, precomputed parts merged.

    Gives what :func:`linear_scan` gives (tests/test_rules_engine.py). Rules that fail are
    logged, and added to ``errors`` if one is given.
    """
    try:
        found = ruleset.index.candidates(context)
    except Exception:  # a field of an unexpected type: rule by rule reports it where it fails
        outcome = _decide(ruleset, context, ruleset.enabled)
        if errors is not None:
            errors += outcome.errors
        return outcome.decision
    if not found:
        assert ruleset.nothing is not None
        return ruleset.nothing
    order = sorted(found)
    if not ruleset.checked.isdisjoint(found):
        check = ruleset.checked.intersection(found)
        rules = ruleset.rules
        failed: list[int] = []
        cut = None
        for position in sorted(check):
            rule = rules[position]
            residual = rule.residual
            if residual is not None:
                try:
                    if not residual(context):
                        failed.append(position)
                        continue
                except Exception as exc:  # an admin's rule must never take the hub down
                    error = f"{type(exc).__name__}: {exc}"
                    if errors is not None:
                        errors.append((rule.name, error))
                    log.warning("rule %s failed: %s (treated as not matching)", rule.name, error)
                    failed.append(position)
                    continue
            if rule.stop:
                cut = position
                break
        if cut is not None:  # nothing after a matching stop rule counts
            after = bisect.bisect_right(order, cut)
            found.difference_update(order[after:])
            del order[after:]
        for position in failed:  # all before the cut: they were checked in order
            order.remove(position)
            found.discard(position)
    return _merge(ruleset, order, found)


# a decision is a function of the rules that matched (in order) alone: the same few rules
# match again and again in small rule sets, so their decision is kept (frozen, safe to share)
REMEMBERED_MATCHES = 16
REMEMBERED_DECISIONS = 4096


def _merge(ruleset: RuleSet, order: list[int], matched: set[int]) -> Decision:
    """The decision of the rules at ``order`` (file order; ``matched`` holds the same)."""
    if not order:
        assert ruleset.nothing is not None
        return ruleset.nothing
    if len(order) > REMEMBERED_MATCHES:
        return _build(ruleset, order, matched)
    key = tuple(order)
    decision = ruleset.decisions.get(key)
    if decision is None:
        decision = _build(ruleset, order, matched)
        if len(ruleset.decisions) >= REMEMBERED_DECISIONS:
            ruleset.decisions.clear()
        ruleset.decisions[key] = decision
    return decision


def _build(ruleset: RuleSet, order: list[int], matched: set[int]) -> Decision:
    first: list[Any] = [None] * 6  # queue, priority, sla, skills, agent, auto_reply
    for number, setting, values in ruleset.setters:
        if len(setting) < len(order):
            common = setting & matched
            if common:
                first[number] = values[min(common)]
        else:  # most rules set it: the first matched rule likely does
            position = next(filter(setting.__contains__, order), None)
            if position is not None:
                first[number] = values[position]
    queue, priority, sla, skills, agent, auto_reply = first
    tags: tuple[str, ...] = ()
    if not ruleset.tagged.isdisjoint(matched):
        tags = tuple(dict.fromkeys(chain.from_iterable(map(ruleset.tags.__getitem__, order))))
    if ruleset.irregular.isdisjoint(matched):
        instructions = tuple(map(ruleset.single.__getitem__, order))
    else:
        instructions = tuple(chain.from_iterable(map(ruleset.instructions.__getitem__, order)))
    defaults = ruleset.defaults
    return Decision(
        queue=queue or defaults.queue,
        priority=priority or defaults.priority,
        sla_seconds=defaults.sla if sla is None else sla,
        skills=defaults.skills if skills is None else skills,
        agent=agent,
        instructions=instructions,  # type: ignore[arg-type]
        tags=tags,
        auto_reply=auto_reply,
        rules=tuple(map(ruleset.names.__getitem__, order)),
        revision=ruleset.digest,
    )


def _explain(ruleset: RuleSet, context: Any) -> Outcome:
    """The decision plus a trace entry for every rule, in file order."""
    outcome = _decide(ruleset, context, ruleset.enabled)
    trace: list[dict[str, Any]] = []
    set_by: dict[str, str] = {}
    stopped_by: str | None = None
    for rule in ruleset.rules:
        spec = rule.spec
        if stopped_by is not None:
            trace.append(
                {"rule": spec.name, "result": "skipped", "reason": f"stopped by {stopped_by}"}
            )
            continue
        if not spec.enabled:
            trace.append({"rule": spec.name, "result": "skipped", "reason": "disabled"})
            continue
        matched, error = _check(rule, context)
        if error is not None:
            trace.append({"rule": spec.name, "result": "error", "error": error})
            continue
        if not matched:
            trace.append({"rule": spec.name, "result": "not matched", "when": spec.when})
            continue
        trace.append(_matched(spec, set_by))
        if spec.stop:
            stopped_by = spec.name
    outcome.trace = trace
    return outcome


def _matched(spec: Any, set_by: dict[str, str]) -> dict[str, Any]:
    """The trace entry of a matching rule; ``set_by`` holds who set each route field before."""
    entry: dict[str, Any] = {"rule": spec.name, "result": "matched", "set": {}, "ignored": {}}
    if spec.route is not None:
        for name in ROUTE_FIELDS:
            value = getattr(spec.route, name)
            if value is None:
                continue
            if name in set_by:
                entry["ignored"][name] = f"already set by {set_by[name]}"
                continue
            set_by[name] = spec.name
            entry["set"][name] = (
                list(value)
                if isinstance(value, tuple)
                else str(value)
                if name == "priority"
                else value
            )
    if spec.instructions:
        entry["instructions"] = list(spec.instructions)
    if spec.tags:
        entry["tags"] = list(spec.tags)
    if spec.auto_reply:
        entry["auto_reply"] = spec.auto_reply
    return entry


def matched_trace(ruleset: RuleSet, fired: tuple[str, ...]) -> list[dict[str, Any]]:
    """The entries ``evaluate(..., explain=True)`` gives the rules named ``fired`` (the rules
    of a decision), without evaluating anything: what each set, could not set, added."""
    by_name = {rule.name: rule for rule in ruleset.rules}
    set_by: dict[str, str] = {}
    return [_matched(by_name[name].spec, set_by) for name in fired]


def _decide(ruleset: RuleSet, context: Any, order: list[int]) -> Outcome:
    """Every rule at ``order`` checked with its full expression, in turn: the reference."""
    rules = ruleset.rules
    queue = priority = sla = skills = agent = None
    instructions: list[str] = []
    tags: list[str] = []
    fired: list[str] = []
    errors: list[tuple[str, str]] = []
    auto_reply: str | None = None
    for position in order:
        rule = rules[position]
        predicate = rule.predicate
        if predicate is not None:
            try:
                if not predicate(context):
                    continue
            except Exception as exc:  # an admin's rule must never take the hub down
                error = f"{type(exc).__name__}: {exc}"
                errors.append((rule.name, error))
                log.warning("rule %s failed: %s (treated as not matching)", rule.name, error)
                continue
        fired.append(rule.name)
        route = rule.route
        if route is not None:
            if queue is None:
                queue = route[0]
            if priority is None:
                priority = route[1]
            if sla is None:
                sla = route[2]
            if skills is None:
                skills = route[3]
            if agent is None:
                agent = route[4]
        if rule.instructions:
            instructions.extend(rule.instructions)
        for tag in rule.tags:
            if tag not in tags:
                tags.append(tag)
        if auto_reply is None:
            auto_reply = rule.auto_reply_text
        if rule.stop:
            break
    defaults = ruleset.defaults
    decision = Decision(
        queue=queue or defaults.queue,
        priority=priority or defaults.priority,
        sla_seconds=defaults.sla if sla is None else sla,
        skills=defaults.skills if skills is None else skills,
        agent=agent,
        instructions=tuple(instructions),
        tags=tuple(tags),
        auto_reply=auto_reply,
        rules=tuple(fired),
        revision=ruleset.digest,
    )
    return Outcome(decision, errors)


def _check(rule: CompiledRule, context: Any) -> tuple[bool, str | None]:
    if rule.predicate is None:
        return True, None
    try:
        return bool(rule.predicate(context)), None
    except Exception as exc:  # an admin's rule must never take the hub down
        return False, f"{type(exc).__name__}: {exc}"


def linear_scan(ruleset: RuleSet, context: Any) -> Decision:
    """Evaluate every rule without the index: the benchmark's baseline and a test oracle."""
    return _decide(ruleset, context, ruleset.enabled).decision
