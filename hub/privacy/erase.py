"""Erasing a person (DSGVO Art. 17): their records go, the audit log keeps anonymous facts.

One writer transaction removes the customer record and the records merged into it, their
identities, conversations, messages, attachments, outbox entries, unpublished bus events,
routing records (what the rules saw), orders, invoices, figures and opt-outs, strips claims on
them from other records, and reduces every audit event about them to
:func:`hub.privacy.scrub.anonymous`; it records ``customer.erased`` with who did it. Files no
other record uses are then deleted from the blob store. On SQLite every connection runs with
``secure_delete`` (freed space is zeroed) and the write-ahead log is truncated afterwards, so
the database file holds no copy (``vacuum`` also rebuilds a file written before that pragma).
Nothing here can be undone.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import bindparam, delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.errors import InvalidState
from hub.privacy.person import (
    address_filter,
    chunks,
    claimants,
    events_about,
    find_person,
)
from hub.privacy.scrub import anonymous, without_claims
from hub.store.audit import event_row
from hub.store.blobs import BlobStore
from hub.store.schema import (
    attachments,
    conversations,
    customer_notes,
    customer_stats,
    customers,
    event_outbox,
    events,
    identities,
    invoices,
    messages,
    opt_outs,
    orders,
    outbox,
    routing_records,
)
from hub.store.store import Store

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Erasure:
    """What one erasure removed (counts only: the report itself names nobody)."""

    customer_id: str
    records: int = 0
    identities: int = 0
    conversations: int = 0
    messages: int = 0
    attachments: int = 0
    orders: int = 0
    invoices: int = 0
    opt_outs: int = 0
    routing_records: int = 0  # beyond those of their messages (counted with the messages)
    events_anonymised: int = 0
    claims_removed: int = 0
    blobs_removed: int = 0

    def counts(self) -> dict[str, Any]:
        return asdict(self)


async def remove_messages(
    connection: AsyncConnection, message_ids: Sequence[str]
) -> tuple[int, set[str]]:
    """Delete messages with their outbox entries, attachments and routing records; the number
    of attachments and the blob references they used."""
    removed = 0
    refs: set[str] = set()
    for part in chunks(message_ids):
        refs |= set(
            (
                await connection.execute(
                    select(attachments.c.blob_ref).where(attachments.c.message_id.in_(part))
                )
            )
            .scalars()
            .all()
        )
        await connection.execute(delete(outbox).where(outbox.c.message_id.in_(part)))
        await connection.execute(
            delete(routing_records).where(routing_records.c.message_id.in_(part))
        )
        result = await connection.execute(
            delete(attachments).where(attachments.c.message_id.in_(part))
        )
        removed += int(result.rowcount or 0)
        await connection.execute(delete(messages).where(messages.c.id.in_(part)))
    return removed, refs


async def anonymise_events(connection: AsyncConnection, rows: Sequence[Any]) -> int:
    """Reduce each event row's data to its anonymous facts; how many changed."""
    changes = [
        {"wanted": row.seq, "anonymous": anonymous(row.kind, row.data)}
        for row in rows
        if row.data != anonymous(row.kind, row.data)
    ]
    if changes:
        await connection.execute(
            update(events)
            .where(events.c.seq == bindparam("wanted"))
            .values(data=bindparam("anonymous")),
            changes,
        )
    return len(changes)


async def erase_in(
    connection: AsyncConnection,
    customer_id: str,
    *,
    actor: str,
    now: float,
    close_open: bool,
) -> tuple[Erasure, set[str]]:
    """The erasure inside a writer transaction: what it removed and the blobs its files used
    (delete those no other record uses after the commit: :func:`drop_unused_blobs`)."""
    person = await find_person(connection, customer_id)
    if person.open_conversations and not close_open:
        raise InvalidState(
            f"customer {customer_id} has {len(person.open_conversations)} open conversations "
            f"({', '.join(person.open_conversations[:5])}); close them first or erase with "
            "close_open (--close-open)"
        )
    report = Erasure(customer_id)
    about = await events_about(connection, person)
    others = await claimants(connection, person)
    report.attachments, refs = await remove_messages(connection, person.messages)
    report.messages = len(person.messages)
    for part in chunks(person.conversations):
        # unpublished bus events carry the messages' text too (a Redis outage keeps them)
        await connection.execute(
            delete(event_outbox).where(event_outbox.c.conversation_id.in_(part))
        )
        await connection.execute(delete(conversations).where(conversations.c.id.in_(part)))
    report.conversations = len(person.conversations)
    ids = person.ids
    for table, name in ((orders, "orders"), (invoices, "invoices"), (identities, "identities")):
        result = await connection.execute(delete(table).where(table.c.customer_id.in_(ids)))
        setattr(report, name, int(result.rowcount or 0))
    await connection.execute(delete(customer_stats).where(customer_stats.c.customer_id.in_(ids)))
    # what the rules saw of them in messages stored in other people's conversations too
    result = await connection.execute(
        delete(routing_records).where(routing_records.c.customer_id.in_(ids))
    )
    report.routing_records = int(result.rowcount or 0)
    await connection.execute(delete(customer_notes).where(customer_notes.c.customer_id.in_(ids)))
    if person.addresses:
        result = await connection.execute(
            delete(opt_outs).where(
                address_filter(person.addresses, opt_outs.c.kind, opt_outs.c.address)
            )
        )
        report.opt_outs = int(result.rowcount or 0)
    for other in others:
        attributes = without_claims(other.attributes, ids, person.addresses)
        if attributes is not None:
            await connection.execute(
                update(customers).where(customers.c.id == other.id).values(attributes=attributes)
            )
            report.claims_removed += 1
    report.events_anonymised = await anonymise_events(connection, about)
    result = await connection.execute(delete(customers).where(customers.c.id.in_(ids)))
    report.records = int(result.rowcount or 0)
    await connection.execute(
        events.insert(),
        event_row(
            now,
            "customer.erased",
            agent=actor,
            data={"customer_id": customer_id, "merged": ids[1:], **_written(report)},
        ),
    )
    return report, refs


