"""The retention policy (``retention:`` in hub.yaml, DSGVO Art. 5(1)(e)): data past its time goes.

Each run removes, in writer jobs of :data:`BATCH` records so live traffic never waits long:
closed conversations closed before ``conversations`` ago (messages, files, outbox entries; their
audit events keep anonymous facts), files of messages older than ``attachments``, prospects
(people the hub met, not CRM customers) without contact for ``prospects_without_contact``
(erased like ``customers erase``), audit events older than ``audit_events``, and what the rules
saw of messages decided before ``routing_records`` (the routing records ``rules diff`` replays;
those of removed messages go with them). It reports what it removed (the log, a
``retention.applied`` audit event, the caller).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.errors import InvalidState, NotFound
from hub.privacy.erase import (
    anonymise_events,
    compact,
    drop_unused_blobs,
    erase_in,
    remove_messages,
)
from hub.privacy.person import chunks
from hub.settings import RetentionSettings
from hub.store.audit import event_row
from hub.store.blobs import BlobStore
from hub.store.schema import (
    attachments,
    conversations,
    customers,
    events,
    messages,
    routing_records,
)
from hub.store.store import Store

log = logging.getLogger(__name__)
BATCH = 200
ACTOR = "retention"


@dataclass(frozen=True, slots=True)
class Cutoffs:
    """Records older than these moments (epoch seconds) are due; None: kept for ever."""

    conversations: float | None
    attachments: float | None
    prospects: float | None
    audit_events: float | None
    routing_records: float | None = None


def cutoffs(policy: RetentionSettings, now: float) -> Cutoffs:
    def before(keep: float | None) -> float | None:
        return None if keep is None else now - keep

    return Cutoffs(
        before(policy.conversations),
        before(policy.attachments),
        before(policy.prospects_without_contact),
        before(policy.audit_events),
        before(policy.routing_records),
    )


@dataclass(slots=True)
class RetentionReport:
    """What a run removed (or, for a dry run, would remove)."""

    conversations: int = 0
    messages: int = 0
    attachments: int = 0
    prospects: int = 0
    audit_events: int = 0
    routing_records: int = 0  # by their own age (those of removed messages go uncounted)
    events_anonymised: int = 0
    blobs_removed: int = 0
    dry_run: bool = False

    def counts(self) -> dict[str, Any]:
        return asdict(self)


def _due_conversations(cutoff: float) -> Any:
    return and_(conversations.c.status == "closed", conversations.c.closed_at < cutoff)


def _due_attachments(cutoff: float) -> Any:
    return (
        select(attachments.c.id)
        .join(messages, messages.c.id == attachments.c.message_id)
        .where(messages.c.created_at < cutoff)
    )


def _due_prospects(cutoff: float) -> Any:
    """Prospects created before the cutoff with no conversation touched since."""
    recent = (
        select(conversations.c.id)
        .where(
            and_(
                conversations.c.customer_id == customers.c.id,
                or_(conversations.c.updated_at >= cutoff, conversations.c.status != "closed"),
            )
        )
        .exists()
    )
    return select(customers.c.id).where(
        and_(customers.c.kind == "prospect", customers.c.created_at < cutoff, ~recent)
    )


async def _count(connection: AsyncConnection, query: Any) -> int:
    return int(
        (await connection.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
    )


async def preview(store: Store, policy: RetentionSettings, now: float) -> RetentionReport:
    """What a run at ``now`` would remove, changing nothing."""
    due = cutoffs(policy, now)
    report = RetentionReport(dry_run=True)
    async with store.read() as connection:
        if due.conversations is not None:
            query = select(conversations.c.id).where(_due_conversations(due.conversations))
            report.conversations = await _count(connection, query)
            report.messages = await _count(
                connection,
                select(messages.c.id)
                .join(conversations, conversations.c.id == messages.c.conversation_id)
                .where(_due_conversations(due.conversations)),
            )
        if due.attachments is not None:
            report.attachments = await _count(connection, _due_attachments(due.attachments))
        if due.prospects is not None:
            report.prospects = await _count(connection, _due_prospects(due.prospects))
        if due.audit_events is not None:
            report.audit_events = await _count(
                connection, select(events.c.seq).where(events.c.at < due.audit_events)
            )
        if due.routing_records is not None:
            report.routing_records = await _count(
                connection,
                select(routing_records.c.message_id).where(
                    routing_records.c.decided_at < due.routing_records
                ),
            )
    return report


Found = tuple[dict[str, int], set[str]]  # counts of one writer job, blob refs its files used


async def _until_done(
    store: Store,
    job: Callable[[AsyncConnection], Awaitable[Found]],
    report: RetentionReport,
    refs: set[str],
) -> None:
    """Run ``job`` as writer jobs until one finds nothing to do, adding up what each removed
    once it is committed (the writer may run a job again after a neighbour failed)."""
    while True:
        counts, used = await store.writer.call(job)
        if not any(counts.values()):
            return
        for name, value in counts.items():
            setattr(report, name, getattr(report, name) + value)
        refs.update(used)
        await asyncio.sleep(0)  # let other work in between


async def apply_retention(
    store: Store, blobs: BlobStore, policy: RetentionSettings, now: float
) -> RetentionReport:
    """Remove what is due at ``now`` (see the module docstring); what was removed."""
    due = cutoffs(policy, now)
    report = RetentionReport()
    refs: set[str] = set()
    if due.conversations is not None:
        await _until_done(store, partial(_conversations_job, due.conversations), report, refs)
    if due.attachments is not None:
        await _until_done(store, partial(_attachments_job, due.attachments), report, refs)
    if due.prospects is not None:
        await _erase_prospects(store, due.prospects, now, report, refs)
    if due.audit_events is not None:
        await _until_done(store, partial(_events_job, due.audit_events), report, refs)
    if due.routing_records is not None:
        await _until_done(store, partial(_records_job, due.routing_records), report, refs)
    report.blobs_removed = await drop_unused_blobs(store, blobs, refs)
    counts = report.counts()
    del counts["dry_run"]

    async def record(connection: AsyncConnection) -> None:
        await connection.execute(
            events.insert(), event_row(now, "retention.applied", agent=ACTOR, data=counts)
        )

    await store.writer.call(record)
    if any(counts.values()):
        await compact(store)
    log.info("retention: removed %s", ", ".join(f"{k} {v}" for k, v in counts.items()))
    return report


async def _conversations_job(cutoff: float, connection: AsyncConnection) -> Found:
    """One batch of closed conversations closed before ``cutoff``: their messages, files and
    outbox entries go, their audit events are anonymised."""
    ids = list(
        (
            await connection.execute(
                select(conversations.c.id).where(_due_conversations(cutoff)).limit(BATCH)
            )
        )
        .scalars()
        .all()
    )
    if not ids:
        return {}, set()
    message_ids = list(
        (await connection.execute(select(messages.c.id).where(messages.c.conversation_id.in_(ids))))
        .scalars()
        .all()
    )
    about = list(
        (await connection.execute(select(events).where(events.c.conversation_id.in_(ids)))).all()
    )
    for part in chunks(message_ids):
        about += (
            await connection.execute(
                select(events).where(
                    and_(events.c.message_id.in_(part), events.c.conversation_id.is_(None))
                )
            )
        ).all()
    files, used = await remove_messages(connection, message_ids)
    await connection.execute(delete(conversations).where(conversations.c.id.in_(ids)))
    anonymised = await anonymise_events(connection, about)
    counts = {
        "conversations": len(ids),
        "messages": len(message_ids),
        "attachments": files,
        "events_anonymised": anonymised,
    }
    return counts, used


async def _attachments_job(cutoff: float, connection: AsyncConnection) -> Found:
    """One batch of files of messages older than ``cutoff``."""
    rows = (
        await connection.execute(
            select(attachments.c.id, attachments.c.blob_ref)
            .where(attachments.c.id.in_(_due_attachments(cutoff).scalar_subquery()))
            .limit(BATCH)
        )
    ).all()
    if not rows:
        return {}, set()
    await connection.execute(
        delete(attachments).where(attachments.c.id.in_([row.id for row in rows]))
    )
    return {"attachments": len(rows)}, {row.blob_ref for row in rows}


async def _erase_prospects(
    store: Store, cutoff: float, now: float, report: RetentionReport, refs: set[str]
) -> None:
    """Erase each prospect without contact since ``cutoff``, one writer job each."""
    async with store.read() as connection:
        prospects = list((await connection.execute(_due_prospects(cutoff))).scalars())
    for prospect in prospects:

        async def erase_job(connection: AsyncConnection, prospect: str = prospect) -> Any:
            return await erase_in(connection, prospect, actor=ACTOR, now=now, close_open=False)

        try:
            erased, used = await store.writer.call(erase_job)
        except (NotFound, InvalidState):  # merged, erased or written to meanwhile
            continue
        report.prospects += 1
        report.messages += erased.messages
        report.attachments += erased.attachments
        report.events_anonymised += erased.events_anonymised
        refs.update(used)


async def _events_job(cutoff: float, connection: AsyncConnection) -> Found:
    """One batch of audit events older than ``cutoff``."""
    seqs = list(
        (
            await connection.execute(
                select(events.c.seq).where(events.c.at < cutoff).limit(BATCH * 10)
            )
        )
        .scalars()
        .all()
    )
    if seqs:
        await connection.execute(delete(events).where(events.c.seq.in_(seqs)))
    return {"audit_events": len(seqs)}, set()


async def _records_job(cutoff: float, connection: AsyncConnection) -> Found:
    """One batch of routing records (what the rules saw) decided before ``cutoff``."""
    ids = list(
        (
            await connection.execute(
                select(routing_records.c.message_id)
                .where(routing_records.c.decided_at < cutoff)
                .limit(BATCH * 10)
            )
        )
        .scalars()
        .all()
    )
    if ids:
        await connection.execute(
            delete(routing_records).where(routing_records.c.message_id.in_(ids))
        )
    return {"routing_records": len(ids)}, set()
