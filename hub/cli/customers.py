"""``channelhub customers import|show|merge|unmerge|recompute`` (and ``export|erase`` from
``hub.cli.privacy``): CRM data from the shell."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from hub.cli import privacy
from hub.cli.config import DEFAULT_CONFIG, load_config
from hub.customers import csvimport
from hub.errors import ConfigError, InvalidState, NotFound

ORDER = {"customers": 0, "orders": 1, "invoices": 2}


async def _with_customers(args: argparse.Namespace, work: Any) -> int:
    from hub.customers.configured import customer_service
    from hub.store.store import Store

    settings = load_config(args.config)
    store = Store(
        settings.storage.url,
        sqlite_synchronous=settings.storage.sqlite_synchronous,
        sqlite_calls=settings.storage.sqlite_calls,
        batch_max=settings.storage.batch_max,
    )
    await store.start()
    try:
        result: int = await work(customer_service(settings, store))
        return result
    finally:
        await store.close()


def import_files(args: argparse.Namespace) -> int:
    parsed: list[tuple[str, csvimport.ParsedFile]] = []
    for name in args.files:
        try:
            raw = Path(name).read_bytes()
        except OSError as exc:
            raise ConfigError([f"{name}: cannot read file: {exc.strerror}"]) from None
        try:
            parsed.append((name, csvimport.parse(raw, name)))
        except csvimport.CsvError as exc:
            raise ConfigError([str(exc)]) from None
    # customers first, so orders and invoices find them whatever the order given
    parsed.sort(key=lambda item: ORDER[item[1].kind])

    async def work(customers: Any) -> int:
        failed = False
        touched: set[str] = set()
        for name, data in parsed:
            report = await customers.import_file(data)
            print(
                f"{name}: {report.kind}: {report.created} new, {report.updated} updated, "
                f"{report.unchanged} unchanged, {report.merged} prospects merged, "
                f"{len(report.errors)} rejected"
                + (f", {len(report.notes)} noted" if report.notes else "")
            )
            for line, message in report.errors:
                print(f"{name}:{line}: {message}", file=sys.stderr)
            for line, message in report.notes:  # imported: not a failure
                print(f"{name}:{line}: note: {message}", file=sys.stderr)
            failed = failed or bool(report.errors)
            touched |= report.touched
        count = await customers.recompute(touched)
        print(f"customer values recomputed for {count} customers (the others re-ranked)")
        return 1 if failed else 0

    return asyncio.run(_with_customers(args, work))


def show(args: argparse.Namespace) -> int:
    async def work(customers: Any) -> int:
        customer_id = await customers.find(args.key)
        if customer_id is None:
            print(f"no customer matches {args.key!r}", file=sys.stderr)
            return 1
        try:
            context = await customers.context(customer_id)
        except NotFound as exc:
            print(str(exc), file=sys.stderr)
            return 1
        json.dump(context, sys.stdout, indent=2, ensure_ascii=False, default=str)
        print()
        return 0

    return asyncio.run(_with_customers(args, work))


def merge(args: argparse.Namespace) -> int:
    async def work(customers: Any) -> int:
        ids = [await customers.find(key) for key in (args.source, args.target)]
        for key, found in zip((args.source, args.target), ids, strict=True):
            if found is None:
                print(f"no customer matches {key!r}", file=sys.stderr)
                return 1
        try:
            merge_id = await customers.merge(ids[0], ids[1], actor="cli")
        except (NotFound, InvalidState) as exc:
            print(str(exc), file=sys.stderr)
            return 1
        print(f"merged {ids[0]} into {ids[1]}; undo with: channelhub customers unmerge {merge_id}")
        return 0

    return asyncio.run(_with_customers(args, work))


def unmerge(args: argparse.Namespace) -> int:
    async def work(customers: Any) -> int:
        try:
            result = await customers.unmerge(args.merge_id, actor="cli")
        except (NotFound, InvalidState) as exc:
            print(str(exc), file=sys.stderr)
            return 1
        print(f"merge {result['merge']} undone: {result['restored']} is separate again")
        return 0

    return asyncio.run(_with_customers(args, work))


def recompute(args: argparse.Namespace) -> int:
    async def work(customers: Any) -> int:
        print(f"customer values recomputed for {await customers.recompute()} customers")
        return 0

    return asyncio.run(_with_customers(args, work))


def add_commands(commands: Any) -> None:
    default_config = DEFAULT_CONFIG
    group = commands.add_parser("customers", help="customer data (docs/customers.md)")
    sub = group.add_subparsers(dest="customers_command", required=True, metavar="COMMAND")
    importing = sub.add_parser(
        "import", help="import customers, orders or invoices from CSV (kind from the header)"
    )
    importing.add_argument("files", nargs="+", metavar="FILE.csv")
    importing.add_argument("--config", default=default_config)
    importing.set_defaults(run=import_files)
    showing = sub.add_parser("show", help="print a customer's context as JSON")
    showing.add_argument("key", help="customer id or number, email address or phone number")
    showing.add_argument("--config", default=default_config)
    showing.set_defaults(run=show)
    merging = sub.add_parser("merge", help="merge SOURCE into TARGET (undoable)")
    merging.add_argument("source", help="id, number, email or phone of the record to fold in")
    merging.add_argument("target", help="id, number, email or phone of the record to keep")
    merging.add_argument("--config", default=default_config)
    merging.set_defaults(run=merge)
    undo = sub.add_parser("unmerge", help="undo a merge by the id merge printed")
    undo.add_argument("merge_id", type=int)
    undo.add_argument("--config", default=default_config)
    undo.set_defaults(run=unmerge)
    again = sub.add_parser("recompute", help="recompute ABC tiers, RFM scores, punctuality")
    again.add_argument("--config", default=default_config)
    again.set_defaults(run=recompute)
    privacy.add_customer_commands(sub)
