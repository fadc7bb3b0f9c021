"""The rules package's errors (``hub.errors`` re-exports :class:`ConfigError`).

They live here, not in the hub, so the engine (and its YAML loader, which the hub shares for
``hub.yaml``) stands alone: ``rules`` imports nothing from ``hub``.
"""

from __future__ import annotations

from dataclasses import dataclass


class ConfigError(Exception):
    """A file an admin edits (``rules.yaml``, ``hub.yaml``) is invalid; ``problems`` are
    ``path:line:col: reason`` lines, one per problem found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))

    def __reduce__(self) -> tuple[type[ConfigError], tuple[list[str]]]:
        # keeps the list intact across process boundaries (rules are parsed in a worker)
        return (ConfigError, (self.problems,))


@dataclass(frozen=True, slots=True)
class Problem:
    """A compile problem: ``loc`` in the YAML document, plus a line/col inside an expression."""

    loc: tuple[str | int, ...]
    message: str
    line: int = 0
    col: int = 0


class RulesError(Exception):
    """Compiling a validated rules file failed; the loader turns ``problems`` into a
    :class:`ConfigError` located in the file."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(problem.message for problem in problems))
        self.problems = problems
