"""Typed keys of the shared state an application holds (``app[STORE]`` and so on)."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from connectors.base import Connector
from hub.auth import Authenticator
from hub.bus import Bus
from hub.console.service import Console
from hub.customers.repository import Customers
from hub.dispatch.service import DispatchService
from hub.metrics import Metrics
from hub.outbox import OutboxWorker
from hub.pipeline import Pipeline
from hub.sessions import Sessions
from hub.settings import HubSettings
from hub.store.blobs import BlobStore
from hub.store.store import Store
from rules.reload import RulesWatcher

SETTINGS = web.AppKey("settings", HubSettings)
METRICS = web.AppKey("metrics", Metrics)
CONNECTORS = web.AppKey("connectors", Mapping[str, Connector])
STORE = web.AppKey("store", Store)
BUS = web.AppKey("bus", Bus)
PIPELINE = web.AppKey("pipeline", Pipeline)
DISPATCH = web.AppKey("dispatch", DispatchService)
CONSOLE = web.AppKey("console", Console)
AUTH = web.AppKey("auth", Authenticator)
SESSIONS = web.AppKey("sessions", Sessions)
CUSTOMERS = web.AppKey("customers", Customers)
RULES_WATCHER = web.AppKey("rules_watcher", RulesWatcher)
BLOBS = web.AppKey("blobs", BlobStore)
UPLOAD_SECRET = web.AppKey("upload_secret", bytes)
OUTBOX = web.AppKey("outbox", OutboxWorker)
