"""What the hub starts and stops: one aiohttp cleanup context per resource, in start order.

aiohttp enters the contexts of :data:`RESOURCES` in order; cleaning the runner up (as
``web.run_app`` does, also after a failed start) leaves the entered ones in reverse. The order
is chosen for shutdown: customer revaluation and the rules watcher stop first, then the outbox
lets sends in progress finish, then connectors stop (no new messages), then the console and
dispatch, then what they all used (CRM client, HTTP session, bus, store), and the separate
metrics port goes last, so it can be scraped until the end.

Background jobs that other modules add after these (``hub.privacy.job``, ``hub.gauges``) start
last and stop first.

Before any of that, on SIGTERM, :func:`drain` (an ``on_shutdown`` handler) lets replies being
sent finish, tells agents to reconnect elsewhere and stops the connectors.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path

import aiohttp
from aiohttp import web

from connectors.base import Connector, ConnectorContext
from connectors.shared.workers import die_with_parent
from hub.auth import Authenticator
from hub.bus import create_bus
from hub.calendar import calendar_open
from hub.calls import CallingAudience, Calls
from hub.channels import ConnectorState, public_url
from hub.cluster.desk import OwnerDesk, OwnerRoute
from hub.cluster.peers import LonePeers, NodePeers
from hub.cluster.relay import Relay
from hub.cluster.role import Role
from hub.cluster.rules import RulesFollower
from hub.cluster.term import Term
from hub.console.compose import ComposeAdvisor
from hub.console.link import SendBudget
from hub.console.registry import AgentConnections
from hub.console.service import Console
from hub.console.views import ConsoleFrames
from hub.customers.configured import context_provider, customer_service
from hub.customers.context import customer_contexts
from hub.customers.repository import Customers
from hub.dispatch.leadership import Leadership, dispatch_leadership, restart_process
from hub.dispatch.service import DispatchService
from hub.health import serve_metrics
from hub.keys import (
    AGENTS,
    AUTH,
    BLOBS,
    BUS,
    CALLS,
    CLOCK,
    COMPOSE,
    CONNECTIONS,
    CONNECTORS,
    CONSOLE,
    CUSTOMERS,
    DECIDER,
    DISPATCH,
    HTTP,
    KEYS,
    METRICS,
    NODE,
    OUTBOX,
    PIPELINE,
    RELAY,
    ROLE,
    RULES_HOLDER,
    RULES_WATCHER,
    SESSIONS,
    SETTINGS,
    STORE,
    TERM,
    UPLOAD_SECRET,
)
from hub.node import node_id
from hub.outbox import OutboxWorker
from hub.pipeline import Decider, PassthroughDecider, Pipeline
from hub.relay import DeferringBus, EventRelay
from hub.routing import ClosedQueueReplies, RulesDecider
from hub.secrets import Keys
from hub.sessions import Sessions
from hub.settings import HubSettings
from hub.store.blobs import BlobStore
from hub.store.store import Store
from rules.compiler import RuleSet
from rules.loader import load_rules
from rules.reload import RulesHolder, RulesWatcher

log = logging.getLogger(__name__)

Resource = AsyncIterator[None]
MIN_REVALUE_EVERY = 60.0  # seconds; a shorter customers.recompute_every is raised to this


async def metrics_port(app: web.Application) -> Resource:
    """``/metrics`` on a port of its own (``server.metrics_port``), if configured."""
    settings = app[SETTINGS]
    runner = None
    if settings.server.metrics_port is not None:
        runner = await serve_metrics(settings, app[METRICS])
    yield
    if runner is not None:
        await runner.cleanup()


async def secret_keys(app: web.Application) -> Resource:
    """The secret key (read, or generated once) and what signs agents' login devices."""
    agents = app[AGENTS]
    app[KEYS] = loaded = Keys.load(app[SETTINGS])
    app[AUTH] = Authenticator(agents, device_secret=loaded.login_devices, clock=app[CLOCK])
    yield


