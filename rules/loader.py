"""Loading ``rules.yaml``: safe YAML, schema validation, compilation, ``path:line:col`` errors."""

from __future__ import annotations

import msgspec
from pydantic import ValidationError

from rules.compiler import RuleSet, compile_rules
from rules.errors import ConfigError, Problem, RulesError
from rules.model import Defaults, RulesFile, RuleSpec
from rules.yamlfile import YamlDocument, load_yaml

MAX_BYTES = 4 * 1024 * 1024


def parse_rules(text: str | bytes, path: str) -> tuple[YamlDocument, RulesFile]:
    """Safe YAML and schema validation; ConfigError lists every problem with its position.

    Returns only plain, picklable data, so the hot reloader can run it in another process.
    """
    raw = text.decode("utf-8", errors="replace") if isinstance(text, bytes) else text
    document = load_yaml(raw, path, max_bytes=MAX_BYTES)
    try:
        spec = RulesFile.model_validate(document.data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False, include_input=False):
            loc = tuple(error["loc"])
            at_key = error["type"] in {"extra_forbidden", "missing"}
            dotted = ".".join(str(part) for part in loc) or "(top level)"
            problems.append(f"{document.where(loc, key=at_key)}: {dotted}: {error['msg']}")
        raise ConfigError(problems) from None
    return document, spec


def compile_parsed(
    document: YamlDocument,
    spec: RulesFile,
    text: str,
    *,
    queues: set[str] | None = None,
    calendars: set[str] | None = None,
) -> RuleSet:
    """Compile what :func:`parse_rules` returned; problems are located in the file."""
    try:
        return compile_rules(spec, text=text, queues=queues, calendars=calendars)
    except RulesError as exc:
        problems = [_locate(document, text, problem) for problem in exc.problems]
        raise ConfigError(problems) from None


def check_rules(
    text: str, path: str, *, queues: set[str] | None = None, calendars: set[str] | None = None
) -> list[bytes]:
    """Fully check a rules file and return its validated content as JSON pieces.

    Meant for a worker process. The pieces (defaults, templates, then one per rule) unpickle
    in no time and are decoded one by one by :func:`rebuild_rules`, so the receiving process
    never holds the GIL for long and its event loop keeps running.
    """
    document, spec = parse_rules(text, path)
    compile_parsed(document, spec, text, queues=queues, calendars=calendars)
    return [
        spec.defaults.model_dump_json().encode(),
        msgspec.json.encode(spec.templates),
        *(rule.model_dump_json().encode() for rule in spec.rules),
    ]


def rebuild_rules(
    checked: list[bytes],
    text: str,
    *,
    queues: set[str] | None = None,
    calendars: set[str] | None = None,
) -> RuleSet:
    """Compile rules from :func:`check_rules` output, one rule at a time (short GIL holds).

    It allocates hundreds of thousands of long-lived objects: the hot reloader runs it with
    the garbage collector paused and freezes the result (:mod:`rules.reload`).
    """
    defaults, templates, *rules = checked
    spec = RulesFile.model_construct(
        version=1,
        defaults=Defaults.model_validate_json(defaults),
        templates=msgspec.json.decode(templates, type=dict[str, str]),
        rules=tuple(RuleSpec.model_validate_json(rule) for rule in rules),
    )
    try:
        return compile_rules(spec, text=text, queues=queues, calendars=calendars)
    except RulesError as exc:  # checked already: only if the worker disagreed
        raise ConfigError([f"rules: {problem.message}" for problem in exc.problems]) from None


def load_rules(
    text: str | bytes,
    path: str,
    *,
    queues: set[str] | None = None,
    calendars: set[str] | None = None,
) -> RuleSet:
    """Parse, validate and compile a rules file; ConfigError lists every problem found."""
    raw = text.decode("utf-8", errors="replace") if isinstance(text, bytes) else text
    document, spec = parse_rules(raw, path)
    return compile_parsed(document, spec, raw, queues=queues, calendars=calendars)


def _locate(document: YamlDocument, raw: str, problem: Problem) -> str:
    where = document.where(problem.loc)
    if problem.line:
        # point into the expression: its position in the file plus the offset inside it
        _, line_text, col_text = where.rsplit(":", 2)
        line, col = int(line_text), int(col_text)
        source_line = raw.splitlines()[line - 1] if line - 1 < len(raw.splitlines()) else ""
        quoted = source_line[col - 1 : col] in {"'", '"'}
        if problem.line == 1:
            col += problem.col - 1 + (1 if quoted else 0)
        else:
            line += problem.line - 1
            col = problem.col
        where = f"{document.path}:{line}:{col}"
    return f"{where}: {_dotted(problem.loc)}: {problem.message}"


def _dotted(loc: tuple[str | int, ...]) -> str:
    return ".".join(str(part) for part in loc)


def read_rules(
    path: str, *, queues: set[str] | None = None, calendars: set[str] | None = None
) -> RuleSet:
    """Read and compile a rules file from disk."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError([f"{path}:1:1: cannot read file: {exc.strerror}"]) from None
    if len(raw) > MAX_BYTES:
        raise ConfigError([f"{path}:1:1: file is larger than {MAX_BYTES} bytes"])
    return load_rules(raw, path, queues=queues, calendars=calendars)
