"""A team lead's figures per queue, channel, agent and day, computed from audit events.

Pure: the events (oldest first), what is known of each conversation and the report's days go
in, rows come out. :mod:`hub.reports.queries` reads the events; tests feed a hand-computed day.

Each figure is counted on the day (in the report's time zone) the thing it counts happened, in
the group it happened in: the queue the conversation was in at that moment, its channel, the
agent who acted (docs/reports.md says it per column). A conversation's life before the first
day is replayed so that a reply today to yesterday's message is today's first response.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo


class GroupBy(StrEnum):
    DAY = "day"
    QUEUE = "queue"
    CHANNEL = "channel"
    AGENT = "agent"


@dataclass(frozen=True, slots=True)
class Event:
    """One ``events`` row, as far as reports read it."""

    at: float
    kind: str
    conversation_id: str | None = None
    agent: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ConversationInfo:
    """What the conversations table adds: its channel and the SLA its rules set (if any)."""

    channel: str
    sla_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class Period:
    """Whole days ``first`` to ``last`` (inclusive) in ``timezone``; nothing after ``now``."""

    first: date
    last: date
    timezone: str = "UTC"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def bounds(self) -> tuple[float, float]:
        """Start of the first day and end of the last one, as epoch seconds."""
        zone = self.zone
        start = datetime.combine(self.first, datetime.min.time(), zone)
        end = datetime.combine(self.last + timedelta(days=1), datetime.min.time(), zone)
        return start.timestamp(), end.timestamp()

    def day(self, at: float) -> date | None:
        """The report day ``at`` falls on, or None outside the period."""
        day = datetime.fromtimestamp(at, self.zone).date()
        return day if self.first <= day <= self.last else None


@dataclass(slots=True)
class Row:
    """The figures of one group on one day. Times are seconds; ``None`` where nothing was
    measured. ``satisfaction`` stays None: the hub collects no ratings yet."""

    day: date
    group: str
    inbound: int = 0
    outbound: int = 0
    auto_replies: int = 0
    conversations: int = 0  # started or reopened
    first_responses: list[float] = field(default_factory=list)
    handling: list[float] = field(default_factory=list)
    sla_met: int = 0
    sla_missed: int = 0
    abandoned: int = 0
    transfers: int = 0
    requeued: int = 0
    offers: int = 0
    offers_declined: int = 0
    offers_timed_out: int = 0
    closed: int = 0
    dispositions: dict[str, int] = field(default_factory=dict)
    satisfaction: float | None = None

    def figures(self) -> dict[str, Any]:
        """The row as the JSON answer and the CSV columns show it."""
        due = self.sla_met + self.sla_missed
        return {
            "day": self.day.isoformat(),
            "group": self.group,
            "inbound": self.inbound,
            "outbound": self.outbound,
            "auto_replies": self.auto_replies,
            "conversations": self.conversations,
            "first_response_count": len(self.first_responses),
            "first_response_p50": percentile(self.first_responses, 0.5),
            "first_response_p90": percentile(self.first_responses, 0.9),
            "handling_count": len(self.handling),
            "handling_p50": percentile(self.handling, 0.5),
            "handling_p90": percentile(self.handling, 0.9),
            "sla_met": self.sla_met,
            "sla_missed": self.sla_missed,
            "sla_attainment": round(self.sla_met / due, 4) if due else None,
            "abandoned": self.abandoned,
            "transfers": self.transfers,
            "requeued": self.requeued,
            "offers": self.offers,
            "offers_declined": self.offers_declined,
            "offers_timed_out": self.offers_timed_out,
            "closed": self.closed,
            "dispositions": dict(sorted(self.dispositions.items())),
            "satisfaction": self.satisfaction,
        }


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (the smallest value with at least ``q`` of them at or below
    it): always one of the measured values, easy to check by hand. None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(q * len(ordered)) - 1)], 3)


@dataclass(slots=True)
class _Conversation:
    """A conversation's state while its events are replayed."""

    channel: str
    own_sla: float | None  # what its rules set
    sla: float | None = None  # the current episode's target (the rules', else its queue's)
    queue: str = ""
    assignee: str | None = None
    assigned_at: float | None = None
    started_at: float | None = None  # the current episode (created or reopened)
    answered: bool = True  # the current episode had its first reply
    settled: bool = True  # the current episode's SLA was decided (met, missed, or n/a)


class _Tally:
    def __init__(self, period: Period, by: GroupBy, until: float) -> None:
        self.period = period
        self.by = by
        self.until = until
        self.rows: dict[tuple[date, str], Row] = {}

    def row(self, at: float, state: _Conversation | None, agent: str | None) -> Row | None:
        """The row an event at ``at`` counts in, or None (outside the period, or no agent for
        a per-agent report)."""
        day = self.period.day(at)
        if day is None:
            return None
        if self.by is GroupBy.DAY:
            group = ""
        elif self.by is GroupBy.AGENT:
            if not agent:
                return None
            group = agent
        elif self.by is GroupBy.QUEUE:
            group = (state.queue if state else "") or "unknown"
        else:
            group = (state.channel if state else "") or "unknown"
        key = (day, group)
        found = self.rows.get(key)
        if found is None:
            found = self.rows[key] = Row(day, group)
        return found

    def settle_due(self, state: _Conversation, before: float) -> None:
        """An unanswered episode whose SLA ran out before ``before`` is missed at its deadline."""
        if state.settled or state.sla is None or state.started_at is None:
            return
        deadline = state.started_at + state.sla
        if deadline < before and deadline < self.until:
            state.settled = True
            row = self.row(deadline, state, state.assignee)
            if row is not None:
                row.sla_missed += 1


