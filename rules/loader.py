"""Loading ``rules.yaml``: safe YAML, schema validation, compilation, ``path:line:col`` errors."""

from __future__ import annotations

from pydantic import ValidationError

from hub.errors import ConfigError
from hub.yamlfile import YamlDocument, load_yaml
from rules.compiler import RulesError, RuleSet, compile_rules
from rules.model import RulesFile

MAX_BYTES = 4 * 1024 * 1024


def load_rules(
    text: str | bytes,
    path: str,
    *,
    queues: set[str] | None = None,
    calendars: set[str] | None = None,
) -> RuleSet:
    """Parse, validate and compile a rules file; ConfigError lists every problem found."""
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
    try:
        return compile_rules(spec, text=raw, queues=queues, calendars=calendars)
    except RulesError as exc:
        raise ConfigError([_locate(document, raw, problem) for problem in exc.problems]) from None


def _locate(document: YamlDocument, raw: str, problem: object) -> str:
    from rules.compiler import Problem

    assert isinstance(problem, Problem)
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
