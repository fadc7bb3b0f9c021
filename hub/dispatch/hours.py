"""Business hours as dispatch sees them: is a queue open at a moment?

The core asks this when matching work (a closed queue's work waits, unoffered); the calendars
come from hub.yaml (``business_hours``, named by each queue) and are read by ``hub.calendar``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from hub.calendar import is_open
from hub.settings import HubSettings

QueueOpen = Callable[[str, float], bool]


def queue_hours(settings: HubSettings) -> QueueOpen | None:
    """Whether a queue is open at a moment, from the calendars its settings name; None when no
    queue has hours (every queue is always open, and the core skips the question)."""
    calendars = {
        queue.name: settings.business_hours[queue.business_hours]
        for queue in settings.queues
        if queue.business_hours
    }
    if not calendars:
        return None

    def queue_open(queue: str, moment: float) -> bool:
        calendar = calendars.get(queue)
        if calendar is None:
            return True
        return is_open(calendar, datetime.fromtimestamp(moment, UTC), settings.timezone)

    return queue_open
