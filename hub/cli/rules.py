"""``channelhub rules check``, ``rules test`` and ``rules diff``: routing rules from the shell."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from hub.cli.config import load_config
from hub.cli.envelope import read_sample, sample_envelope
from hub.errors import ConfigError
from hub.settings import HubSettings
from rules.compiler import RuleSet
from rules.context import RuleInput
from rules.evaluate import evaluate
from rules.loader import read_rules


def _settings(args: argparse.Namespace) -> HubSettings | None:
    return None if args.config is None else load_config(args.config)


def _rules_path(args: argparse.Namespace, settings: HubSettings | None) -> str:
    if args.path:
        return str(args.path)
    if settings is not None and settings.rules.path:
        return settings.rules.path
    return "config/rules.yaml"


def _load(args: argparse.Namespace) -> tuple[RuleSet, HubSettings | None, str]:
    settings = _settings(args)
    path = _rules_path(args, settings)
    queues = {q.name for q in settings.queues} if settings else None
    calendars = set(settings.business_hours) if settings else None
    return read_rules(path, queues=queues, calendars=calendars), settings, path


def check(args: argparse.Namespace) -> int:
    ruleset, settings, path = _load(args)
    against = f" against {args.config}" if settings else ""
    print(f"{path}: {len(ruleset.rules)} rules ok{against} (sha256 {ruleset.digest[:12]})")
    return 0


def _sample_facts(args: argparse.Namespace) -> RuleInput:
    """What rules see of a sample: the connector's own parsing, no customer known."""
    from hub.customers.context import CustomerRef
    from hub.routing import facts_for

    name = args.sample or args.eml
    envelope = sample_envelope(name, read_sample(name), args.type, args.inbox)
    return facts_for(envelope, CustomerRef("", False, None, None))


def test(args: argparse.Namespace) -> int:
    ruleset, settings, _path = _load(args)
    if args.sample or args.eml:
        facts = _sample_facts(args)
    else:
        source = sys.stdin.buffer.read() if args.message == "-" else Path(args.message).read_bytes()
        try:
            facts = msgspec.json.decode(source, type=RuleInput)
        except msgspec.ValidationError as exc:
            raise ConfigError([f"{args.message}: {exc}"]) from None
        except msgspec.DecodeError as exc:
            raise ConfigError([f"{args.message}: not valid JSON: {exc}"]) from None
    from hub.routing import RulesDecider
    from rules.reload import RulesHolder

    decider = RulesDecider(
        RulesHolder(ruleset),
        timezone=settings.timezone if settings else "UTC",
        calendars=settings.business_hours if settings else {},
    )
    now = datetime.fromisoformat(args.now) if args.now else None
    if now is not None and now.tzinfo is None:
        raise ConfigError(["--now needs a time zone, e.g. 2026-11-26T10:00:00+01:00"])
    outcome = evaluate(ruleset, decider.context(facts, now), explain=True)
    report: dict[str, Any] = {
        "decision": msgspec.to_builtins(outcome.decision),
        "trace": outcome.trace,
        "errors": [{"rule": rule, "error": error} for rule, error in outcome.errors],
    }
    json.dump(report, sys.stdout, indent=2, ensure_ascii=False)
    print()
    return 0


def diff(args: argparse.Namespace) -> int:
    """Replay the period's stored messages through the running rules and a proposed file."""
    import asyncio
    import time

    from hub.cli.config import DEFAULT_CONFIG

    settings = load_config(args.config or DEFAULT_CONFIG)
    try:
        text = Path(args.path).read_bytes()
    except OSError as exc:
        raise ConfigError([f"{args.path}:1:1: cannot read file: {exc.strerror}"]) from None
    from hub.replay import service

    proposed = service.proposed_rules(text, str(args.path), settings)
    wanted = service.period(settings, time.time(), args.since, args.channel)
    summary = asyncio.run(_diff(settings, proposed, wanted, args))
    if args.format == "json":
        sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(summary)) + b"\n")
    else:
        from hub.replay.text import render

        print(render(summary))
    return 0


async def _diff(settings: HubSettings, proposed: RuleSet, wanted: Any, args: Any) -> Any:
    from hub.replay import service
    from hub.store.store import Store

    store = Store(
        settings.storage.url,
        sqlite_synchronous=settings.storage.sqlite_synchronous,
        batch_max=settings.storage.batch_max,
    )
    await store.start()
    try:
        if args.against.upper() == service.CURRENT:
            path = settings.rules.path
            current = read_rules(path) if path else service.no_rules(settings)
        else:
            current = await service.stored_revision(store, args.against)
        return await service.run_diff(
            store, settings, current, proposed, wanted, examples=max(0, min(args.examples, 10))
        )
    finally:
        await store.close()


def add_commands(commands: Any) -> None:
    rules = commands.add_parser("rules", help="routing rules tools (docs/rules.md)")
    sub = rules.add_subparsers(dest="rules_command", required=True, metavar="COMMAND")
    checking = sub.add_parser("check", help="validate a rules file; exit 1 with path:line:col")
    checking.add_argument(
        "path", nargs="?", help="rules.yaml (default: from --config, else config/rules.yaml)"
    )
    checking.add_argument("--config", help="hub.yaml: also check queue and calendar names")
    checking.set_defaults(run=check)
    testing = sub.add_parser("test", help="show the decision and trace for a sample message")
    testing.add_argument("path", nargs="?")
    testing.add_argument("--config", help="hub.yaml: queues, business hours, time zone")
    source = testing.add_mutually_exclusive_group(required=True)
    source.add_argument("--message", help="JSON input file, or - for standard input")
    source.add_argument("--sample", help="a connector sample (see --type) as the message")
    source.add_argument("--eml", help="a raw email (.eml) as the message (= --sample, email)")
    testing.add_argument("--type", default="email", help="connector type of --sample")
    testing.add_argument("--inbox", default="email", help="inbox name of --sample")
    testing.add_argument("--now", help="evaluate at this ISO time (with zone)")
    testing.set_defaults(run=test)
    diffing = sub.add_parser(
        "diff", help="replay stored messages through a proposed rules file and show what changes"
    )
    diffing.add_argument("path", help="the proposed rules.yaml")
    diffing.add_argument("--config", help="hub.yaml (default: config/hub.yaml)")
    diffing.add_argument(
        "--against",
        default="CURRENT",
        help="CURRENT (the file hub.yaml names) or a stored revision's SHA-256 (6+ hex digits)",
    )
    diffing.add_argument("--since", default="7d", help="messages received this long ago (7d)")
    diffing.add_argument(
        "--channel",
        action="append",
        help="only this channel type or instance (repeatable)",
    )
    diffing.add_argument("--format", choices=("text", "json"), default="text")
    diffing.add_argument(
        "--examples", type=int, default=3, help="example messages per change (0-10, default 3)"
    )
    diffing.set_defaults(run=diff)
