"""The retention policy as a scheduled job of the running hub: at start, then every
``retention.every``. Registered with :func:`setup` (one cleanup context of the application,
started after the store and stopped before it). With several hub processes only the dispatch
owner applies it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from hub.keys import BLOBS, ROLE, SETTINGS, STORE
from hub.privacy.retention import apply_retention

log = logging.getLogger(__name__)
Sleep = Callable[[float], Awaitable[None]]


async def run_every(job: Callable[[], Awaitable[object]], every: float, sleep: Sleep) -> None:
    """Run ``job`` now and then every ``every`` seconds; a failure is logged and retried at the
    next turn (the hub goes on)."""
    while True:
        try:
            await job()
        except Exception:
            log.exception("the retention job failed; it runs again in %.0f s", every)
        await sleep(every)


def setup(app: web.Application, sleep: Sleep = asyncio.sleep) -> None:
    """Run the retention policy in ``app`` while it runs, if hub.yaml configures one."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        policy = app[SETTINGS].retention
        if not policy.configured:
            yield
            return
        store = app[STORE]

        role = app[ROLE]

        async def job() -> object:
            if not role.owner:  # several processes: the dispatch owner applies it
                return None
            return await apply_retention(store, app[BLOBS], policy, store.clock())

        task = asyncio.create_task(run_every(job, policy.every, sleep), name="retention")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app.cleanup_ctx.append(context)
