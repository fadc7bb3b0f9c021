"""What the rules index may use of an expression (:class:`IndexHint`): the conjuncts of the
top-level ``and`` that it can answer for all rules at once, and whether evaluating a checked
expression can raise (only conjuncts that cannot may be skipped)."""

from __future__ import annotations

import ast
import dataclasses
from dataclasses import dataclass
from typing import Any

from rules.matching import keyword_set
from rules.vocabulary import NAMES, Kind


@dataclass(frozen=True, slots=True)
class IndexHint:
    """A conjunct of the top-level ``and`` that the index can answer for all rules at once.

    ``exact``: the field's value is one of ``values``; ``member``: the field's list holds one of
    ``values``; ``keyword``: the field's text contains one of ``values`` as a word (for a phrase,
    its first word: then the hit is not proof, ``implied`` is False); ``regex``: the field's text
    matches the one pattern in ``values``; ``above``/``below``: the field's number is above/below
    ``threshold`` (``inclusive`` for >= / <=).
    """

    kind: str
    path: str
    values: frozenset[Any] = frozenset()
    threshold: Any = 0  # the literal as written: an int stays exact beyond 2**53
    inclusive: bool = False
    conjunct: int = 0  # position of the conjunct in the top-level ``and``
    implied: bool = True  # an index hit proves the conjunct


def index_hints(conjuncts: list[ast.expr]) -> list[IndexHint]:
    """Hints of the top-level conjuncts the index may answer, up to the first that might
    raise: a later conjunct may only be skipped if nothing before it can raise."""
    hints = []
    for position, part in enumerate(conjuncts):
        if not _safe(part):
            break
        hint = _hint(part)
        if hint is not None:
            hints.append(dataclasses.replace(hint, conjunct=position))
    return hints


def _dotted(node: ast.AST) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        dotted = ".".join(reversed(parts))
        return dotted if dotted in NAMES else None
    return None


def _literal(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, str | int | float | bool):
        return node.value
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub)
        and isinstance(node.operand, ast.Constant)
        and isinstance(node.operand.value, int | float)
        and not isinstance(node.operand.value, bool)
    ):
        return -node.operand.value
    raise ValueError


def _hint(node: ast.AST) -> IndexHint | None:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        path = _dotted(node.args[0]) if node.args else None
        if path is None or NAMES[path][1] is not Kind.STR:
            return None
        if node.func.id == "contains_any":
            elements = node.args[1].elts  # type: ignore[attr-defined]
            singles, phrases = keyword_set([element.value for element in elements])
            firsts = {phrase.split(" ")[0] for phrase in phrases}
            return IndexHint("keyword", path, frozenset(singles | firsts), implied=not phrases)
        if node.func.id == "matches":
            pattern = node.args[1].value  # type: ignore[attr-defined]
            return IndexHint("regex", path, frozenset({pattern}))
        return None
    if not isinstance(node, ast.Compare) or len(node.ops) != 1:
        return None
    left, op, right = node.left, node.ops[0], node.comparators[0]
    if isinstance(op, ast.In) and _dotted(left) is None:
        # "vip" in customer.tags
        path = _dotted(right)
        if path is None or NAMES[path][1] is not Kind.LIST:
            return None
        try:
            return IndexHint("member", path, frozenset({_literal(left)}))
        except ValueError:
            return None
    if _dotted(left) is None and _dotted(right) is not None and not isinstance(op, ast.NotIn):
        left, right = right, left
        op = {ast.Lt: ast.Gt(), ast.LtE: ast.GtE(), ast.Gt: ast.Lt(), ast.GtE: ast.LtE()}.get(
            type(op), op
        )
    path = _dotted(left)
    if path is None:
        return None
    kind = NAMES[path][1]
    if kind not in (Kind.STR, Kind.NUM, Kind.BOOL):
        return None
    try:
        if isinstance(op, ast.Eq):
            return IndexHint("exact", path, frozenset({_literal(right)}))
        if isinstance(op, ast.In) and isinstance(right, ast.List | ast.Tuple):
            return IndexHint("exact", path, frozenset(_literal(e) for e in right.elts))
        if kind is Kind.NUM and isinstance(op, ast.Gt | ast.GtE | ast.Lt | ast.LtE):
            value = _literal(right)
            if isinstance(value, bool) or not isinstance(value, int | float):
                return None
            direction = "above" if isinstance(op, ast.Gt | ast.GtE) else "below"
            return IndexHint(
                direction, path, threshold=value, inclusive=isinstance(op, ast.GtE | ast.LtE)
            )
    except (ValueError, TypeError):
        return None
    return None


def _kind(node: ast.AST) -> Kind:
    """The kind of value an (already checked) expression node yields; ANY if not known."""
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool):
            return Kind.BOOL
        if isinstance(node.value, int | float):
            return Kind.NUM
        return Kind.STR if isinstance(node.value, str) else Kind.ANY
    if isinstance(node, ast.UnaryOp):
        return Kind.BOOL if isinstance(node.op, ast.Not) else Kind.NUM
    if isinstance(node, ast.List | ast.Tuple):
        return Kind.LIST
    if isinstance(node, ast.Compare):
        return Kind.BOOL
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return {"lower": Kind.STR, "len": Kind.NUM}.get(node.func.id, Kind.BOOL)
    path = _dotted(node)
    return NAMES[path][1] if path is not None else Kind.ANY


def _orderable(left: Kind, right: Kind) -> bool:
    numbers = (Kind.NUM, Kind.BOOL)
    return (left in numbers and right in numbers) or left is right is Kind.STR


def _safe(node: ast.AST) -> bool:
    """True if evaluating the (already checked) node cannot raise, given that every documented
    name holds a value of its documented kind (the evaluation context guarantees that).

    Conservative: custom attributes (any kind) are only safe to read and compare with ==.
    """
    if isinstance(node, ast.Constant | ast.Name | ast.Attribute):
        return True
    if isinstance(node, ast.List | ast.Tuple):
        return all(_safe(item) for item in node.elts)
    if isinstance(node, ast.UnaryOp):
        return _safe(node.operand)
    if isinstance(node, ast.BoolOp):
        return all(_safe(value) for value in node.values)
    if isinstance(node, ast.Compare):
        operands = [node.left, *node.comparators]
        if not all(_safe(operand) for operand in operands):
            return False
        for left, op, right in zip(operands, node.ops, operands[1:], strict=False):
            if isinstance(op, ast.Eq | ast.NotEq):
                continue
            left_kind, right_kind = _kind(left), _kind(right)
            if isinstance(op, ast.In | ast.NotIn):
                if right_kind is Kind.LIST or (right_kind is left_kind is Kind.STR):
                    continue
                return False
            if not _orderable(left_kind, right_kind):
                return False
        return True
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        name = node.func.id
        if name == "business_hours":
            return True
        argument = node.args[0]
        wanted = (Kind.STR, Kind.LIST) if name == "len" else (Kind.STR,)
        return _kind(argument) in wanted and _safe(argument)
    return False