def compute(
    events: Iterable[Event],
    conversations: Mapping[str, ConversationInfo],
    period: Period,
    by: GroupBy,
    *,
    now: float,
    queue_sla: Mapping[str, float | None] | None = None,
) -> list[Row]:
    """The report's rows, by day then group. ``events`` must be in the order they were
    written and hold each conversation's events from its start; ``queue_sla`` is each queue's
    first-response target for conversations whose rules set none."""
    end = period.bounds()[1]
    tally = _Tally(period, by, min(end, now))
    slas = queue_sla or {}
    states: dict[str, _Conversation] = {}
    for event in events:
        if event.at >= end:
            continue
        state = None
        if event.conversation_id is not None:
            state = states.get(event.conversation_id)
            if state is None:
                info = conversations.get(event.conversation_id)
                state = states[event.conversation_id] = _Conversation(
                    channel=info.channel if info else str(event.data.get("channel") or ""),
                    own_sla=info.sla_seconds if info else None,
                )
                state.queue = str(event.data.get("queue") or "")
            if not state.channel and event.data.get("channel"):
                state.channel = str(event.data["channel"])
            tally.settle_due(state, event.at)
        _apply(tally, event, state, slas)
    for state in states.values():
        tally.settle_due(state, math.inf)
    return [tally.rows[key] for key in sorted(tally.rows)]


def _apply(
    tally: _Tally,
    event: Event,
    state: _Conversation | None,
    slas: Mapping[str, float | None],
) -> None:
    kind, at, agent = event.kind, event.at, event.agent
    if state is None:
        return
    if kind in {"conversation.created", "conversation.reopened"}:
        state.queue = str(event.data.get("queue") or state.queue)
        state.assignee = None
        state.started_at = at
        state.answered = False
        state.sla = state.own_sla if state.own_sla is not None else slas.get(state.queue)
        state.settled = state.sla is None
        if (row := tally.row(at, state, None)) is not None:
            row.conversations += 1
    elif kind == "message.received":
        if (row := tally.row(at, state, state.assignee)) is not None:
            row.inbound += 1
    elif kind == "reply.queued":
        if (row := tally.row(at, state, agent)) is not None:
            row.outbound += 1
        if not state.answered and state.started_at is not None:
            state.answered = True
            waited = max(0.0, at - state.started_at)
            if row is not None:
                row.first_responses.append(waited)
            if not state.settled and state.sla is not None:
                state.settled = True
                if row is not None:
                    if waited <= state.sla:
                        row.sla_met += 1
                    else:
                        row.sla_missed += 1
    elif kind == "auto_reply.queued":
        if (row := tally.row(at, state, None)) is not None:
            row.auto_replies += 1
    elif kind == "offer.sent":
        if (row := tally.row(at, state, agent)) is not None:
            row.offers += 1
    elif kind == "offer.declined":
        if (row := tally.row(at, state, agent)) is not None:
            row.offers_declined += 1
    elif kind == "offer.timeout":
        if (row := tally.row(at, state, agent)) is not None:
            row.offers_timed_out += 1
    elif kind == "conversation.assigned":
        state.assignee = agent
        state.assigned_at = at
    elif kind == "conversation.transferred":
        if (row := tally.row(at, state, agent)) is not None:
            row.transfers += 1
        state.queue = str(event.data.get("queue") or state.queue)
        state.assignee = None
    elif kind == "conversation.requeued":
        if (row := tally.row(at, state, agent)) is not None:
            row.requeued += 1
        state.assignee = None
    elif kind == "conversation.moved":
        state.queue = str(event.data.get("queue") or state.queue)
    elif kind == "conversation.abandoned":
        if (row := tally.row(at, state, None)) is not None:
            row.abandoned += 1
        state.settled = True  # the customer left: not the team's SLA to meet
    elif kind == "conversation.closed":
        if (row := tally.row(at, state, agent)) is not None:
            row.closed += 1
            disposition = str(event.data.get("disposition") or "")
            row.dispositions[disposition] = row.dispositions.get(disposition, 0) + 1
            if state.assigned_at is not None and state.assignee == agent:
                row.handling.append(max(0.0, at - state.assigned_at))
        state.settled = True  # closed unanswered (spam, duplicate): no SLA to miss
        state.assignee = None
        state.assigned_at = None


def table(rows: Sequence[Row], by: GroupBy) -> tuple[list[str], list[list[Any]]]:
    """The rows as a header and cells for CSV: one column per disposition seen, named
    ``disposition:NAME``; the group column is named after ``by`` (absent for ``day``)."""
    dispositions = sorted({name for row in rows for name in row.dispositions})
    grouped = by is not GroupBy.DAY
    header = ["day", *([str(by)] if grouped else []), *COLUMNS]
    header += [f"disposition:{name}" for name in dispositions]
    cells: list[list[Any]] = []
    for row in rows:
        figures = row.figures()
        line = [figures["day"], *([figures["group"]] if grouped else [])]
        line += [figures[name] for name in COLUMNS]
        line += [row.dispositions.get(name, 0) for name in dispositions]
        cells.append(line)
    return header, cells


#: the figure columns of every report, in order
COLUMNS = tuple(
    name for name in Row(date.min, "").figures() if name not in {"day", "group", "dispositions"}
)
