"""The hub's channel instances: built from hub.yaml, mounted on the app, lent a context.

Each ``channels:`` entry becomes one connector object named after the instance; its routes are
mounted under ``/channels/NAME`` (plus an absolute alias the first instance claims), and when it
starts (``hub.lifecycle``) its context keeps small values in its own rows of the store's
``connector_state`` table (:class:`ConnectorState`).
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from connectors.base import Connector
from hub.plugins import ConnectorRegistry
from hub.settings import HubSettings
from hub.store.store import Store


def build_connectors(settings: HubSettings, registry: ConnectorRegistry) -> dict[str, Connector]:
    """One connector per configured instance, by name (nothing starts yet)."""
    connectors: dict[str, Connector] = {}
    for channel in settings.channels:
        connector_class = registry.get(channel.type)
        connectors[channel.name] = connector_class(channel.name, channel.settings)
    return connectors


def mount(app: web.Application, connectors: Mapping[str, Connector]) -> None:
    """Every instance's routes under ``/channels/NAME``; an alias (``/ws/chat``) goes to the
    first instance that claims it."""
    claimed: set[str] = set()
    for name, connector in connectors.items():
        for route in connector.routes():
            app.router.add_route(route.method, f"/channels/{name}{route.path}", route.handler)
            if route.alias and route.alias not in claimed:
                claimed.add(route.alias)
                app.router.add_route(route.method, route.alias, route.handler)


def public_url(settings: HubSettings) -> str:
    """Where providers and customers reach the hub (``server.public_url``, else its bind)."""
    server = settings.server
    url = server.public_url or f"http://{server.host}:{server.port}"
    return url.rstrip("/")


class ConnectorState:
    """The store's connector_state rows of one instance, as a connector's StateStore."""

    def __init__(self, store: Store, instance: str) -> None:
        self.store = store
        self.instance = instance

    async def get(self, key: str) -> str | None:
        return await self.store.connector_state(self.instance, key)

    async def put(self, key: str, value: str) -> None:
        await self.store.save_connector_state(self.instance, key, value)

    async def delete(self, key: str) -> None:
        await self.store.delete_connector_state(self.instance, key)

    async def keys(self, prefix: str = "") -> list[str]:
        return await self.store.connector_state_keys(self.instance, prefix)
