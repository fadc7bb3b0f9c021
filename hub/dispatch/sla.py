"""Service levels of accepted work: time in queue, and the first answer against the SLA.

The clock starts when a conversation was queued; the first reply an agent sends stops it. The
target is the one the rules set on the conversation, else its queue's ``sla``; a late first
answer counts as a breach of the queue it was accepted from.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from hub.metrics import Metrics
from hub.store.records import Conversation


class ServiceLevels:
    """Measures accepted conversations until their first reply (metrics only, no decisions)."""

    def __init__(
        self,
        metrics: Metrics,
        queue_sla: Mapping[str, float | None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.metrics = metrics
        self.queue_sla = queue_sla
        self.clock = clock
        # accepted conversations not yet answered: (queue, queued at, SLA seconds or None)
        self._first_reply: dict[str, tuple[str, float, float | None]] = {}

    def accepted(self, conversation: Conversation, queue_wait: float) -> None:
        """An agent holds ``conversation`` (with its messages) now."""
        queue = conversation.queue
        self.metrics.queue_wait_seconds.labels(queue).observe(queue_wait)
        if not any(m.direction == "outbound" and m.author for m in conversation.messages):
            sla = (conversation.decision or {}).get("sla_seconds")
            if sla is None:
                sla = self.queue_sla.get(queue)
            queued_at = conversation.queued_at or conversation.created_at
            self._first_reply[conversation.id] = (queue, queued_at, sla)
        self.metrics.offers.labels(queue, "accepted").inc()

    def replied(self, conversation_id: str) -> None:
        """An agent answered: the first answer is measured, later ones are not."""
        pending = self._first_reply.pop(conversation_id, None)
        if pending is None:
            return
        queue, queued_at, sla = pending
        waited = max(0.0, self.clock() - queued_at)
        self.metrics.first_response_seconds.labels(queue).observe(waited)
        if sla is not None and waited > sla:
            self.metrics.sla_breaches.labels(queue).inc()
