"""Health, readiness and metrics over HTTP: ``/healthz``, ``/readyz``, ``/metrics``.

``/metrics`` is served on the hub's port, or alone on ``server.metrics_host:metrics_port``
(off the public port) when that is set; ``server.metrics_token`` guards it either way.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import SecretStr

from hub.errors import StoreError
from hub.keys import CONNECTORS, METRICS, NODE, ROLE, RULES_HOLDER, SETTINGS, STORE
from hub.metrics import Metrics
from hub.settings import HubSettings

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def add_routes(app: web.Application) -> None:
    """``/healthz`` and ``/readyz``, and ``/metrics`` unless it has a port of its own."""
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    server = app[SETTINGS].server
    if server.metrics_port is None:
        app.router.add_get("/metrics", metrics_handler(app[METRICS], server.metrics_token))


async def healthz(request: web.Request) -> web.StreamResponse:
    """The process answers (liveness)."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.StreamResponse:
    """Ready when the store answers a query and takes writes (a full disk answers reads but
    fails every write: the hub is then not ready, so a load balancer stops sending to it)."""
    store = request.app[STORE]
    try:
        await store.ping()
    except StoreError as exc:
        return web.json_response({"status": "unavailable", "reason": str(exc)}, status=503)
    problem = await store.write_problem()
    if problem is not None:
        return web.json_response(
            {"status": "unavailable", "reason": f"writes fail: {problem}"}, status=503
        )
    # a channel that cannot receive (a mailbox down) degrades the hub but does not take it out
    # of the load balancer: every other channel and the console still work
    problems = {
        name: problem
        for name, connector in request.app[CONNECTORS].items()
        if (problem := connector.health()) is not None
    }
    node = _node(request.app)
    if problems:
        return web.json_response({"status": "degraded", "channels": problems, **node})
    return web.json_response({"status": "ready", **node})


def _node(app: web.Application) -> dict[str, object]:
    """What this process is among several: its role, its rules revision, and how far behind
    its bus consumer groups are (entries not read yet, per ``topic/group``; Redis only)."""
    role = app.get(ROLE)
    holder = app.get(RULES_HOLDER)
    lag = {
        f"{sample.labels['topic']}/{sample.labels['group']}": sample.value
        for family in app[METRICS].bus_group_lag.collect()
        for sample in family.samples
    }
    return {
        "node": app.get(NODE, None),
        "role": role.name if role is not None else None,
        "rules": holder.current.digest if holder is not None else None,
        "bus_lag": lag,
    }


def metrics_handler(metrics: Metrics, token: SecretStr | None) -> Handler:
    """``GET /metrics``; with ``server.metrics_token``, only for ``Authorization: Bearer``."""
    expected = f"Bearer {token.get_secret_value()}".encode() if token is not None else None

    async def handler(request: web.Request) -> web.StreamResponse:
        if expected is not None and not hmac.compare_digest(
            request.headers.get("Authorization", "").encode(), expected
        ):
            return web.Response(
                status=401,
                text="metrics need Authorization: Bearer <server.metrics_token>\n",
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
        response = web.Response(body=generate_latest(metrics.registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    return handler


async def serve_metrics(settings: HubSettings, metrics: Metrics) -> web.AppRunner:
    """``/metrics`` alone on ``server.metrics_host:metrics_port``, off the public port; the
    caller cleans the returned runner up."""
    server = settings.server
    app = web.Application()
    app.router.add_get("/metrics", metrics_handler(metrics, server.metrics_token))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, server.metrics_host, server.metrics_port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    log.info("metrics at http://%s:%s/metrics", server.metrics_host, server.metrics_port)
    return runner
