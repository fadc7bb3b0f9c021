"""What reports and exports read from the store (the figures themselves are in ``figures``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.reports.figures import ConversationInfo, Event, Period
from hub.reports.params import ExportRequest
from hub.store.schema import attachments, conversations, customers, events, messages

#: how far before the first day conversations are replayed: an SLA that runs out in the period
#: belongs to a conversation started at most this long before it
LOOKBACK = 7 * 86_400.0
PAGE = 2_000

_REPORTED = (
    "conversation.created",
    "conversation.reopened",
    "message.received",
    "reply.queued",
    "auto_reply.queued",
    "offer.sent",
    "offer.declined",
    "offer.timeout",
    "conversation.assigned",
    "conversation.transferred",
    "conversation.requeued",
    "conversation.moved",
    "conversation.abandoned",
    "conversation.closed",
)


async def report_events(
    connection: AsyncConnection, period: Period
) -> tuple[list[Event], dict[str, ConversationInfo]]:
    """Every reported event of each conversation active in the period (or up to
    :data:`LOOKBACK` before it), from the conversation's start to the period's end, in the order
    they were written; and each of those conversations' channel and SLA."""
    start, end = period.bounds()
    active = (
        select(events.c.conversation_id)
        .where(
            and_(
                events.c.at >= start - LOOKBACK,
                events.c.at < end,
                events.c.conversation_id.is_not(None),
            )
        )
        .distinct()
        .scalar_subquery()
    )
    rows = await connection.execute(
        select(events.c.at, events.c.kind, events.c.conversation_id, events.c.agent, events.c.data)
        .where(
            and_(
                events.c.conversation_id.in_(active),
                events.c.at < end,
                events.c.kind.in_(_REPORTED),
            )
        )
        .order_by(events.c.seq)
    )
    found = [
        Event(row.at, row.kind, row.conversation_id, row.agent, row.data or {}) for row in rows
    ]
    info: dict[str, ConversationInfo] = {}
    for row in await connection.execute(
        select(conversations.c.id, conversations.c.channel, conversations.c.decision).where(
            conversations.c.id.in_(active)
        )
    ):
        sla = (row.decision or {}).get("sla_seconds") if isinstance(row.decision, dict) else None
        info[row.id] = ConversationInfo(row.channel, float(sla) if sla is not None else None)
    return found, info


CONVERSATION_COLUMNS = (
    "conversation_id",
    "created",
    "closed",
    "channel",
    "inbox",
    "queue",
    "priority",
    "status",
    "assignee",
    "disposition",
    "customer_id",
    "customer_number",
    "customer_name",
    "subject",
    "messages_in",
    "messages_out",
    "notes",
)
MESSAGE_COLUMNS = (
    "conversation_id",
    "message_id",
    "at",
    "kind",
    "direction",
    "channel",
    "author",
    "delivery_status",
    "subject",
    "text",
    "attachments",
)


def _local(at: float | None, zone: ZoneInfo) -> str | None:
    return None if at is None else datetime.fromtimestamp(at, zone).isoformat(timespec="seconds")


def _filtered(request: ExportRequest, customer_id: str | None) -> Any:
    start, end = request.period.bounds()
    where = [conversations.c.created_at >= start, conversations.c.created_at < end]
    for name, column in (
        ("queue", conversations.c.queue),
        ("channel", conversations.c.channel),
        ("inbox", conversations.c.inbox),
        ("status", conversations.c.status),
        ("agent", conversations.c.assignee),
        ("disposition", conversations.c.disposition),
    ):
        value = getattr(request, name)
        if value is not None:
            where.append(column == value)
    if request.customer is not None:
        where.append(conversations.c.customer_id == (customer_id or ""))
    return and_(*where)


async def conversation_pages(
    connection: AsyncConnection, request: ExportRequest, customer_id: str | None
) -> AsyncIterator[list[Sequence[Any]]]:
    """The export's rows (one per conversation, or per message with ``messages``), page by
    page, oldest first: a large export is streamed, not held."""
    zone = request.period.zone
    where = _filtered(request, customer_id)
    if request.messages:
        async for chunk in _message_pages(connection, where, zone):
            yield chunk
        return
    counts = (
        select(
            messages.c.conversation_id,
            func.sum(
                case(
                    (and_(messages.c.kind == "message", messages.c.direction == "inbound"), 1),
                    else_=0,
                )
            ).label("inbound"),
            func.sum(
                case(
                    (and_(messages.c.kind == "message", messages.c.direction == "outbound"), 1),
                    else_=0,
                )
            ).label("outbound"),
            func.sum(case((messages.c.kind == "note", 1), else_=0)).label("notes"),
        )
        .group_by(messages.c.conversation_id)
        .subquery()
    )
    query = (
        select(
            conversations,
            customers.c.external_id,
            customers.c.name.label("customer_name"),
            counts.c.inbound,
            counts.c.outbound,
            counts.c.notes,
        )
        .join(customers, customers.c.id == conversations.c.customer_id)
        .outerjoin(counts, counts.c.conversation_id == conversations.c.id)
        .where(where)
        .order_by(conversations.c.created_at, conversations.c.id)
    )
    result = await connection.stream(query)
    async for page in result.partitions(PAGE):
        yield [_conversation_row(row, zone) for row in page]


def _conversation_row(row: Any, zone: ZoneInfo) -> tuple[Any, ...]:
    return (
        row.id,
        _local(row.created_at, zone),
        _local(row.closed_at, zone),
        row.channel,
        row.inbox,
        row.queue,
        row.priority,
        row.status,
        row.assignee,
        row.disposition,
        row.customer_id,
        row.external_id,
        row.customer_name,
        row.subject,
        int(row.inbound or 0),
        int(row.outbound or 0),
        int(row.notes or 0),
    )


async def _message_pages(
    connection: AsyncConnection, where: Any, zone: ZoneInfo
) -> AsyncIterator[list[Sequence[Any]]]:
    names = (
        select(
            attachments.c.message_id,
            func.count().label("files"),
        )
        .group_by(attachments.c.message_id)
        .subquery()
    )
    query = (
        select(
            messages.c.conversation_id,
            messages.c.id,
            messages.c.created_at,
            messages.c.kind,
            messages.c.direction,
            messages.c.channel,
            messages.c.author,
            messages.c.delivery_status,
            messages.c.subject,
            messages.c.text,
            names.c.files,
        )
        .join(conversations, conversations.c.id == messages.c.conversation_id)
        .outerjoin(names, names.c.message_id == messages.c.id)
        .where(where)
        .order_by(conversations.c.created_at, conversations.c.id, messages.c.created_at)
    )
    result = await connection.stream(query)
    async for page in result.partitions(PAGE):
        ids = [row.id for row in page if row.files]
        files: dict[str, list[str]] = {}
        if ids:
            for item in await connection.execute(
                select(attachments.c.message_id, attachments.c.name)
                .where(attachments.c.message_id.in_(ids))
                .order_by(attachments.c.id)
            ):
                files.setdefault(item.message_id, []).append(item.name)
        yield [
            (
                row.conversation_id,
                row.id,
                _local(row.created_at, zone),
                row.kind,
                row.direction,
                row.channel,
                row.author,
                row.delivery_status,
                row.subject,
                row.text,
                "; ".join(files.get(row.id, [])) or None,
            )
            for row in page
        ]
