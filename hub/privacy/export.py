"""A person's data as one zip: ``customer.json`` and their files (DSGVO Art. 15, docs/privacy.md).

:func:`dossier` reads (one connection, one snapshot of each table); :func:`write_zip` is plain
file work, run in a thread by the callers.
"""

from __future__ import annotations

import contextlib
import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.ingest.record import decode, readable
from hub.privacy.person import (
    Person,
    address_filter,
    chunks,
    claimants,
    events_about,
    find_person,
)
from hub.store.blobs import BlobStore
from hub.store.schema import (
    conversations,
    customer_notes,
    customer_stats,
    customers,
    identities,
    invoices,
    messages,
    opt_outs,
    orders,
    routing_records,
)
from hub.store.store import Store

FORMAT = "channelhub-customer-export/1"
DOCUMENT = "customer.json"
_TIMES = {"at", "loaded_at"}


def _readable(row: dict[str, Any]) -> dict[str, Any]:
    """A row with its epoch-second times as ISO 8601 UTC (people read this file)."""
    shown = {}
    for key, value in row.items():
        if isinstance(value, int | float) and (key.endswith("_at") or key in _TIMES):
            value = datetime.fromtimestamp(value, UTC).isoformat()
        shown[key] = value
    return shown


def _rows(result: Any) -> list[dict[str, Any]]:
    return [_readable(dict(row._mapping)) for row in result]


async def _routing_records(connection: AsyncConnection, person: Person) -> list[dict[str, Any]]:
    """What the rules saw of the person's messages (and of their messages in others'
    conversations), decoded, oldest first."""
    rows: dict[str, Any] = {}
    for part in chunks(person.messages):
        for row in await connection.execute(
            select(routing_records).where(routing_records.c.message_id.in_(part))
        ):
            rows[row.message_id] = row
    for row in await connection.execute(
        select(routing_records).where(routing_records.c.customer_id.in_(person.ids))
    ):
        rows[row.message_id] = row
    found = []
    for row in sorted(rows.values(), key=lambda row: (row.decided_at, row.message_id)):
        try:
            seen: dict[str, Any] = readable(decode(row.data))
        except msgspec.DecodeError:
            seen = {"undecodable": row.data.hex()}
        found.append(
            _readable({"message_id": row.message_id, "customer_id": row.customer_id, **seen})
        )
    return found


def file_name(attachment: dict[str, Any]) -> str:
    """Where an attachment goes in the zip: its id and a tame version of its name."""
    name = "".join(ch for ch in str(attachment["name"]) if ch.isalnum() or ch in "._- ")
    name = name.strip(" .")[:100] or "file"
    return f"files/{attachment['id']}-{name}"


async def dossier(connection: AsyncConnection, person: Person, now: float) -> dict[str, Any]:
    """Everything held about the person, as one JSON-ready document."""
    ids = person.ids
    records = _rows(await connection.execute(select(customers).where(customers.c.id.in_(ids))))
    main = next(record for record in records if record["id"] == person.customer_id)
    conversation_rows = await _conversations(connection, person)
    opted = await _opt_outs(connection, person)
    audit = [_readable(_event(row)) for row in await events_about(connection, person)]
    claims = [row.id for row in await claimants(connection, person)]
    return {
        "format": FORMAT,
        "exported_at": datetime.fromtimestamp(now, UTC).isoformat(),
        "customer": main,
        "merged_records": [record for record in records if record["id"] != person.customer_id],
        **await _customer_data(connection, ids),
        "opt_outs": opted,
        "conversations": conversation_rows,
        "routing_records": await _routing_records(connection, person),
        "audit": audit,
        "claimed_by": claims,
    }


async def _conversations(connection: AsyncConnection, person: Person) -> list[dict[str, Any]]:
    """The person's conversations, oldest first, each with its messages and their files."""
    by_conversation = await _messages(connection, person)
    conversation_rows: list[dict[str, Any]] = []
    for part in chunks(person.conversations):
        conversation_rows += _rows(
            await connection.execute(
                select(conversations)
                .where(conversations.c.id.in_(part))
                .order_by(conversations.c.created_at, conversations.c.id)
            )
        )
    for conversation in conversation_rows:
        conversation["messages"] = by_conversation.get(conversation["id"], [])
    return conversation_rows


