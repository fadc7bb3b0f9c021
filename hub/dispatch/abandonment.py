"""Abandoned waits: a live-channel customer who left while queued and did not come back.

The conversation stays queued (they may still be answered later); leaving only starts a
timer, coming back within ``dispatch.abandon_after`` stops it, and if it runs out while the
conversation still waits, the abandonment is counted and audited.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from hub.bus import CustomerPresence
from hub.metrics import Metrics
from hub.store.store import Store

Spawn = Callable[[Coroutine[Any, Any, None]], object]


class AbandonmentTimers:
    """One timer per (inbox, session) whose customer left while their conversation waited."""

    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        waiting: Callable[[str], bool],
        after: float,
        spawn: Spawn,
    ) -> None:
        """``waiting(conversation_id)`` says whether it still waits for an agent; ``spawn``
        runs the abandonment's write as the service's own work (stopped with it)."""
        self.store = store
        self.metrics = metrics
        self.waiting = waiting
        self.after = after
        self.spawn = spawn
        self._leaving: dict[tuple[str, str], asyncio.TimerHandle] = {}

    async def presence(self, event: CustomerPresence) -> None:
        """A customer came (the timer stops) or left (a timer starts if they wait)."""
        key = (event.inbox, event.session)
        pending = self._leaving.pop(key, None)
        if pending is not None:
            pending.cancel()
        if event.present:
            return
        conversation = await self.store.queued_on_thread(event.inbox, event.session)
        if conversation is None:
            return
        loop = asyncio.get_running_loop()
        self._leaving[key] = loop.call_later(
            self.after,
            lambda: self.spawn(self._abandoned(key, conversation.id, conversation.queue)),
        )

    def cancel(self) -> None:
        """Stop every timer (the service stops)."""
        for handle in self._leaving.values():
            handle.cancel()

    async def _abandoned(self, key: tuple[str, str], conversation_id: str, queue: str) -> None:
        self._leaving.pop(key, None)
        if not self.waiting(conversation_id):
            return  # an agent took it in the meantime
        self.metrics.abandoned.labels(queue).inc()
        await self.store.audit("conversation.abandoned", conversation_id=conversation_id)