async def store(app: web.Application) -> Resource:
    """The database (migrated on start), agent sessions in it, and the blob store."""
    settings, agents, clock = app[SETTINGS], app[AGENTS], app[CLOCK]
    opened = Store(
        settings.storage.url,
        sqlite_synchronous=settings.storage.sqlite_synchronous,
        sqlite_calls=settings.storage.sqlite_calls,
        batch_max=settings.storage.batch_max,
        clock=clock,
        customer_contexts=customer_contexts,
    )
    await opened.start()
    app[STORE] = opened
    app[SESSIONS] = Sessions(opened, agents, clock=clock)
    app[BLOBS] = BlobStore(settings.storage.blobs)
    yield
    await opened.close()


async def bus(app: web.Application) -> Resource:
    app[BUS] = created = create_bus(app[SETTINGS].bus, app[METRICS])
    yield
    await created.close()


async def routing(app: web.Application) -> Resource:
    """The rules (loaded now, recorded as a revision) or pass-through, and closed queues'
    automatic replies; the rules watcher is made here and started last."""
    settings = app[SETTINGS]

    async def announce(digest: str) -> None:  # to the other nodes, once the relay runs
        relay = app.get(RELAY)
        if relay is not None:
            await relay.rules_changed(digest)

    decider, watcher, holder = await _load_rules(settings, app[STORE], app[CLOCK], announce)
    if holder is not None:
        app[RULES_HOLDER] = holder
    replies = {
        queue.name: (settings.business_hours[queue.business_hours], queue.closed_reply)
        for queue in settings.queues
        if queue.business_hours and queue.closed_reply
    }
    if replies:
        decider = ClosedQueueReplies(
            decider, replies=replies, timezone=settings.timezone, clock=app[CLOCK]
        )
    app[DECIDER] = decider
    if watcher is not None:
        app[RULES_WATCHER] = watcher
    yield


async def http_session(app: web.Application) -> Resource:
    """The one HTTP client session (CRM, connectors' provider APIs)."""
    app[HTTP] = session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    yield
    await session.close()


async def pipeline(app: web.Application) -> Resource:
    """The connectors' sink, with the external CRM it asks (closed on the way out)."""
    settings = app[SETTINGS]
    provider = context_provider(settings, app[HTTP])
    # this process's name in event and outbox claims and the dispatch lease
    app[NODE] = node_id()
    bus_settings = settings.bus
    relay = EventRelay(
        app[STORE],
        app[BUS],
        app[METRICS],
        holder=app[NODE],
        hold=bus_settings.relay_after,
        poll=bus_settings.relay_poll,
        backoff_initial=bus_settings.reconnect_initial,
        backoff_max=bus_settings.reconnect_max,
    )
    app[PIPELINE] = Pipeline(
        app[STORE],
        app[BUS],
        app[DECIDER],
        app[METRICS],
        default_region=settings.customers.default_region,
        provider=provider,
        clock=app[CLOCK],
        relay=relay,
    )
    app[CUSTOMERS] = customer_service(settings, app[STORE])
    yield
    if provider is not None:
        await provider.close()


async def dispatch(app: web.Application) -> Resource:
    """Dispatch, telling agents through their sockets (with what each channel lets them send)."""
    app[CONNECTIONS] = connections = AgentConnections()
    app[COMPOSE] = compose = ComposeAdvisor(app[CONNECTORS], app[CLOCK])
    node = app[NODE]  # named with the pipeline, which claims events under it
    settings = app[SETTINGS]
    relay = None
    if settings.distributed:  # agents' sockets on any node; their frames routed by the owner
        cluster = settings.cluster
        app[RELAY] = relay = Relay(
            app[BUS],
            node,
            connections,
            app[METRICS],
            beat_every=cluster.node_beat,
            call_timeout=cluster.call_timeout,
            rules=lambda: holder.current.digest if (holder := app.get(RULES_HOLDER)) else "",
            clock=app[CLOCK],
        )
    sockets = connections if relay is None else OwnerRoute(relay)
    agents = app[AGENTS]
    app[CALLS] = calls = Calls(app[CONNECTORS], agents, sockets.send)
    service = DispatchService(
        app[SETTINGS],
        app[STORE],
        app[BUS],
        CallingAudience(  # a taken call is put through to the agent's phone
            ConsoleFrames(
                sockets,
                compose.view,
                {queue.name: queue.sla for queue in app[SETTINGS].queues},
            ),
            calls,
        ),
        app[METRICS],
        app[CLOCK],
    )
    leadership = None
    if settings.distributed:  # dispatch runs in the one process holding the lease
        cluster = settings.cluster
        changes = app[METRICS].lease_changes
        app[TERM] = term = Term(service)
        leadership = dispatch_leadership(
            app[STORE],
            term,
            node,
            ttl=cluster.lease_ttl,
            margin=cluster.lease_margin,
            poll=cluster.lease_poll,
            on_retired=restart_process,
            on_change=lambda change: changes.labels(change).inc(),
        )
        # sought once the console and the relay run (hub.lifecycle.cluster)
    else:
        await service.start()
    app[ROLE] = Role(leadership)
    app[DISPATCH] = service
    yield
    if leadership is None:
        await service.stop()
    else:
        await leadership.stop()  # stops dispatch if it ran here, gives the lease up
    await calls.stop()