async def _messages(connection: AsyncConnection, person: Person) -> dict[str, list[dict[str, Any]]]:
    """The person's messages by conversation, in order, envelopes decoded, files listed."""
    message_rows: list[dict[str, Any]] = []
    for part in chunks(person.messages):
        message_rows += _rows(
            await connection.execute(
                select(messages)
                .where(messages.c.id.in_(part))
                .order_by(messages.c.created_at, messages.c.id)
            )
        )
    files_by_message: dict[str, list[dict[str, Any]]] = {}
    for item in person.files:
        listed = {k: v for k, v in item.items() if k not in {"message_id", "blob_ref"}}
        files_by_message.setdefault(item["message_id"], []).append(
            {**listed, "file": file_name(item)}
        )
    by_conversation: dict[str, list[dict[str, Any]]] = {}
    for message in message_rows:
        if message.get("envelope"):
            with contextlib.suppress(msgspec.DecodeError):
                message["envelope"] = msgspec.json.decode(message["envelope"])
        message["attachments"] = files_by_message.get(message["id"], [])
        by_conversation.setdefault(message["conversation_id"], []).append(message)
    return by_conversation


async def _opt_outs(connection: AsyncConnection, person: Person) -> list[dict[str, Any]]:
    if not person.addresses:
        return []
    return _rows(
        await connection.execute(
            select(opt_outs).where(
                address_filter(person.addresses, opt_outs.c.kind, opt_outs.c.address)
            )
        )
    )


def _event(row: Any) -> dict[str, Any]:
    return {
        "seq": row.seq,
        "at": row.at,
        "kind": row.kind,
        "agent": row.agent,
        "conversation_id": row.conversation_id,
        "message_id": row.message_id,
        "data": row.data,
    }


async def _customer_data(connection: AsyncConnection, ids: list[str]) -> dict[str, Any]:
    """Identities, computed value, orders and invoices of the person's records."""
    return {
        "identities": _rows(
            await connection.execute(
                select(identities)
                .where(identities.c.customer_id.in_(ids))
                .order_by(identities.c.created_at)
            )
        ),
        "value": next(
            iter(
                _rows(
                    await connection.execute(
                        select(customer_stats).where(customer_stats.c.customer_id.in_(ids))
                    )
                )
            ),
            None,
        ),
        "orders": _rows(
            await connection.execute(
                select(orders).where(orders.c.customer_id.in_(ids)).order_by(orders.c.ordered_at)
            )
        ),
        "invoices": _rows(
            await connection.execute(
                select(invoices).where(invoices.c.customer_id.in_(ids)).order_by(invoices.c.due_at)
            )
        ),
        "notes": _rows(
            await connection.execute(
                select(customer_notes)
                .where(customer_notes.c.customer_id.in_(ids))
                .order_by(customer_notes.c.created_at)
            )
        ),
    }


def write_zip(
    document: dict[str, Any], files: list[dict[str, Any]], blobs: BlobStore, out: IO[bytes]
) -> list[str]:
    """Write the zip to ``out``; returns the files that were gone from the blob store (listed
    in the document as ``missing``, so the zip says so too). Blocking: run it in a thread."""
    missing: list[str] = []
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for item in files:
            path = blobs.path(str(item["blob_ref"]))
            target = file_name(item)
            try:
                archive.write(path, target)
            except (FileNotFoundError, ValueError):
                missing.append(target)
        if missing:
            document = {**document, "missing_files": missing}
        archive.writestr(DOCUMENT, json.dumps(document, indent=2, ensure_ascii=False, default=str))
    return missing


def write_zip_file(
    document: dict[str, Any], files: list[dict[str, Any]], blobs: BlobStore, path: Path
) -> list[str]:
    """:func:`write_zip` to ``path``, written whole or not at all."""
    partial = path.with_name(path.name + ".part")
    try:
        with partial.open("wb") as handle:
            missing = write_zip(document, files, blobs, handle)
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return missing


async def collect(
    store: Store, customer_id: str, *, actor: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The person's document and files, after recording ``customer.exported`` (who, whom).
    NotFound if there is no such customer."""
    async with store.read() as connection:
        person = await find_person(connection, customer_id)
    await store.audit("customer.exported", agent=actor, data={"customer_id": customer_id})
    async with store.read() as connection:
        person = await find_person(connection, customer_id)
        document = await dossier(connection, person, store.clock())
    return document, person.files
