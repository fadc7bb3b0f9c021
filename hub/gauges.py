"""Gauges that are sampled rather than counted: the outbox's backlog and dead letters and the
event outbox's backlog (from the store, so they survive restarts and agree between processes),
and each channel instance's health.
The alert rules in ``deploy/prometheus/alerts.yaml`` are built on them (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

from aiohttp import web
from sqlalchemy import func, select

from connectors.base import Connector
from hub.keys import CONNECTORS, METRICS, STORE
from hub.metrics import Metrics
from hub.store.schema import outbox
from hub.store.store import Store

log = logging.getLogger(__name__)
INTERVAL = 15.0  # seconds between samples: a usual Prometheus scrape interval


@dataclass(frozen=True, slots=True)
class OutboxFigures:
    pending: int
    oldest_pending_seconds: float
    dead_letters: int


async def outbox_figures(store: Store, now: float) -> OutboxFigures:
    async with store.read() as connection:
        rows = {
            row.status: row
            for row in await connection.execute(
                select(
                    outbox.c.status,
                    func.count().label("total"),
                    func.min(outbox.c.created_at).label("oldest"),
                )
                .where(outbox.c.status.in_(["pending", "failed"]))
                .group_by(outbox.c.status)
            )
        }
    pending = rows.get("pending")
    failed = rows.get("failed")
    return OutboxFigures(
        pending=int(pending.total) if pending else 0,
        oldest_pending_seconds=max(0.0, now - pending.oldest) if pending else 0.0,
        dead_letters=int(failed.total) if failed else 0,
    )


async def sample(
    metrics: Metrics, store: Store, connectors: Mapping[str, Connector], now: float
) -> None:
    """Set the sampled gauges once."""
    for name, connector in connectors.items():
        try:
            healthy = connector.health() is None
        except Exception:
            log.exception("health check of %s failed", name)
            healthy = False
        metrics.connector_up.labels(name, connector.channel).set(1 if healthy else 0)
    figures = await outbox_figures(store, now)
    metrics.outbox_pending.set(figures.pending)
    metrics.outbox_oldest_pending_seconds.set(figures.oldest_pending_seconds)
    metrics.outbox_dead_letters.set(figures.dead_letters)
    backlog = await store.event_backlog()
    metrics.event_outbox_pending.set(backlog.pending)
    metrics.event_outbox_oldest_seconds.set(
        max(0.0, now - backlog.oldest) if backlog.oldest is not None else 0.0
    )


def setup(app: web.Application, interval: float = INTERVAL) -> None:
    """Sample the gauges every ``interval`` seconds while ``app`` runs (from its start)."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        store = app[STORE]
        clock: Callable[[], float] = store.clock

        async def loop() -> None:
            while True:
                try:
                    await sample(app[METRICS], store, app[CONNECTORS], clock())
                except Exception as exc:  # the store down: the gauges keep their last value
                    log.warning("sampling gauges failed: %s", exc)
                await asyncio.sleep(interval)

        task = asyncio.create_task(loop(), name="gauges")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app.cleanup_ctx.append(context)
