"""A connector's view of the same channel instance on other nodes (``connectors.base.Peers``)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from connectors.base import LonePeers
from hub.cluster.relay import Relay
from hub.errors import HubError

__all__ = ["LonePeers", "NodePeers"]

log = logging.getLogger(__name__)


class NodePeers:
    """Web chat frames for a visitor whose window may be on another node, on the bus."""

    def __init__(self, relay: Relay, instance: str) -> None:
        self.relay = relay
        self.instance = instance

    async def push(self, key: str, text: str) -> None:
        try:
            await self.relay.push_visitor(self.instance, key, text)
        except HubError as exc:  # the visitor sees it in the history on their next visit
            log.warning("a %s frame was not relayed to the other nodes: %s", self.instance, exc)

    def on_push(self, handler: Callable[[str, str], Awaitable[int]]) -> None:
        self.relay.on_visitor(self.instance, handler)
