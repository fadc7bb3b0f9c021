"""The aiohttp application factory: one port for the API, webhooks, websockets and pages.

Building the app starts nothing: it holds the settings, the clock, the metrics and the channel
instances, and mounts every route. The resources (store, bus, dispatch, connectors, …) start
and stop as the cleanup contexts of ``hub.lifecycle``, so a SIGTERM stops accepting, drains the
outbox and the writer, and closes the database cleanly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Handler

from hub import api, channels, gauges, health, lifecycle
from hub.console import pages
from hub.errors import StoreUnavailable
from hub.keys import AGENTS, CLOCK, CONNECTORS, CONSOLE, METRICS, SETTINGS
from hub.metrics import Metrics
from hub.plugins import ConnectorRegistry
from hub.privacy import job as retention_job
from hub.settings import HubSettings
from hub.websec import origin_guard

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
RETRY_AFTER = 5  # seconds a client told "unavailable" should wait


def create_app(
    settings: HubSettings,
    *,
    registry: ConnectorRegistry | None = None,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    """Build the hub application for ``settings`` (nothing starts until the app runs)."""
    registry = registry or ConnectorRegistry.discover()
    app = web.Application(
        client_max_size=MAX_BODY,
        middlewares=[store_unavailable, origin_guard(settings.server.allowed_origins)],
    )
    app[SETTINGS] = settings
    app[AGENTS] = {agent.id: agent for agent in settings.agents}
    app[CLOCK] = clock
    app[METRICS] = Metrics()
    app[CONNECTORS] = connectors = channels.build_connectors(settings, registry)
    health.add_routes(app)
    pages.add_routes(app)
    app.router.add_get("/ws/agent", _agent_socket)
    api.add_routes(app)
    channels.mount(app, connectors)
    app.cleanup_ctx.extend(lifecycle.RESOURCES)
    retention_job.setup(app)  # background jobs on top: they start last and stop first
    gauges.setup(app)
    app.on_startup.append(lifecycle.announce)  # runs after every cleanup context started
    app.on_shutdown.append(lifecycle.drain)
    return app


@web.middleware
async def store_unavailable(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Any request the store cannot serve right now answers 503 ``unavailable`` with
    Retry-After, whichever endpoint it reached (login, the API, a webhook)."""
    try:
        return await handler(request)
    except StoreUnavailable as exc:
        log.error("%s %s: %s", request.method, request.path, exc)
        return web.json_response(
            {"error": "unavailable", "message": "the store is unavailable; try again shortly"},
            status=503,
            headers={"Retry-After": str(RETRY_AFTER)},
        )


async def _agent_socket(request: web.Request) -> web.StreamResponse:
    return await request.app[CONSOLE].handle(request)
