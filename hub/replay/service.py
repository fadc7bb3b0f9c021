"""``rules diff`` over a store: the rule sets to compare, the period, the replay in pages.

Shared by the command (``hub.cli.rules``) and the endpoint (``hub.replay.api``). The replay
itself is the pure ``hub.replay.diff``; here are the reads and the choices around it.
"""

from __future__ import annotations

import asyncio
from zoneinfo import ZoneInfo

from sqlalchemy import select

from hub.errors import ConfigError
from hub.replay.diff import Replay, Summary
from hub.replay.load import Period, Reader
from hub.routing import RulesDecider
from hub.settings import HubSettings
from hub.store.schema import rule_revisions
from hub.store.store import Store
from rules.compiler import RuleSet
from rules.durations import parse_duration
from rules.loader import MAX_BYTES, load_rules
from rules.reload import RulesHolder

CURRENT = "CURRENT"
MIN_PREFIX = 6


def proposed_rules(text: str | bytes, path: str, settings: HubSettings) -> RuleSet:
    """The proposed rules file, checked as ``rules check --config`` does (queues and calendars
    of hub.yaml); ConfigError with ``path:line:col`` problems."""
    if len(text) > MAX_BYTES:
        raise ConfigError([f"{path}:1:1: file is larger than {MAX_BYTES} bytes"])
    return load_rules(
        text,
        path,
        queues={queue.name for queue in settings.queues},
        calendars=set(settings.business_hours),
    )


def no_rules(settings: HubSettings) -> RuleSet:
    """What routes while hub.yaml names no rules file: everything to the default queue."""
    text = f"version: 1\ndefaults: {{queue: {settings.default_queue}}}\nrules: []\n"
    return load_rules(text, "(no rules file)")


async def stored_revision(store: Store, prefix: str) -> RuleSet:
    """The accepted rules revision whose SHA-256 starts with ``prefix`` (ConfigError when none
    or several do). Compiled without hub.yaml's names: queues it routed to may be gone."""
    wanted = prefix.strip().lower()
    if len(wanted) < MIN_PREFIX or any(ch not in "0123456789abcdef" for ch in wanted):
        raise ConfigError(
            [f"--against: {prefix!r} is neither CURRENT nor a SHA-256 (at least 6 hex digits)"]
        )
    async with store.read() as connection:
        rows = (
            await connection.execute(
                select(rule_revisions.c.digest, rule_revisions.c.text, rule_revisions.c.path)
                .where(rule_revisions.c.digest.like(f"{wanted}%"))
                .limit(2)
            )
        ).all()
    if not rows:
        raise ConfigError([f"--against: no stored rules revision starts with {wanted}"])
    if len(rows) > 1:
        raise ConfigError([f"--against: {wanted} is the start of several revisions; give more"])
    row = rows[0]
    return load_rules(row.text, f"revision {row.digest[:12]} ({row.path})")


def period(
    settings: HubSettings, now: float, since: str = "7d", channels: list[str] | None = None
) -> Period:
    """The messages received in the last ``since`` (a duration: ``7d``, ``12h``)."""
    try:
        seconds = parse_duration(since)
    except ValueError as exc:
        raise ConfigError([f"--since: {since!r}: {exc}"]) from None
    known = {channel.name for channel in settings.channels} | {
        channel.type for channel in settings.channels
    }
    unknown = [name for name in channels or () if known and name not in known]
    if unknown:
        raise ConfigError(
            [f"--channel: {', '.join(unknown)} is no channel type or instance in hub.yaml"]
        )
    return Period(now - seconds, now, tuple(channels or ()))


async def run_diff(
    store: Store,
    settings: HubSettings,
    old: RuleSet,
    new: RuleSet,
    wanted: Period,
    *,
    examples: int = 3,
) -> Summary:
    """Replay the period's stored messages through ``old`` and ``new``, a page at a time,
    giving the event loop a turn between pages."""
    calendars = RulesDecider(
        RulesHolder(new), timezone=settings.timezone, calendars=settings.business_hours
    )
    replay = Replay(
        old,
        new,
        zone=ZoneInfo(settings.timezone),
        open_at=calendars.business_hours,
        examples=examples,
    )
    async for page in Reader(wanted).pages(store):
        replay.add(page)
        await asyncio.sleep(0)
    return replay.summary()
