"""The aiohttp application factory: one port for the API, webhooks, websockets and pages.

Shared resources (store, bus, HTTP client session, connectors, background tasks) are created in
one ``cleanup_ctx`` and torn down in reverse order, so a SIGTERM stops accepting, drains the
writer and the outbox, and closes the database cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import SecretStr

from connectors.base import Connector, ConnectorContext
from hub import api, gauges
from hub.auth import Authenticator
from hub.bus import create_bus
from hub.console.compose import ComposeAdvisor
from hub.console.link import SendBudget
from hub.console.protocol import frame
from hub.console.registry import AgentConnections
from hub.console.service import Console
from hub.customers.providers import HttpProvider
from hub.customers.repository import Customers
from hub.customers.valuation import Thresholds
from hub.dispatch.leadership import dispatch_leadership, restart_process
from hub.dispatch.service import DispatchService
from hub.errors import StoreError, StoreUnavailable
from hub.keys import (
    AUTH,
    BLOBS,
    BUS,
    CONNECTORS,
    CONSOLE,
    CUSTOMERS,
    DISPATCH,
    METRICS,
    OUTBOX,
    PIPELINE,
    RULES_WATCHER,
    SESSIONS,
    SETTINGS,
    STORE,
    UPLOAD_SECRET,
)
from hub.metrics import Metrics
from hub.node import node_id
from hub.outbox import OutboxWorker
from hub.pipeline import Decider, PassthroughDecider, Pipeline
from hub.plugins import ConnectorRegistry
from hub.privacy import job as retention_job
from hub.routing import ClosedQueueReplies, RulesDecider
from hub.sessions import Sessions
from hub.settings import HubSettings
from hub.store.blobs import BlobStore
from hub.store.store import Store
from hub.websec import origin_guard
from rules.compiler import RuleSet
from rules.loader import load_rules
from rules.reload import RulesHolder, RulesWatcher

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "console" / "static"
MAX_BODY = 1024 * 1024
RETRY_AFTER = 5  # seconds a client told "unavailable" should wait


def master_secret(settings: HubSettings) -> bytes:
    """The configured secret key, or one generated once and kept beside the data."""
    if settings.server.secret_key is not None:
        value = settings.server.secret_key.get_secret_value()
        if len(value) < 16:
            raise ValueError("server.secret_key must be at least 16 characters")
        return value.encode()
    path = Path(settings.storage.blobs).parent / "secret.key"
    if path.exists():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48).encode()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(key)
    log.info("generated a secret key in %s", path)
    return key


def derive_key(master: bytes, purpose: str) -> bytes:
    return hmac.new(master, purpose.encode(), hashlib.sha256).digest()


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
    app[METRICS] = Metrics()
    connectors: dict[str, Connector] = {}
    for channel in settings.channels:
        connector_class = registry.get(channel.type)
        connectors[channel.name] = connector_class(channel.name, channel.settings)
    app[CONNECTORS] = connectors
    _add_routes(app, connectors)
    app.cleanup_ctx.append(_lifecycle(clock))
    retention_job.setup(app)
    gauges.setup(app)
    app.on_shutdown.append(_shutdown)
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


def _add_routes(app: web.Application, connectors: dict[str, Connector]) -> None:
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    if app[SETTINGS].server.metrics_port is None:
        app.router.add_get("/metrics", _metrics(app[METRICS], app[SETTINGS].server.metrics_token))
    app.router.add_get("/", _root)
    app.router.add_get("/console", _root)
    app.router.add_get("/console/", _static_file("index.html", "text/html"))
    app.router.add_get("/console/console.js", _static_file("console.js", "application/javascript"))
    app.router.add_get("/console/console.css", _static_file("console.css", "text/css"))
    app.router.add_get("/ws/agent", _agent_socket)
    api.add_routes(app)
    claimed: set[str] = set()
    for name, connector in connectors.items():
        for route in connector.routes():
            app.router.add_route(route.method, f"/channels/{name}{route.path}", route.handler)
            if route.alias and route.alias not in claimed:
                claimed.add(route.alias)
                app.router.add_route(route.method, route.alias, route.handler)


def _lifecycle(
    clock: Callable[[], float],
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        metrics = app[METRICS]
        master = master_secret(settings)
        agents = {agent.id: agent for agent in settings.agents}
        app[AUTH] = Authenticator(
            agents, device_secret=derive_key(master, "login-devices"), clock=clock
        )
        store = Store(
            settings.storage.url,
            sqlite_synchronous=settings.storage.sqlite_synchronous,
            batch_max=settings.storage.batch_max,
            clock=clock,
        )
        await store.start()
        app[STORE] = store
        sessions = app[SESSIONS] = Sessions(store, agents, clock=clock)
        bus = create_bus(settings.bus, metrics)
        app[BUS] = bus
        decider, watcher = await _routing(settings, store, clock)
        replies = {
            queue.name: (settings.business_hours[queue.business_hours], queue.closed_reply)
            for queue in settings.queues
            if queue.business_hours and queue.closed_reply
        }
        if replies:
            decider = ClosedQueueReplies(
                decider, replies=replies, timezone=settings.timezone, clock=clock
            )
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        provider = context_provider(settings, session)
        pipeline = Pipeline(
            store,
            bus,
            decider,
            metrics,
            default_region=settings.customers.default_region,
            provider=provider,
            clock=clock,
        )
        customers = customer_service(settings, store)
        app[CUSTOMERS] = customers
        app[PIPELINE] = pipeline
        connections = AgentConnections()
        dispatch = DispatchService(settings, store, bus, connections, frame, metrics, clock)
        compose = ComposeAdvisor(app[CONNECTORS], clock)
        dispatch.compose = compose.view
        app[DISPATCH] = dispatch
        console = Console(
            store,
            bus,
            dispatch,
            connections,
            agents,
            metrics,
            settings.server.allowed_origins,
            compose,
            sessions=sessions,
            session_check_interval=settings.server.session_check_interval,
            compress=settings.server.websocket_compression,
            upload_secret=derive_key(master, "uploads"),
            clock=clock,
            budget=SendBudget(
                max_bytes=settings.server.agent_queue_bytes,
                send_timeout=settings.server.agent_send_timeout,
            ),
        )
        app[UPLOAD_SECRET] = console.upload_secret
        app[CONSOLE] = console
        blobs = app[BLOBS] = BlobStore(settings.storage.blobs)
        public_url = settings.server.public_url or (
            f"http://{settings.server.host}:{settings.server.port}"
        )
        started: list[Connector] = []
        revaluation: asyncio.Task[None] | None = None
        node = node_id()
        outbox = app[OUTBOX] = OutboxWorker(
            store,
            bus,
            app[CONNECTORS],
            metrics,
            clock,
            on_recorded=pipeline.apply_early_reports,
            holder=node,
            claim_hold=settings.cluster.outbox_claim,
        )
        # several processes: dispatch runs in the one holding the lease (docs/scaling.md)
        cluster = settings.cluster
        leadership = (
            dispatch_leadership(
                store,
                dispatch,
                node,
                ttl=cluster.lease_ttl,
                margin=cluster.lease_margin,
                poll=cluster.lease_poll,
                on_retired=restart_process,
            )
            if settings.distributed
            else None
        )
        metrics_site: web.AppRunner | None = None
        try:
            if settings.server.metrics_port is not None:
                metrics_site = await _serve_metrics(settings, metrics)
            if leadership is None:
                await dispatch.start()
            else:
                leadership.start()
            console.start()
            for name, connector in app[CONNECTORS].items():
                await connector.start(
                    ConnectorContext(
                        instance=name,
                        sink=pipeline,
                        history=pipeline,
                        blobs=blobs,
                        http=session,
                        secret=derive_key(master, f"connector:{name}"),
                        clock=clock,
                        logger=logging.getLogger(f"connectors.{name}"),
                        public_url=public_url.rstrip("/"),
                        state=ConnectorState(store, name),
                    )
                )
                started.append(connector)
            outbox.start()
            revaluation = asyncio.create_task(
                _revalue(customers, settings.customers.recompute_every), name="customer-values"
            )
            if watcher is not None:
                app[RULES_WATCHER] = watcher
                watcher.start()
            log.info("hub ready with channels %s", ", ".join(app[CONNECTORS].keys()) or "(none)")
            yield
        finally:
            if revaluation is not None:
                revaluation.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await revaluation
            if watcher is not None:
                await watcher.stop()
            # sends in progress finish before their connectors stop (normally done already,
            # by _shutdown)
            await outbox.stop(grace=settings.server.shutdown_timeout)
            for connector in reversed(started):
                try:
                    await connector.stop()
                except Exception:
                    log.exception("stopping connector %s failed", connector.name)
            await console.stop()
            if leadership is None:
                await dispatch.stop()
            else:
                await leadership.stop()  # stops dispatch if it ran here
            if provider is not None:
                await provider.close()
            await session.close()
            await bus.close()
            await store.close()
            if metrics_site is not None:
                await metrics_site.cleanup()

    return lifecycle


async def _routing(
    settings: HubSettings, store: Store, clock: Callable[[], float]
) -> tuple[Decider, RulesWatcher | None]:
    """The rules hook: the configured rules file (watched for changes) or pass-through."""
    path = settings.rules.path
    if path is None:
        return PassthroughDecider(settings.default_queue), None
    queues = {queue.name for queue in settings.queues}
    calendars = set(settings.business_hours)
    text = await asyncio.to_thread(Path(path).read_text, "utf-8")
    ruleset = await asyncio.to_thread(load_rules, text, path, queues=queues, calendars=calendars)
    await store.record_rules_revision(ruleset.digest, path, text)
    log.info("rules loaded from %s: %d rules, sha256 %s", path, len(ruleset.rules), ruleset.digest)
    holder = RulesHolder(ruleset)
    decider = RulesDecider(
        holder, timezone=settings.timezone, calendars=settings.business_hours, clock=clock
    )

    async def accepted(new: RuleSet, new_text: str) -> None:
        await store.record_rules_revision(new.digest, path, new_text)

    watcher = None
    if settings.rules.watch:
        watcher = RulesWatcher(
            path,
            holder,
            queues=queues,
            calendars=calendars,
            interval=settings.rules.poll_interval,
            on_accept=accepted,
        )
    return decider, watcher


def customer_service(settings: HubSettings, store: Store) -> Customers:
    options = settings.customers
    return Customers(
        store,
        default_region=options.default_region,
        thresholds=Thresholds(
            window_days=options.value_window / 86400,
            a_share=options.abc_a_share,
            b_share=options.abc_b_share,
        ),
    )


def context_provider(settings: HubSettings, session: aiohttp.ClientSession) -> HttpProvider | None:
    """The external CRM configured under customers.provider, if any."""
    options = settings.customers.provider
    if options is None:
        return None
    return HttpProvider(
        url=options.url,
        headers={name: value.get_secret_value() for name, value in options.headers.items()},
        fields=options.fields,
        session=session,
        timeout=options.timeout,
        wait=options.wait,
        ttl=options.ttl,
        failures_to_open=options.failures_to_open,
        open_for=options.open_for,
    )


async def _revalue(customers: Customers, every: float) -> None:
    """Recency changes with time alone: recompute customer values on a schedule."""
    while True:
        try:
            count = await customers.recompute()
            log.info("customer values recomputed for %d customers", count)
        except Exception:
            log.exception("recomputing customer values failed; trying again later")
        await asyncio.sleep(max(60.0, every))


async def _shutdown(app: web.Application) -> None:
    """On SIGTERM, in this order: let replies being sent finish and be recorded (up to
    ``server.shutdown_timeout``; the connectors still run), tell agents to reconnect elsewhere,
    then stop the connectors (chat sockets close there)."""
    if OUTBOX in app:
        await app[OUTBOX].stop(grace=app[SETTINGS].server.shutdown_timeout)
    if CONSOLE in app:
        await app[CONSOLE].connections.close_all(1001, b"server shutting down")
    for connector in app[CONNECTORS].values():
        try:
            await connector.stop()
        except Exception:
            log.exception("stopping connector %s failed", connector.name)


async def _healthz(request: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.StreamResponse:
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
    if problems:
        return web.json_response({"status": "degraded", "channels": problems})
    return web.json_response({"status": "ready"})


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


def _metrics(
    metrics: Metrics, token: SecretStr | None
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
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


async def _serve_metrics(settings: HubSettings, metrics: Metrics) -> web.AppRunner:
    """``/metrics`` alone on ``server.metrics_host:metrics_port``, off the public port."""
    server = settings.server
    app = web.Application()
    app.router.add_get("/metrics", _metrics(metrics, server.metrics_token))
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


async def _root(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/console/")


def _static_file(
    name: str, content_type: str
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    body = (STATIC / name).read_bytes()

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=body,
            content_type=content_type,
            headers={
                "Cache-Control": "no-cache",
                "Content-Security-Policy": "default-src 'self'; connect-src 'self' ws: wss:",
                "X-Content-Type-Options": "nosniff",
            },
        )

    return handler


async def _agent_socket(request: web.Request) -> web.StreamResponse:
    return await request.app[CONSOLE].handle(request)
