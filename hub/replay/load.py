"""Reading stored inbound messages for a replay, page by page, with what the rules saw of them.

A message with a routing record (``hub.ingest.record``) is replayed with the customer's facts
as they were, at the moment the rules decided. One stored before recording existed (or whose
record the retention policy removed) is replayed with its envelope only: an unknown customer,
at the time it arrived, counted as started a conversation when it is the first inbound message
of its conversation the replay meets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from sqlalchemy import and_, case, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.envelope import decode_envelope
from hub.ingest.record import RoutingRecord, decode
from hub.replay.diff import Replayable
from hub.store.schema import messages, routing_records
from hub.store.store import Store
from rules.context import CustomerFacts

PAGE = 2_000
_UNKNOWN = CustomerFacts()


@dataclass(frozen=True, slots=True)
class Period:
    """Which stored messages to replay: received in [since, until], on these channels or
    inboxes (empty: all)."""

    since: float
    until: float
    channels: Sequence[str] = ()


@dataclass(slots=True)
class Reader:
    """Pages of :class:`Replayable` messages, oldest first."""

    period: Period
    page: int = PAGE
    _seen_conversations: set[str] = field(default_factory=set)

    def query(self) -> Any:
        period = self.period
        wanted = [
            messages.c.direction == "inbound",
            messages.c.kind == "message",
            messages.c.created_at >= period.since,
            messages.c.created_at <= period.until,
        ]
        if period.channels:
            names = list(period.channels)
            wanted.append(or_(messages.c.channel.in_(names), messages.c.inbox.in_(names)))
        return (
            select(
                messages.c.id,
                messages.c.conversation_id,
                messages.c.channel,
                messages.c.inbox,
                messages.c.subject,
                messages.c.text,
                messages.c.created_at,
                routing_records.c.data,
                # the envelope only where no record says what the rules saw
                case(
                    (routing_records.c.message_id.is_(None), messages.c.envelope), else_=None
                ).label("envelope"),
            )
            .select_from(
                messages.outerjoin(routing_records, routing_records.c.message_id == messages.c.id)
            )
            .where(and_(*wanted))
            .order_by(messages.c.created_at, messages.c.id)
        )

    async def pages(self, store: Store) -> AsyncIterator[list[Replayable]]:
        """Every message of the period, a page at a time, from one query whose rows are
        fetched as they are needed (one sort of the period's messages, not one per page)."""
        async with store.read() as connection:
            async for page in self._stream(connection):
                yield page

    async def read_all(self, connection: AsyncConnection) -> list[Replayable]:
        """Every message of the period over one connection (tests, benchmarks)."""
        found: list[Replayable] = []
        async for page in self._stream(connection):
            found += page
        return found

    async def _stream(self, connection: AsyncConnection) -> AsyncIterator[list[Replayable]]:
        result = await connection.stream(self.query())
        try:
            async for rows in result.partitions(self.page):
                yield [self.replayable(row) for row in rows]
        finally:
            await result.close()

    def replayable(self, row: Any) -> Replayable:
        if row.data is not None:
            try:
                return from_record(row, decode(row.data))
            except msgspec.DecodeError:
                pass  # not a record this version reads: the envelope is still there
        first = row.conversation_id not in self._seen_conversations
        self._seen_conversations.add(row.conversation_id)
        return from_envelope(row, first)


def from_record(row: Any, record: RoutingRecord) -> Replayable:
    """A message as the rules saw it, from its row and routing record."""
    return Replayable(
        row.id,
        row.conversation_id,
        row.channel,
        row.inbox,
        row.subject or "",
        row.text,
        record.sender,
        record.to,
        record.language,
        record.attachments,
        record.received_at,
        record.is_reply,
        record.auto_submitted,
        record.customer,
        record.decided_at,
        record.created,
        record.decision,
        True,
    )


def from_envelope(row: Any, first: bool) -> Replayable:
    """A message stored before recording: its envelope, an unknown customer, its arrival."""
    sender = ""
    to: list[str] = []
    language = ""
    attachments: list[str] = []
    received_at = row.created_at
    is_reply = auto_submitted = False
    if row.envelope:
        try:
            envelope = decode_envelope(row.envelope)
        except (msgspec.DecodeError, msgspec.ValidationError):
            envelope = None
        if envelope is not None:
            thread = envelope.thread
            sender = envelope.sender.address
            to = [recipient.address for recipient in envelope.recipients]
            language = envelope.language or ""
            attachments = [attachment.name for attachment in envelope.attachments]
            received_at = envelope.received_at or row.created_at
            is_reply = bool(thread.in_reply_to or thread.references)
            auto_submitted = envelope.auto_submitted
    return Replayable(
        row.id,
        row.conversation_id,
        row.channel,
        row.inbox,
        row.subject or "",
        row.text,
        sender,
        to,
        language,
        attachments,
        received_at,
        is_reply,
        auto_submitted,
        _UNKNOWN,
        row.created_at,
        first,
        None,
        False,
    )