def _counts(report: Erasure) -> dict[str, int]:
    return {k: v for k, v in report.counts().items() if isinstance(v, int)}


def _written(report: Erasure) -> dict[str, int]:
    """The counts the audit event records (blobs are deleted after it is written)."""
    return {k: v for k, v in _counts(report).items() if k != "blobs_removed"}


async def unused_blobs(connection: AsyncConnection, refs: Collection[str]) -> list[str]:
    """The blob references among ``refs`` that no attachment row uses any more."""
    if not refs:
        return []
    wanted = sorted(refs)
    used: set[str] = set()
    for part in chunks(wanted):
        used |= set(
            (
                await connection.execute(
                    select(attachments.c.blob_ref)
                    .where(attachments.c.blob_ref.in_(part))
                    .group_by(attachments.c.blob_ref)
                    .having(func.count() > 0)
                )
            )
            .scalars()
            .all()
        )
    return [ref for ref in wanted if ref not in used]


async def drop_unused_blobs(store: Store, blobs: BlobStore, refs: Collection[str]) -> int:
    """Delete the files of ``refs`` that no record uses; how many were deleted. Checked and
    deleted inside one writer job, so no attachment row can be written in between."""

    async def run(connection: AsyncConnection) -> int:
        count = 0
        for ref in await unused_blobs(connection, refs):
            try:
                if await blobs.remove(ref):
                    count += 1
            except (OSError, ValueError) as exc:
                log.error("could not delete blob %s: %s", ref, exc)
        return count

    removed: int = await store.writer.call(run)
    return removed


async def compact(store: Store, *, vacuum: bool = False) -> None:
    """After removing personal data from SQLite: move every page into the database file and
    empty the write-ahead log (old page versions live there until a checkpoint); ``vacuum``
    also rebuilds the file, for databases written before ``secure_delete`` was on. The
    full-text indexes (migration 0012) are merged, which drops the erased words their segments
    still held, or rebuilt after a ``VACUUM`` (it may renumber the rowids they point at). On
    PostgreSQL nothing (old row versions wait for autovacuum; see docs/privacy.md)."""
    if store.engine.dialect.name != "sqlite":
        return
    async with store.engine.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        if vacuum:
            await autocommit.execute(text("VACUUM"))
        command = "rebuild" if vacuum else "optimize"
        for index in ("messages_fts", "customers_fts"):  # FTS5 commands take the index's name
            await autocommit.execute(
                text(f"INSERT INTO {index}({index}) VALUES (:command)"),  # noqa: S608
                {"command": command},
            )
        await autocommit.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))


async def erase_customer(
    store: Store,
    blobs: BlobStore,
    customer_id: str,
    *,
    actor: str,
    close_open: bool = False,
    vacuum: bool = False,
) -> Erasure:
    """Erase the person behind ``customer_id`` everywhere (see the module docstring).

    NotFound for no such customer; InvalidState while they have open conversations, unless
    ``close_open`` (they are then removed too: a running hub's agents holding them get an
    error at their next action on them)."""

    async def run(connection: AsyncConnection) -> tuple[Erasure, set[str]]:
        return await erase_in(
            connection, customer_id, actor=actor, now=store.clock(), close_open=close_open
        )

    report, refs = await store.writer.call(run)
    report.blobs_removed = await drop_unused_blobs(store, blobs, refs)
    await compact(store, vacuum=vacuum)
    log.info("customer %s erased by %s: %s", customer_id, actor, _counts(report))
    return report
