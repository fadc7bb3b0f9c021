"""``channelhub report day|queue|channel|agent`` and ``channelhub report conversations``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

from hub.cli.config import DEFAULT_CONFIG, load_config
from hub.errors import ConfigError
from hub.settings import HubSettings

TEXT = "text"


@contextlib.asynccontextmanager
async def _store(settings: HubSettings) -> AsyncIterator[Any]:
    from hub.store.store import Store

    store = Store(
        settings.storage.url,
        sqlite_synchronous=settings.storage.sqlite_synchronous,
        sqlite_calls=settings.storage.sqlite_calls,
        batch_max=settings.storage.batch_max,
    )
    await store.start()
    try:
        yield store
    finally:
        await store.close()


def _params(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, str]:
    params = {}
    for name in names:
        value = getattr(args, name.replace("from", "from_"), None)
        if value is not None:
            params[name] = str(value)
    return params


def _today(settings: HubSettings, timezone: str | None) -> Any:
    try:
        zone = ZoneInfo(timezone or settings.timezone)
    except (ValueError, KeyError):
        zone = ZoneInfo("UTC")
    return datetime.fromtimestamp(time.time(), UTC).astimezone(zone).date()


def _write(
    args: argparse.Namespace, produce: Callable[[IO[bytes]], Coroutine[Any, Any, None]]
) -> None:
    """Run ``produce`` into ``--output`` (written whole or not at all) or standard output."""
    if args.output in (None, "-"):
        asyncio.run(produce(sys.stdout.buffer))
        sys.stdout.flush()
        return
    target = Path(args.output)
    partial = target.with_name(target.name + ".part")
    try:
        with partial.open("wb") as handle:
            asyncio.run(produce(handle))
        partial.replace(target)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise ConfigError([f"{args.output}: cannot write: {exc.strerror}"]) from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    print(f"{args.output}: written", file=sys.stderr)


def _text_table(header: list[str], cells: list[list[Any]]) -> str:
    shown = [[("" if value is None else str(value)) for value in row] for row in cells]
    widths = [max([len(name), *(len(row[i]) for row in shown)]) for i, name in enumerate(header)]
    lines = ["  ".join(name.ljust(width) for name, width in zip(header, widths, strict=True))]
    lines += [
        "  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True))
        for row in shown
    ]
    return "\n".join(lines) + "\n"


def report(args: argparse.Namespace) -> int:
    import json

    from hub.reports import figures, service
    from hub.reports.params import BadParameter, Format, report_request

    settings = load_config(args.config)
    params = _params(args, ("from", "to", "tz"))
    if args.format != TEXT:
        params["format"] = args.format
    try:
        wanted = report_request(
            args.by,
            params,
            today=_today(settings, args.tz),
            default_timezone=settings.timezone,
        )
    except BadParameter as exc:
        print(f"channelhub report: {exc}", file=sys.stderr)
        return 1

    async def produce(out: IO[bytes]) -> None:
        async with _store(settings) as store:
            rows = await service.report_rows(store, wanted, settings)
        if args.format == TEXT:
            header, cells = figures.table(rows, wanted.by)
            out.write(_text_table(header, cells).encode())
            out.write(f"({service.NO_RATINGS})\n".encode())
        elif wanted.format is Format.JSON:
            document = service.report_document(wanted, rows)
            out.write(json.dumps(document, indent=2, ensure_ascii=False).encode() + b"\n")
        else:
            out.write(service.report_csv(wanted, rows))

    _write(args, produce)
    return 0


def conversations(args: argparse.Namespace) -> int:
    from hub.reports import service
    from hub.reports.params import BadParameter, export_request

    settings = load_config(args.config)
    params = _params(
        args,
        ("from", "to", "tz", "format", "queue", "channel", "inbox", "status", "agent"),
    )
    params.update(_params(args, ("disposition", "customer")))
    if args.messages:
        params["messages"] = "true"
    try:
        wanted = export_request(
            params, today=_today(settings, args.tz), default_timezone=settings.timezone
        )
    except BadParameter as exc:
        print(f"channelhub report conversations: {exc}", file=sys.stderr)
        return 1
    missing: list[str] = []

    async def produce(out: IO[bytes]) -> None:
        from hub.customers.configured import customer_service

        async with _store(settings) as store:
            customer_id = None
            if wanted.customer is not None:
                customer_id = await customer_service(settings, store).find(wanted.customer)
                if customer_id is None:
                    missing.append(wanted.customer)
                    return
            await store.audit(
                "conversations.exported",
                agent=args.actor,
                data={
                    "from": wanted.period.first.isoformat(),
                    "to": wanted.period.last.isoformat(),
                    "messages": wanted.messages,
                    "customer_id": customer_id,
                },
            )
            async for chunk in service.export_chunks(store, wanted, customer_id):
                out.write(chunk)

    _write(args, produce)
    if missing:
        print(f"no customer matches {missing[0]!r}", file=sys.stderr)
        return 1
    return 0


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="from_", metavar="YYYY-MM-DD", help="default: today")
    parser.add_argument("--to", metavar="YYYY-MM-DD", help="last day, inclusive (default: --from)")
    parser.add_argument("--tz", help="IANA time zone of the days (default: hub.yaml timezone)")
    parser.add_argument("--output", "-o", metavar="FILE", help="write here (default: stdout)")
    parser.add_argument("--config", default=DEFAULT_CONFIG)


def add_commands(commands: Any) -> None:
    group = commands.add_parser("report", help="figures per day, queue, channel, agent; exports")
    sub = group.add_subparsers(dest="report_command", required=True, metavar="COMMAND")
    for by in ("day", "queue", "channel", "agent"):
        parser = sub.add_parser(by, help=f"figures per {by} and day (docs/reports.md)")
        _common(parser)
        parser.add_argument("--format", choices=(TEXT, "json", "csv", "csv-de"), default=TEXT)
        parser.set_defaults(run=report, by=by)
    export = sub.add_parser("conversations", help="conversations (or messages) as CSV or JSON")
    _common(export)
    export.add_argument("--format", choices=("csv", "csv-de", "json"), default="csv")
    for name in ("queue", "channel", "inbox", "agent", "disposition"):
        export.add_argument(f"--{name}")
    export.add_argument("--status", choices=("queued", "assigned", "closed"))
    export.add_argument("--customer", help="id, customer number, email or phone")
    export.add_argument("--messages", action="store_true", help="one row per message")
    export.add_argument(
        "--actor", default="cli", help="who is exporting, for the audit log (default: cli)"
    )
    export.set_defaults(run=conversations)
