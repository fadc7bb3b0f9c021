"""What a report or export request asks for, checked before anything is read.

Pure: the query parameters of ``GET /api/reports/…`` and the options of ``channelhub report``
come in as strings and leave as a :class:`ReportRequest` or :class:`ExportRequest`, or as a
:class:`BadParameter` saying what to fix (the API answers it with 400, the CLI with exit 1).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hub.reports.csvout import Dialect
from hub.reports.figures import GroupBy, Period

MAX_DAYS = 366
_NAME_LIMIT = 128
STATUSES = ("queued", "assigned", "closed")


class Format(StrEnum):
    JSON = "json"
    CSV = "csv"  # comma separated, decimal point
    CSV_DE = "csv-de"  # semicolon separated, decimal comma (German Excel)

    @property
    def dialect(self) -> Dialect:
        return Dialect.EXCEL_DE if self is Format.CSV_DE else Dialect.EXCEL


class BadParameter(ValueError):
    """A parameter is missing or wrong; the message says which and how to fix it."""


@dataclass(frozen=True, slots=True)
class ReportRequest:
    by: GroupBy
    period: Period
    format: Format


@dataclass(frozen=True, slots=True)
class ExportRequest:
    period: Period
    format: Format
    messages: bool = False  # one row per message instead of per conversation
    queue: str | None = None
    channel: str | None = None
    inbox: str | None = None
    status: str | None = None
    agent: str | None = None
    disposition: str | None = None
    customer: str | None = None  # id, number, email or phone (resolved by the caller)


def _choice(value: str | None, options: type[StrEnum], name: str, default: str) -> str:
    chosen = default if value in (None, "") else value
    allowed = [str(option) for option in options]
    if chosen not in allowed:
        raise BadParameter(f"{name} must be one of {', '.join(allowed)}, not {chosen!r}")
    return str(chosen)


def _date(value: str | None, name: str) -> date | None:
    if value in (None, ""):
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise BadParameter(f"{name} must be a date like 2026-11-26, not {value!r}") from None


def period(params: Mapping[str, str], *, today: date, default_timezone: str) -> Period:
    """``from`` and ``to`` (inclusive dates, default: today) in ``tz`` (an IANA name)."""
    timezone = params.get("tz") or default_timezone
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadParameter(
            f"tz must be an IANA time zone like Europe/Berlin, not {timezone!r}"
        ) from None
    first = _date(params.get("from"), "from") or today
    last = _date(params.get("to"), "to") or first
    if last < first:
        raise BadParameter(f"to ({last}) is before from ({first})")
    if last - first >= timedelta(days=MAX_DAYS):
        raise BadParameter(f"a report covers at most {MAX_DAYS} days; ask for a shorter period")
    return Period(first, last, timezone)


def report_request(
    by: str, params: Mapping[str, str], *, today: date, default_timezone: str
) -> ReportRequest:
    """A report by ``day``, ``queue``, ``channel`` or ``agent``."""
    unknown = set(params) - {"from", "to", "tz", "format"}
    if unknown:
        raise BadParameter(f"unknown parameters: {', '.join(sorted(unknown))}")
    return ReportRequest(
        GroupBy(_choice(by, GroupBy, "the report", "")),
        period(params, today=today, default_timezone=default_timezone),
        Format(_choice(params.get("format"), Format, "format", "json")),
    )


_FILTERS = ("queue", "channel", "inbox", "status", "agent", "disposition", "customer")


def export_request(
    params: Mapping[str, str], *, today: date, default_timezone: str
) -> ExportRequest:
    """A conversations export: conversations created in the period, filtered."""
    unknown = set(params) - {"from", "to", "tz", "format", "messages", *_FILTERS}
    if unknown:
        raise BadParameter(f"unknown parameters: {', '.join(sorted(unknown))}")
    filters: dict[str, str | None] = {}
    for name in _FILTERS:
        value = params.get(name)
        limit = 320 if name == "customer" else _NAME_LIMIT  # an email address may be long
        if value is not None and not 0 < len(value) <= limit:
            raise BadParameter(f"{name} must be 1 to {limit} characters")
        filters[name] = value or None
    if filters["status"] is not None and filters["status"] not in STATUSES:
        raise BadParameter(f"status must be one of {', '.join(STATUSES)}")
    messages = params.get("messages", "false").lower()
    if messages not in {"true", "false", "1", "0", "yes", "no"}:
        raise BadParameter("messages must be true or false")
    return ExportRequest(
        period(params, today=today, default_timezone=default_timezone),
        Format(_choice(params.get("format"), Format, "format", "csv")),
        messages=messages in {"true", "1", "yes"},
        **filters,
    )
