"""The layering of the code, read from its imports (docs/architecture.md, "Layers").

Every import counts: at the top, inside functions and under ``TYPE_CHECKING``, since an import
hidden in a function is still a dependency (and often hides a circle). ``from package import
name`` depends on the module ``package.name`` when there is one, else on the package itself.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("hub", "rules", "connectors")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" not in path.parts:  # Alembic loads them by file, nobody imports them
                found[_module_name(path)] = path
    return found


MODULES = _modules()


def _imported(module: str, path: Path) -> Iterator[tuple[int, str]]:
    """(line, module of this project) for each import in ``path``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            submodules = [f"{base}.{alias.name}" for alias in node.names]
            names = [name for name in submodules if name in MODULES]
            if len(names) < len(submodules):
                names.append(base)  # a name defined in the package (or module) itself
        else:
            continue
        for name in names:
            while name and name not in MODULES:  # ``import a.b.c`` of a module a.b.c
                name = name.rpartition(".")[0]
            if name and name != module:
                yield node.lineno, name


def _graph() -> dict[str, dict[str, int]]:
    """module: {imported module: line of the first such import}."""
    graph: dict[str, dict[str, int]] = defaultdict(dict)
    for module, path in MODULES.items():
        for line, name in _imported(module, path):
            graph[module].setdefault(name, line)
    return graph


GRAPH = _graph()


def _offences(
    importer: str, forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()
) -> list[str]:
    def within(name: str, prefixes: tuple[str, ...]) -> bool:
        return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)

    return [
        f"{MODULES[module].relative_to(ROOT)}:{line}: imports {name}"
        for module, imports in sorted(GRAPH.items())
        if within(module, (importer,))
        for name, line in sorted(imports.items())
        if within(name, forbidden) and not within(name, allowed)
    ]


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_graph_sees_the_imports() -> None:
    """The checks below are only as good as the graph: it must see the imports we know of,
    including one inside a function (``hub.cli.serve`` imports ``hub.app`` when it runs)."""
    assert "hub.store.database" in GRAPH["hub.store.store"]
    assert "hub.app" in GRAPH["hub.cli.serve"]
    assert "connectors.base" in GRAPH["connectors.webchat.connector"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_rules_import_nothing_from_the_hub_or_connectors() -> None:
    """The rules engine stands alone: the hub and tools use it, it uses neither."""
    assert _offences("rules", ("hub", "connectors")) == []


def test_connectors_import_only_the_envelope_from_the_hub() -> None:
    """Connectors are plugins: of the hub they know the envelope they hand over (the rest of
    their API is ``connectors.base``); details in tests/test_connector_api.py."""
    assert _offences("connectors", ("hub", "rules"), allowed=("hub.envelope",)) == []


def test_the_store_knows_nothing_above_it() -> None:
    """``hub.store`` is the bottom of the hub: customers, ingest, dispatch, the console, privacy,
    reports and the rules build on it and hand it typed values (a customer-context reader, the
    priorities' urgency), never the other way round. Of the connectors it knows the plugin
    API's ``HistoryItem``, which it hands them; of the bus its typed events (pure data), which
    the event outbox keeps in the transaction of what they announce."""
    above = (
        "hub.app",
        "hub.bus",
        "hub.cli",
        "hub.console",
        "hub.customers",
        "hub.dispatch",
        "hub.ingest",
        "hub.lifecycle",
        "hub.outbox",
        "hub.pipeline",
        "hub.privacy",
        "hub.reports",
        "hub.routing",
        "connectors",
        "rules",
    )
    allowed = ("connectors.base", "hub.bus.events", "hub.bus.node_events")
    assert _offences("hub.store", above, allowed=allowed) == []


def test_no_module_imports_itself_round_a_circle() -> None:
    assert _cycles({module: set(imports) for module, imports in GRAPH.items()}) == []


def test_no_circle_among_the_hubs_packages() -> None:
    """Between hub's subpackages (and its top-level modules) dependencies go one way: a
    package that needs another's piece and is needed by it means the piece is in the wrong
    place (the lease decisions moved to ``hub.lease`` because the store applies them too)."""

    def unit(module: str) -> str:
        parts = module.split(".")
        if parts[0] == "hub" and len(parts) > 2:
            return ".".join(parts[:2])  # hub.store.conversations -> hub.store
        if parts[0] == "hub":
            return module
        return parts[0]  # rules, connectors: one unit each

    edges: dict[str, set[str]] = defaultdict(set)
    for module, imports in GRAPH.items():
        for name in imports:
            if unit(module) != unit(name):
                edges[unit(module)].add(unit(name))
    assert _cycles(edges) == []
