"""The rule expression language: Python-like syntax, an allow-list, compiled once.

``when`` expressions are parsed with :mod:`ast`, every node is checked against a small
allow-list (comparisons, ``and``/``or``/``not``, literals, the documented names and functions),
and the checked tree is turned into Python source over a flat context object and compiled once.
Nothing outside the allow-list can be expressed, so there is no way to reach Python objects:
no other names, no attribute chains, no subscripts, no lambdas or comprehensions.
Regular expressions are compiled with RE2 (linear time) when the rule is compiled.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import re2  # type: ignore[import-untyped]

MAX_NODES = 500


class Kind(enum.Enum):
    STR = "str"
    NUM = "num"
    BOOL = "bool"
    LIST = "list"
    ANY = "any"


# dotted name -> (attribute path in the evaluation context, kind of value)
NAMES: dict[str, tuple[str, Kind]] = {
    "channel": ("channel", Kind.STR),
    "inbox": ("inbox", Kind.STR),
    "message.subject": ("message_subject", Kind.STR),
    "message.text": ("message_text", Kind.STR),
    "message.from": ("message_from", Kind.STR),
    "message.to": ("message_to", Kind.LIST),
    "message.language": ("message_language", Kind.STR),
    "message.has_attachments": ("message_has_attachments", Kind.BOOL),
    "message.attachments": ("message_attachments", Kind.LIST),
    "message.received_at": ("message_received_at", Kind.NUM),
    "message.is_reply": ("message_is_reply", Kind.BOOL),
    "message.auto_submitted": ("message_auto_submitted", Kind.BOOL),
    "customer.known": ("customer.known", Kind.BOOL),
    "customer.id": ("customer.id", Kind.STR),
    "customer.name": ("customer.name", Kind.STR),
    "customer.tier": ("customer.tier", Kind.STR),
    "customer.lifetime_value": ("customer.lifetime_value", Kind.NUM),
    "customer.orders_12m": ("customer.orders_12m", Kind.NUM),
    "customer.last_order_at": ("customer.last_order_at", Kind.NUM),
    "customer.days_since_last_order": ("customer.days_since_last_order", Kind.NUM),
    "customer.last_purchase": ("customer.last_purchase", Kind.STR),
    "customer.payment_punctuality": ("customer.payment_punctuality", Kind.NUM),
    "customer.overdue_invoices": ("customer.overdue_invoices", Kind.NUM),
    "customer.open_conversations": ("customer.open_conversations", Kind.NUM),
    "customer.tags": ("customer.tags", Kind.LIST),
    "customer.stale": ("customer.stale", Kind.BOOL),
    "now.hour": ("now_hour", Kind.NUM),
    "now.minute": ("now_minute", Kind.NUM),
    "now.weekday": ("now_weekday", Kind.NUM),
    "now.day": ("now_day", Kind.NUM),
    "now.month": ("now_month", Kind.NUM),
    "now.year": ("now_year", Kind.NUM),
}
ATTRIBUTES_PREFIX = "customer.attributes."
ROOTS = {name.split(".")[0] for name in NAMES}

# function name -> (number of arguments, argument positions that must be literals)
FUNCTIONS: dict[str, tuple[int, tuple[int, ...]]] = {
    "matches": (2, (1,)),
    "contains_any": (2, (1,)),
    "business_hours": (1, (0,)),
    "lower": (1, ()),
    "len": (1, ()),
}

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
    import re

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
    hints = []
    for position, part in enumerate(parts):
        if not _safe(part):
            break  # a later conjunct may only be skipped if nothing before it can raise
        hint = _hint(part)
        if hint is not None:
            hints.append(dataclasses.replace(hint, conjunct=position))
    return Compiled(source, predicate, hints, compiler.calendars, conjuncts, compiler.globals)


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
