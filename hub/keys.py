"""Typed keys of the shared state an application holds (``app[STORE]`` and so on).

``hub.app`` sets what exists once the app is built (settings, clock, metrics, connectors);
each resource's start-up in ``hub.lifecycle`` sets what it makes, in start order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import aiohttp
from aiohttp import web

from connectors.base import Connector
from hub.auth import Authenticator
from hub.bus import Bus
from hub.calls import Calls
from hub.cluster.relay import Relay
from hub.cluster.role import Role
from hub.cluster.term import Term
from hub.console.compose import ComposeAdvisor
from hub.console.registry import AgentConnections
from hub.console.service import Console
from hub.customers.repository import Customers
from hub.dispatch.service import DispatchService
from hub.metrics import Metrics
from hub.outbox import OutboxWorker
from hub.pipeline import Decider, Pipeline
from hub.secrets import Keys
from hub.sessions import Sessions
from hub.settings import AgentSettings, HubSettings
from hub.store.blobs import BlobStore
from hub.store.store import Store
from rules.reload import RulesHolder, RulesWatcher

SETTINGS = web.AppKey("settings", HubSettings)
AGENTS: web.AppKey[dict[str, AgentSettings]] = web.AppKey("agents")  # by id, from SETTINGS
CLOCK: web.AppKey[Callable[[], float]] = web.AppKey("clock")
METRICS = web.AppKey("metrics", Metrics)
CONNECTORS = web.AppKey("connectors", Mapping[str, Connector])
KEYS = web.AppKey("keys", Keys)
STORE = web.AppKey("store", Store)
BUS = web.AppKey("bus", Bus)
HTTP = web.AppKey("http", aiohttp.ClientSession)
DECIDER: web.AppKey[Decider] = web.AppKey("decider")
PIPELINE = web.AppKey("pipeline", Pipeline)
CONNECTIONS = web.AppKey("connections", AgentConnections)
COMPOSE = web.AppKey("compose", ComposeAdvisor)
CALLS = web.AppKey("calls", Calls)
DISPATCH = web.AppKey("dispatch", DispatchService)
CONSOLE = web.AppKey("console", Console)
AUTH = web.AppKey("auth", Authenticator)
SESSIONS = web.AppKey("sessions", Sessions)
CUSTOMERS = web.AppKey("customers", Customers)
RULES_WATCHER = web.AppKey("rules_watcher", RulesWatcher)
BLOBS = web.AppKey("blobs", BlobStore)
UPLOAD_SECRET = web.AppKey("upload_secret", bytes)
OUTBOX = web.AppKey("outbox", OutboxWorker)
NODE = web.AppKey("node", str)  # this process's name in outbox claims and the dispatch lease
RELAY = web.AppKey("relay", Relay)  # the distributed mode: this node's link to dispatch
ROLE = web.AppKey("role", Role)  # dispatch owner, standby or the only process
TERM = web.AppKey("term", Term)  # what runs under the dispatch lease
RULES_HOLDER = web.AppKey("rules_holder", RulesHolder)  # the running rules (a rules file)
