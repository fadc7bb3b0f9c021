"""Safe YAML loading that remembers where every value came from.

Admins edit YAML by hand, so every error must point at ``path:line:col``. We compose the node tree
with PyYAML's C safe loader (no Python object tags are ever constructed), build plain data from it
ourselves and record the position of every mapping key and sequence item. A node budget stops
alias bombs ("billion laughs") before they expand; a size cap stops huge files before parsing.
It reads ``rules.yaml`` here and ``hub.yaml`` in ``hub.settings``: it lives in ``rules`` so that
the engine needs nothing from the hub.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from rules.errors import ConfigError

try:  # the C loader is ~10x faster; fall back where libyaml is missing
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]

MAX_BYTES = 2 * 1024 * 1024
MAX_NODES = 200_000

Loc = tuple[str | int, ...]
_PLAIN_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass
class YamlDocument:
    """Plain data (dicts, lists, scalars) plus the 1-based line and column of each location."""

    path: str
    data: Any
    positions: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    key_positions: dict[Loc, tuple[int, int]] = field(default_factory=dict)

    def where(self, loc: Loc, *, key: bool = False) -> str:
        """``path:line:col`` of the value at ``loc`` (or of its key, with ``key=True``), else of
        the nearest parent that has a position."""
        if key and (position := self.key_positions.get(tuple(loc))) is not None:
            return f"{self.path}:{position[0]}:{position[1]}"
        for end in range(len(loc), -1, -1):
            position = self.positions.get(tuple(loc[:end]))
            if position is not None:
                return f"{self.path}:{position[0]}:{position[1]}"
        return f"{self.path}:1:1"


def load_yaml(
    text: str | bytes,
    path: str,
    *,
    environ: Mapping[str, str] | None = None,
    max_bytes: int = MAX_BYTES,
) -> YamlDocument:
    """Parse one YAML document safely; raise :class:`ConfigError` with ``path:line:col`` on error.

    When ``environ`` is given, ``${NAME}`` and ``${NAME:-default}`` inside string values are
    replaced from it (an unset name without a default is an error), so secrets stay out of files.
    """
    size = len(text.encode() if isinstance(text, str) else text)
    if size > max_bytes:
        raise ConfigError([f"{path}:1:1: file is {size} bytes, more than the limit of {max_bytes}"])
    loader = _SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise ConfigError([f"{path}:{line}:{col}: YAML syntax error: {exc.problem}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}:1:1: YAML error: {exc}"]) from None
    finally:
        loader.dispose()
    document = YamlDocument(path=path, data=None)
    if node is None:
        document.data = {}
        return document
    builder = _Builder(document, loader, environ)
    document.data = builder.build(node, ())
    if builder.problems:
        raise ConfigError(builder.problems)
    return document


class _Builder:
    def __init__(
        self, document: YamlDocument, loader: Any, environ: Mapping[str, str] | None
    ) -> None:
        self.document = document
        self.loader = loader
        self.environ = environ
        self.nodes = 0
        self.problems: list[str] = []

    def _here(self, node: yaml.Node) -> str:
        mark = node.start_mark
        return f"{self.document.path}:{mark.line + 1}:{mark.column + 1}"

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise ConfigError(
                [f"{self._here(node)}: more than {MAX_NODES} values (an alias bomb?); refused"]
            )
        mark = node.start_mark
        self.document.positions[loc] = (mark.line + 1, mark.column + 1)
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode) and node.tag not in _PLAIN_TAGS:
            raise ConfigError([f"{self._here(node)}: the tag {node.tag} is not allowed"])
        if isinstance(node, yaml.MappingNode):
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise ConfigError(
                        [f"{self._here(key_node)}: merge keys (<<) are not supported"]
                    )
                key = self._key(key_node)
                if not isinstance(key, str | int | float | bool) and key is not None:
                    raise ConfigError([f"{self._here(key_node)}: a mapping key must be a scalar"])
                if key in result:
                    self.problems.append(f"{self._here(key_node)}: duplicate key {key!r}")
                kmark = key_node.start_mark
                key_loc: Loc = (*loc, key if isinstance(key, str | int) else str(key))
                self.document.key_positions[key_loc] = (kmark.line + 1, kmark.column + 1)
                result[key] = self.build(value_node, key_loc)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*loc, index)) for index, item in enumerate(node.value)]
        return self._scalar(node)

    def _key(self, node: yaml.Node) -> Any:
        self.nodes += 1
        if not isinstance(node, yaml.ScalarNode):
            raise ConfigError([f"{self._here(node)}: a mapping key must be a scalar"])
        return self._scalar(node)

    def _scalar(self, node: yaml.Node) -> Any:
        try:
            value = self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            raise ConfigError([f"{self._here(node)}: {exc}"]) from None
        if isinstance(value, str) and self.environ is not None and "${" in value:
            value = self._interpolate(value, node)
        return value

    def _interpolate(self, value: str, node: yaml.Node) -> str:
        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            assert self.environ is not None
            if name in self.environ:
                return self.environ[name]
            if default is not None:
                return default
            self.problems.append(f"{self._here(node)}: environment variable {name} is not set")
            return ""

        return _ENV_REF.sub(replace, value)


def read_yaml(path: str, *, environ: Mapping[str, str] | None = None) -> YamlDocument:
    """Read and parse a YAML file (see :func:`load_yaml`); a missing file is a ConfigError."""
    try:
        size = os.path.getsize(path)
        if size > MAX_BYTES:
            raise ConfigError([f"{path}:1:1: file is {size} bytes, more than the limit"])
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise ConfigError([f"{path}:1:1: cannot read file: {exc.strerror}"]) from None
    return load_yaml(raw, path, environ=environ)
