"""The rule expression language: Python-like syntax, an allow-list, compiled once.

What expressions may name is :mod:`rules.vocabulary`; how text is matched,
:mod:`rules.matching`; what the index may use of an expression, :mod:`rules.hints`.

``when`` expressions are parsed with :mod:`ast`, every node is checked against a small
allow-list (comparisons, ``and``/``or``/``not``, literals, the documented names and functions),
and the checked tree is turned into Python source over a flat context object and compiled once.
Nothing outside the allow-list can be expressed, so there is no way to reach Python objects:
no other names, no attribute chains, no subscripts, no lambdas or comprehensions.
Regular expressions are compiled with RE2 (linear time) when the rule is compiled.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import re2  # type: ignore[import-untyped]

from rules.hints import IndexHint, index_hints
from rules.matching import Regex, compile_regex, keyword_set
from rules.vocabulary import ATTRIBUTES_PREFIX, FUNCTIONS, NAMES, ROOTS

MAX_NODES = 500


_COMPARE = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.In: "in",
    ast.NotIn: "not in",
}


class ExpressionError(Exception):
    """A problem in an expression, at 1-based ``line``/``col`` within the expression text."""

    def __init__(self, message: str, line: int = 1, col: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.col = col


@dataclass
class Compiled:
    """A checked ``when`` expression: the predicate, its conjuncts and what the index may use.

    ``hints`` only come from conjuncts that cannot raise and that no conjunct that might raise
    precedes, so skipping a rule because a hinted conjunct is false reports the same errors as
    evaluating it from left to right would (none).
    """

    source: str
    predicate: Callable[[Any], Any]
    hints: list[IndexHint] = field(default_factory=list)
    calendars: set[str] = field(default_factory=set)
    conjuncts: list[str] = field(default_factory=list)
    namespace: dict[str, Any] = field(default_factory=dict)

    def residual(self, proven: set[int]) -> Callable[[Any], Any] | None:
        """The predicate without the conjuncts at positions ``proven`` (the index showed they
        hold and they cannot raise), in the original order; None when nothing is left."""
        if not proven:
            return self.predicate
        rest = [source for index, source in enumerate(self.conjuncts) if index not in proven]
        if not rest:
            return None
        code = compile(f"lambda c: ({' and '.join(rest)})", "<rule>", "eval")
        residual: Callable[[Any], Any] = eval(code, self.namespace)  # noqa: S307 - checked nodes
        return residual


class _Compiler:
    def __init__(self, text: str, calendars: set[str] | None) -> None:
        self.text = text
        self.known_calendars = calendars
        self.globals: dict[str, Any] = {"__builtins__": {}}
        self.calendars: set[str] = set()
        self.nodes = 0

    def fail(self, node: ast.AST, message: str) -> ExpressionError:
        line = getattr(node, "lineno", 1)
        col = getattr(node, "col_offset", 0) + 1
        return ExpressionError(message, line, col)

    def constant(self, name: str, value: Any) -> str:
        key = f"_k{len(self.globals)}"
        self.globals[key] = value
        return key

    def path(self, node: ast.AST) -> str | None:
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return None
        parts.append(node.id)
        return ".".join(reversed(parts))

    def emit(self, node: ast.AST) -> str:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise self.fail(node, f"expression too complex (more than {MAX_NODES} parts)")
        if isinstance(node, ast.BoolOp):
            joiner = " and " if isinstance(node.op, ast.And) else " or "
            return "(" + joiner.join(self.emit(value) for value in node.values) + ")"
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.Not):
                return f"(not {self.emit(node.operand)})"
            if isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
                return f"(-{self.emit(node.operand)})"
            raise self.fail(node, "only 'not' and negative numbers are allowed here")
        if isinstance(node, ast.Compare):
            parts = [self.emit(node.left)]
            for op, right in zip(node.ops, node.comparators, strict=True):
                symbol = _COMPARE.get(type(op))
                if symbol is None:
                    raise self.fail(node, "unsupported comparison")
                parts += [symbol, self.emit(right)]
            return "(" + " ".join(parts) + ")"
        if isinstance(node, ast.Constant):
            if node.value is None or isinstance(node.value, str | int | float | bool):
                if isinstance(node.value, str) and len(node.value) > 5000:
                    raise self.fail(node, "string literal too long")
                return repr(node.value)
            raise self.fail(node, f"literal of type {type(node.value).__name__} is not allowed")
        if isinstance(node, ast.List | ast.Tuple):
            items = [self.emit(item) for item in node.elts]
            return "(" + "".join(f"{item}, " for item in items) + ")"
        if isinstance(node, ast.Name | ast.Attribute):
            return self.name(node)
        if isinstance(node, ast.Call):
            return self.call(node)
        raise self.fail(node, f"{type(node).__name__} is not allowed in a rule expression")

    def name(self, node: ast.AST) -> str:
        dotted = self.path(node)
        if dotted is None:
            raise self.fail(node, "attributes can only be read from the documented names")
        if dotted in NAMES:
            return f"c.{NAMES[dotted][0]}"
        if dotted.startswith(ATTRIBUTES_PREFIX) and dotted.count(".") == 2:
            key = dotted.removeprefix(ATTRIBUTES_PREFIX)
            if key.startswith("_"):
                raise self.fail(node, "custom attribute names cannot start with '_'")
            return f"c.customer.attributes.get({key!r})"
        if dotted.split(".")[0] in ROOTS:
            raise self.fail(node, f"unknown name {dotted!r}")
        raise self.fail(
            node,
            f"unknown name {dotted!r} (names start with channel, inbox, message, customer or now)",
        )

    def call(self, node: ast.Call) -> str:
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            shown = ast.unparse(node.func)
            raise self.fail(
                node, f"unknown function {shown!r} (allowed: {', '.join(sorted(FUNCTIONS))})"
            )
        name = node.func.id
        arity, literal_positions = FUNCTIONS[name]
        if node.keywords or len(node.args) != arity:
            raise self.fail(node, f"{name}() takes {arity} argument(s)")
        for position in literal_positions:
            argument = node.args[position]
            if name == "contains_any":
                if not isinstance(argument, ast.List | ast.Tuple) or not all(
                    isinstance(e, ast.Constant) and isinstance(e.value, str) for e in argument.elts
                ):
                    raise self.fail(argument, "contains_any() needs a literal list of words")
            elif not (isinstance(argument, ast.Constant) and isinstance(argument.value, str)):
                raise self.fail(argument, f"{name}() needs a literal string here")
        if name == "matches":
            pattern = node.args[1].value  # type: ignore[attr-defined]
            try:
                regex = compile_regex(pattern)
            except re2.error as exc:
                detail = exc.args[0].decode() if isinstance(exc.args[0], bytes) else exc.args[0]
                raise self.fail(node.args[1], f"bad regular expression: {detail}") from None
            key = self.constant("regex", regex)
            return f"_matches({key}, c.utf8({self.emit(node.args[0])}))"
        if name == "contains_any":
            words = [e.value for e in node.args[1].elts]  # type: ignore[attr-defined]
            singles, phrases = keyword_set(words)
            if not singles and not phrases:
                raise self.fail(node.args[1], "contains_any() needs at least one word")
            key = self.constant("words", (singles, phrases))
            return f"c.contains_any({self.emit(node.args[0])}, {key})"
        if name == "business_hours":
            calendar = node.args[0].value  # type: ignore[attr-defined]
            if self.known_calendars is not None and calendar not in self.known_calendars:
                raise self.fail(node.args[0], f"unknown business hours {calendar!r}")
            self.calendars.add(calendar)
            return f"c.business_hours({calendar!r})"
        return f"_{name}({self.emit(node.args[0])})"


def _matches(regex: Regex, data: bytes | None) -> bool:
    return data is not None and regex.search(data)


def _lower(text: Any) -> Any:
    return "" if text is None else text.lower()


def _len(value: Any) -> int:
    return 0 if value is None else len(value)


def compile_expression(text: str, *, calendars: set[str] | None = None) -> Compiled:
    """Check and compile one ``when`` expression; raise :class:`ExpressionError` on problems."""
    if len(text) > 10_000:
        raise ExpressionError("expression too long")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(
            f"syntax error: {exc.msg}", exc.lineno or 1, exc.offset or 1
        ) from None
    compiler = _Compiler(text, calendars)
    compiler.globals.update({"_matches": _matches, "_lower": _lower, "_len": _len})
    body = tree.body
    parts = body.values if isinstance(body, ast.BoolOp) and isinstance(body.op, ast.And) else [body]
    conjuncts = [compiler.emit(part) for part in parts]
    source = conjuncts[0] if len(conjuncts) == 1 else "(" + " and ".join(conjuncts) + ")"
    code = compile(f"lambda c: {source}", "<rule>", "eval")
    predicate = eval(code, compiler.globals)  # noqa: S307 - source built from checked nodes only
    return Compiled(
        source, predicate, index_hints(parts), compiler.calendars, conjuncts, compiler.globals
    )
