"""Business hours: is a calendar open at a given moment? Pure; the clock is passed in."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from hub.settings import WEEKDAYS, BusinessHoursSettings, HubSettings


def _minutes(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def is_open(calendar: BusinessHoursSettings, moment: datetime, default_zone: str = "UTC") -> bool:
    """True when ``moment`` (timezone-aware) falls into the calendar's opening hours."""
    local = moment.astimezone(ZoneInfo(calendar.timezone or default_zone))
    if local.date() in calendar.holidays:
        return False
    ranges = calendar.weekly.get(WEEKDAYS[local.weekday()], ())  # type: ignore[call-overload]
    minute = local.hour * 60 + local.minute
    for entry in ranges:
        start, end = entry.split("-")
        if _minutes(start) <= minute < _minutes(end):
            return True
    return False


def calendar_open(settings: HubSettings) -> Callable[[str, float], bool]:
    """Whether hub.yaml's calendar ``name`` is open at a moment (seconds since the epoch);
    KeyError for a name hub.yaml does not define. Lent to connectors (a phone number's
    greeting and what a caller gets after hours)."""

    def open_at(name: str, moment: float) -> bool:
        calendar = settings.business_hours[name]
        return is_open(calendar, datetime.fromtimestamp(moment, UTC), settings.timezone)

    return open_at