async def console(app: web.Application) -> Resource:
    """The agent websocket service (``/ws/agent``)."""
    server = app[SETTINGS].server
    service = Console(
        app[STORE],
        DeferringBus(app[BUS], app[PIPELINE].relay),  # a reply's frame waits out a Redis outage
        app[DISPATCH],
        app[CONNECTIONS],
        app[AGENTS],
        app[METRICS],
        server.allowed_origins,
        app[COMPOSE],
        sessions=app[SESSIONS],
        session_check_interval=server.session_check_interval,
        compress=server.websocket_compression,
        upload_secret=app[KEYS].uploads,
        clock=app[CLOCK],
        budget=SendBudget(
            max_bytes=server.agent_queue_bytes, send_timeout=server.agent_send_timeout
        ),
        dispositions=app[SETTINGS].dispatch.dispositions,
        wrap_up=app[SETTINGS].dispatch.wrap_up,
        canned=app[SETTINGS].canned_responses,
        calls=app[CALLS],
    )
    app[UPLOAD_SECRET] = service.upload_secret
    app[CONSOLE] = service
    service.start()
    yield
    await service.stop()


async def cluster(app: web.Application) -> Resource:
    """The distributed mode: this node's relay to the dispatch owner, the owner's desk (run
    under the lease), following other nodes' rules revisions, then seeking the lease."""
    relay = app.get(RELAY)
    if relay is None:
        yield
        return
    settings, console = app[SETTINGS], app[CONSOLE]
    holder = app.get(RULES_HOLDER)
    if holder is not None:
        follower = RulesFollower(
            app[STORE],
            holder,
            queues={queue.name for queue in settings.queues},
            calendars=set(settings.business_hours),
        )

        async def load(digest: str) -> None:
            await follower.load(digest)

        relay.on_rules = load
    await relay.start()
    console.relay = relay
    console.route = OwnerRoute(relay)
    app[TERM].desk = OwnerDesk(
        app[BUS],
        relay,
        app[DISPATCH],
        console,
        app[METRICS],
        agents=[agent.id for agent in settings.agents],
        node_timeout=settings.cluster.node_timeout,
        clock=app[CLOCK],
    )
    lease = app[ROLE].lease
    assert isinstance(lease, Leadership)
    lease.start()
    yield
    await lease.stop()  # the desk and dispatch stop if they ran here; the lease is given up
    await relay.stop()


async def connectors(app: web.Application) -> Resource:
    """Every channel instance, started in configuration order and stopped in reverse (one
    that fails to stop is logged; the others still stop)."""
    started = []
    try:
        for name, connector in app[CONNECTORS].items():
            await connector.start(_lend(app, name))
            started.append(connector)
    except BaseException:
        await _stop_all(reversed(started))
        raise
    yield
    await _stop_all(reversed(started))


async def outbox(app: web.Application) -> Resource:
    """Sending replies; on the way out, sends in progress finish before connectors stop
    (normally done already, by :func:`drain`)."""
    worker = OutboxWorker(
        app[STORE],
        DeferringBus(app[BUS], app[PIPELINE].relay),  # a recorded send's status is never lost
        app[CONNECTORS],
        app[METRICS],
        app[CLOCK],
        on_recorded=app[PIPELINE].apply_early_reports,
        holder=app[NODE],
        claim_hold=app[SETTINGS].cluster.outbox_claim,
    )
    app[OUTBOX] = worker
    worker.start()
    yield
    await worker.stop(grace=app[SETTINGS].server.shutdown_timeout)


