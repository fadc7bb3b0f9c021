"""The inbox statement: a view of conversations, filtered, scoped, one page newest first."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, func, literal, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ColumnElement

from hub.inbox.query import After, InboxQuery, View, encode_cursor
from hub.scope import Scope
from hub.store.schema import ASSIGNED, CLOSED, QUEUED, conversations, customer_stats, customers


def _has_tag(dialect: str) -> ColumnElement[bool]:
    if dialect == "sqlite":
        return text(  # type: ignore[return-value]
            "EXISTS (SELECT 1 FROM json_each(conversations.decision, '$.tags') "
            "WHERE json_each.value = :tag)"
        )
    return text(  # type: ignore[return-value]
        "jsonb_exists(CAST(conversations.decision AS jsonb) -> 'tags', :tag)"
    )


def _view(query: InboxQuery, agent: str, served: frozenset[str]) -> list[ColumnElement[bool]]:
    c = conversations.c
    if query.view is View.MINE:
        return [c.status == ASSIGNED, c.assignee == agent]
    if query.view is View.QUEUES:
        return [c.status == QUEUED, c.queue.in_(sorted(served))]
    if query.view is View.UNASSIGNED:
        return [c.status == QUEUED]
    if query.view is View.CLOSED:
        return [c.status == CLOSED]
    return []


def statement(
    dialect: str, query: InboxQuery, scope: Scope, agent: str, served: frozenset[str]
) -> Any:
    c = conversations.c
    tier = func.coalesce(customers.c.tier_override, customer_stats.c.abc)
    conditions = _view(query, agent, served)
    if not scope.everything and query.view is not View.MINE:
        conditions.append(c.queue.in_(sorted(scope.queues)) | (c.assignee == scope.agent))
    if query.channel is not None:
        conditions.append(c.channel == query.channel)
    if query.queue is not None:
        conditions.append(c.queue == query.queue)
    if query.tag is not None:
        conditions.append(_has_tag(dialect))
    if query.tier is not None:
        conditions.append(tier == query.tier)
    if query.after is not None:
        conditions.append(
            tuple_(c.updated_at, c.id) < tuple_(literal(query.after.at), literal(query.after.key))
        )
    return (
        select(
            c.id,
            c.channel,
            c.inbox,
            c.status,
            c.queue,
            c.priority,
            c.assignee,
            c.subject,
            c.created_at,
            c.updated_at,
            c.decision,
            c.customer_id,
            customers.c.name.label("customer_name"),
            customers.c.external_id.label("customer_number"),
            tier.label("tier"),
        )
        .join(customers, customers.c.id == c.customer_id)
        .join(customer_stats, customer_stats.c.customer_id == c.customer_id, isouter=True)
        .where(and_(*conditions) if conditions else literal(True))
        .order_by(c.updated_at.desc(), c.id.desc())
        .limit(query.limit + 1)
    )


async def page(
    connection: AsyncConnection, query: InboxQuery, scope: Scope, agent: str, served: frozenset[str]
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of the view and the cursor of the next (None on the last)."""
    stmt = statement(connection.dialect.name, query, scope, agent, served)
    params = {"tag": query.tag} if query.tag is not None else {}
    rows = (await connection.execute(stmt, params)).all()
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    items = [
        {
            "id": r.id,
            "channel": r.channel,
            "inbox": r.inbox,
            "status": r.status,
            "queue": r.queue,
            "priority": r.priority,
            "assignee": r.assignee,
            "subject": r.subject,
            "created_at": r.created_at,
            "updated_at": r.updated_at,
            "tags": list((r.decision or {}).get("tags", [])),
            "customer": {
                "id": r.customer_id,
                "name": r.customer_name,
                "customer_number": r.customer_number,
                "tier": r.tier or None,
            },
        }
        for r in rows
    ]
    cursor = encode_cursor(After(at=float(rows[-1].updated_at), key=rows[-1].id)) if more else None
    return items, cursor
