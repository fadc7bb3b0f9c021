"""The plugin contract's static part: what a connector class and its routes must look like."""

from __future__ import annotations

from importlib.metadata import entry_points

from connectors.base import ENTRY_POINT_GROUP, Capabilities, Connector, ConnectorSettings, Route


class ConformanceError(AssertionError):
    """A connector breaks the plugin contract; the message says what and what to do.

    An :class:`AssertionError`, so every test runner reports it as a failed check rather than a
    crash, but always raised explicitly: ``python -O`` strips ``assert`` statements, not this.
    """


def require(condition: bool, message: str) -> None:
    """Raise :class:`ConformanceError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ConformanceError(message)


def check_connector_class(cls: type[Connector], *, type_name: str | None = None) -> None:
    """Check that a connector class follows the plugin contract (see docs/connectors.md).

    With ``type_name``, also check that it is registered under that entry-point name.
    Raises :class:`ConformanceError`.
    """
    require(
        isinstance(cls, type) and issubclass(cls, Connector), f"{cls!r} must subclass Connector"
    )
    name = cls.__qualname__
    require(
        isinstance(getattr(cls, "channel", None), str) and bool(cls.channel),
        f"{name} needs a channel name (class attribute `channel`)",
    )
    require(
        isinstance(cls.settings_model, type) and issubclass(cls.settings_model, ConnectorSettings),
        f"{name}.settings_model must derive from ConnectorSettings (unknown keys are errors)",
    )
    require(
        isinstance(cls.capabilities, Capabilities),
        f"{name}.capabilities must be a Capabilities",
    )
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    require(not missing, f"{name} must implement {', '.join(missing)}")
    if type_name is not None:
        found = [e for e in entry_points(group=ENTRY_POINT_GROUP) if e.name == type_name]
        require(
            bool(found),
            f"no entry point {type_name!r} in group {ENTRY_POINT_GROUP!r}: declare it in "
            "pyproject.toml and install the package",
        )
        loaded = found[0].load()
        require(
            loaded is cls,
            f"entry point {type_name!r} loads {loaded!r}, not {name}",
        )


METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH"})


def check_routes(connector: Connector) -> list[Route]:
    """Check that a connector instance's routes are well formed; return them.

    Raises :class:`ConformanceError`.
    """
    routes = list(connector.routes())
    seen: set[tuple[str, str]] = set()
    for route in routes:
        require(isinstance(route, Route), f"routes() must return Route objects, not {route!r}")
        require(route.path.startswith("/"), f"route path {route.path!r} must start with /")
        require(
            route.method in METHODS,
            f"route method {route.method!r} is not one of {sorted(METHODS)}",
        )
        require(
            route.alias is None or route.alias.startswith("/"),
            f"route alias {route.alias!r} must start with /",
        )
        require(callable(route.handler), f"route {route.method} {route.path} needs a handler")
        require(
            (route.method, route.path) not in seen,
            f"route {route.method} {route.path} is declared twice",
        )
        seen.add((route.method, route.path))
    return routes