async def relay(app: web.Application) -> Resource:
    """Publishes committed events the bus refused, or a dead process left unpublished
    (started once dispatch and the consoles follow the bus)."""
    relay = app[PIPELINE].relay
    relay.start()
    yield
    await relay.stop()


async def rules_watcher(app: web.Application) -> Resource:
    """Reloads the rules file when it changes (``rules.watch``)."""
    watcher = app.get(RULES_WATCHER)
    if watcher is None:
        yield
        return
    watcher.start()
    yield
    await watcher.stop()


async def revaluation(app: web.Application) -> Resource:
    """Recency changes with time alone: customer values are recomputed on a schedule (by the
    dispatch owner only, when there are several processes)."""
    every = max(MIN_REVALUE_EVERY, app[SETTINGS].customers.recompute_every)
    task = asyncio.create_task(_revalue(app[CUSTOMERS], every, app[ROLE]), name="customer-values")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


RESOURCES: tuple[Callable[[web.Application], Resource], ...] = (
    metrics_port,
    secret_keys,
    store,
    bus,
    routing,
    http_session,
    pipeline,
    dispatch,
    console,
    cluster,
    connectors,
    outbox,
    relay,
    rules_watcher,
    revaluation,
)


async def announce(app: web.Application) -> None:
    """``on_startup``, after every resource started."""
    log.info("hub ready with channels %s", ", ".join(app[CONNECTORS].keys()) or "(none)")


async def drain(app: web.Application) -> None:
    """On SIGTERM, in this order: let replies being sent finish and be recorded (up to
    ``server.shutdown_timeout``; the connectors still run), tell agents to reconnect elsewhere,
    then stop the connectors (chat sockets close there)."""
    if OUTBOX in app:
        await app[OUTBOX].stop(grace=app[SETTINGS].server.shutdown_timeout)
    if CONSOLE in app:
        await app[CONSOLE].connections.close_all(1001, b"server shutting down")
    await _stop_all(app[CONNECTORS].values())


# -- helpers ---------------------------------------------------------------------------------


def _lend(app: web.Application, instance: str) -> ConnectorContext:
    """What the hub lends the channel instance ``instance`` while it runs."""
    sink = app[PIPELINE]
    return ConnectorContext(
        instance=instance,
        sink=sink,
        history=sink,
        blobs=app[BLOBS],
        http=app[HTTP],
        secret=app[KEYS].connector(instance),
        clock=app[CLOCK],
        logger=logging.getLogger(f"connectors.{instance}"),
        public_url=public_url(app[SETTINGS]),
        state=ConnectorState(app[STORE], instance),
        business_hours=calendar_open(app[SETTINGS]),
        peers=LonePeers() if (relay := app.get(RELAY)) is None else NodePeers(relay, instance),
    )


async def _stop_all(connectors: Iterable[Connector]) -> None:
    for connector in connectors:
        try:
            await connector.stop()
        except Exception:
            log.exception("stopping connector %s failed", connector.name)


async def _load_rules(
    settings: HubSettings,
    store: Store,
    clock: Callable[[], float],
    announce: Callable[[str], Awaitable[None]],
) -> tuple[Decider, RulesWatcher | None, RulesHolder | None]:
    """The rules hook: the configured rules file (watched for changes; an accepted revision is
    announced to the other nodes) or pass-through."""
    path = settings.rules.path
    if path is None:
        return PassthroughDecider(settings.default_queue), None, None
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
        await announce(new.digest)

    watcher = None
    if settings.rules.watch:
        watcher = RulesWatcher(
            path,
            holder,
            queues=queues,
            calendars=calendars,
            interval=settings.rules.poll_interval,
            on_accept=accepted,
            worker_setup=die_with_parent,
        )
    return decider, watcher, holder


async def _revalue(customers: Customers, every: float, role: Role) -> None:
    while True:
        if not role.owner:  # another process recomputes
            await asyncio.sleep(every)
            continue
        try:
            count = await customers.recompute()
            log.info("customer values recomputed for %d customers", count)
        except Exception:
            log.exception("recomputing customer values failed; trying again later")
        await asyncio.sleep(every)
