"""``channelhub customers export|erase`` and ``channelhub retention run``: data-protection
requests from the shell (docs/privacy.md)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from hub.cli.config import DEFAULT_CONFIG, load_config
from hub.errors import ConfigError, InvalidState, NotFound
from hub.settings import HubSettings


def _actor(args: argparse.Namespace) -> str:
    if args.actor:
        return str(args.actor)
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


async def _with_store(settings: HubSettings, work: Callable[[Any, Any], Awaitable[int]]) -> int:
    from hub.store.blobs import BlobStore
    from hub.store.store import Store

    store = Store(
        settings.storage.url,
        sqlite_synchronous=settings.storage.sqlite_synchronous,
        sqlite_calls=settings.storage.sqlite_calls,
        batch_max=settings.storage.batch_max,
    )
    await store.start()
    try:
        return await work(store, BlobStore(settings.storage.blobs))
    finally:
        await store.close()


async def _find(settings: HubSettings, store: Any, key: str) -> str | None:
    from hub.customers.configured import customer_service

    found: str | None = await customer_service(settings, store).find(key)
    if found is None:
        print(f"no customer matches {key!r}", file=sys.stderr)
    return found


def export_customer(args: argparse.Namespace) -> int:
    from hub.privacy import export

    settings = load_config(args.config)

    async def work(store: Any, blobs: Any) -> int:
        customer_id = await _find(settings, store, args.key)
        if customer_id is None:
            return 1
        document, files = await export.collect(store, customer_id, actor=_actor(args))
        target = Path(args.output or f"customer-{customer_id}.zip")
        try:
            missing = await asyncio.to_thread(export.write_zip_file, document, files, blobs, target)
        except OSError as exc:
            raise ConfigError([f"{target}: cannot write: {exc.strerror}"]) from None
        print(
            f"{target}: {len(document['conversations'])} conversations, "
            f"{sum(len(c['messages']) for c in document['conversations'])} messages, "
            f"{len(files) - len(missing)} files, {len(document['audit'])} audit entries"
        )
        for name in missing:
            print(f"{name}: the file is gone from the blob store", file=sys.stderr)
        return 0

    return asyncio.run(_with_store(settings, work))


def erase_customer(args: argparse.Namespace) -> int:
    from hub.privacy import erase

    settings = load_config(args.config)

    async def work(store: Any, blobs: Any) -> int:
        customer_id = await _find(settings, store, args.key)
        if customer_id is None:
            return 1
        if not args.yes:
            if not sys.stdin.isatty():
                print(
                    "erasure cannot be undone: pass --yes, or run on a terminal to confirm",
                    file=sys.stderr,
                )
                return 2
            typed = await asyncio.to_thread(
                input,
                f"Erase customer {customer_id} and everything about them for good? "
                "Type the id to confirm: ",
            )
            if typed.strip() != customer_id:
                print("not confirmed; nothing was erased", file=sys.stderr)
                return 2
        try:
            report = await erase.erase_customer(
                store,
                blobs,
                customer_id,
                actor=_actor(args),
                close_open=args.close_open,
                vacuum=args.vacuum,
            )
        except (NotFound, InvalidState) as exc:
            print(str(exc), file=sys.stderr)
            return 1
        json.dump({"erased": report.counts()}, sys.stdout, indent=2)
        print()
        return 0

    return asyncio.run(_with_store(settings, work))


def run_retention(args: argparse.Namespace) -> int:
    import time

    from hub.privacy import retention

    settings = load_config(args.config)
    if not settings.retention.configured:
        print("no retention policy is configured (retention: in hub.yaml)", file=sys.stderr)
        return 1

    async def work(store: Any, blobs: Any) -> int:
        now = time.time()
        if args.dry_run:
            report = await retention.preview(store, settings.retention, now)
        else:
            report = await retention.apply_retention(store, blobs, settings.retention, now)
        json.dump({"retention": report.counts()}, sys.stdout, indent=2)
        print()
        return 0

    return asyncio.run(_with_store(settings, work))


def add_customer_commands(sub: Any) -> None:
    """``customers export`` and ``customers erase`` (called by ``hub.cli.customers``)."""
    exporting = sub.add_parser(
        "export", help="everything held about a person, as a zip (JSON and files)"
    )
    exporting.add_argument("key", help="customer id or number, email address or phone number")
    exporting.add_argument("--output", "-o", metavar="FILE.zip", help="default customer-ID.zip")
    exporting.add_argument("--actor", help="who asks, for the audit log (default cli:USER)")
    exporting.add_argument("--config", default=DEFAULT_CONFIG)
    exporting.set_defaults(run=export_customer)
    erasing = sub.add_parser("erase", help="erase a person's data everywhere (cannot be undone)")
    erasing.add_argument("key", help="customer id or number, email address or phone number")
    erasing.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    erasing.add_argument(
        "--close-open", action="store_true", help="also remove their open conversations"
    )
    erasing.add_argument(
        "--vacuum",
        action="store_true",
        help="SQLite: rebuild the file too (for data written before this version)",
    )
    erasing.add_argument("--actor", help="who erases, for the audit log (default cli:USER)")
    erasing.add_argument("--config", default=DEFAULT_CONFIG)
    erasing.set_defaults(run=erase_customer)


def add_commands(commands: Any) -> None:
    group = commands.add_parser("retention", help="the retention policy of hub.yaml")
    sub = group.add_subparsers(dest="retention_command", required=True, metavar="COMMAND")
    running = sub.add_parser("run", help="remove what the policy says is due now")
    running.add_argument("--dry-run", action="store_true", help="only count what is due")
    running.add_argument("--config", default=DEFAULT_CONFIG)
    running.set_defaults(run=run_retention)
