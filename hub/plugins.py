"""Connector discovery through the ``channelhub.connectors`` entry-point group.

Built-in connectors are registered in pyproject.toml exactly like a third party's package would
register its own, so there is one way in.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

from pydantic import BaseModel

from connectors.base import ENTRY_POINT_GROUP, Connector
from hub.errors import ConfigError

log = logging.getLogger(__name__)


class ConnectorRegistry:
    """Connector classes by type name; loaded lazily so one broken plugin spoils only itself."""

    def __init__(self, classes: dict[str, type[Connector]] | None = None) -> None:
        self._classes: dict[str, type[Connector]] = dict(classes or {})
        self._discovered = classes is not None

    @classmethod
    def discover(cls) -> ConnectorRegistry:
        return cls()

    def _load_all(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            if entry.name in self._classes:
                continue
            try:
                loaded = entry.load()
            except Exception as exc:
                log.error(
                    "connector plugin %r (%s) failed to load: %s", entry.name, entry.value, exc
                )
                continue
            if not (isinstance(loaded, type) and issubclass(loaded, Connector)):
                log.error("connector plugin %r is not a Connector subclass", entry.name)
                continue
            self._classes[entry.name] = loaded

    def names(self) -> list[str]:
        self._load_all()
        return sorted(self._classes)

    def get(self, name: str) -> type[Connector]:
        self._load_all()
        try:
            return self._classes[name]
        except KeyError:
            raise ConfigError([f"no connector of type {name!r} is installed"]) from None

    def settings_model(self, name: str) -> type[BaseModel] | None:
        """For :func:`hub.settings.validate_settings`."""
        self._load_all()
        found = self._classes.get(name)
        return None if found is None else found.settings_model
