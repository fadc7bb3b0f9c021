"""Business hours across time zones, daylight saving changes, holidays and edges."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hub.calendar import is_open
from hub.settings import BusinessHoursSettings

BERLIN = BusinessHoursSettings(
    timezone="Europe/Berlin",
    weekly={
        "mon": ("08:00-18:00",),
        "fri": ("08:00-12:00", "13:00-16:00"),
        "sat": ("10:00-24:00",),
    },
    holidays=("2026-12-24",),  # type: ignore[arg-type]
)


@pytest.mark.parametrize(
    ("utc", "expected"),
    [
        # Friday before the spring change (UTC+1): 08:00 local is 07:00 UTC
        ("2026-03-27T06:59", False),
        ("2026-03-27T07:00", True),
        ("2026-03-27T11:30", False),  # the lunch gap, 12:30 local
        ("2026-03-27T14:59", True),
        ("2026-03-27T15:00", False),  # 16:00 local: closed (the end is exclusive)
        # Monday after it (UTC+2): 08:00 local is 06:00 UTC
        ("2026-03-30T05:59", False),
        ("2026-03-30T06:00", True),
        ("2026-03-30T15:59", True),
        ("2026-03-30T16:00", False),
        # Monday after the autumn change (UTC+1 again)
        ("2026-10-26T06:30", False),
        ("2026-10-26T07:00", True),
        # "until 24:00" covers the last minute of the day
        ("2026-11-28T22:59", True),
        ("2026-11-28T23:00", False),  # midnight local: Sunday, closed
        # a holiday that falls on a Thursday, and a day without hours
        ("2026-12-24T10:00", False),
        ("2026-12-22T10:00", False),
    ],
)
def test_business_hours(utc: str, expected: bool) -> None:
    moment = datetime.fromisoformat(utc).replace(tzinfo=UTC)
    assert is_open(BERLIN, moment) is expected


def test_bad_ranges_and_zones_are_refused() -> None:
    with pytest.raises(ValueError, match="end after it starts"):
        BusinessHoursSettings(weekly={"mon": ("18:00-08:00",)})
    with pytest.raises(ValueError, match="unknown time zone"):
        BusinessHoursSettings(timezone="Mars/Olympus", weekly={})
