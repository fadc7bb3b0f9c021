"""The search statement on SQLite (FTS5) and PostgreSQL (GIN over ``to_tsvector``).

A hit is a message whose text or subject has every term, or a conversation of a customer whose
name, company or customer number has every term (or one of whose addresses is the query as
typed). Hits come newest first, ordered by (time, kind, key), which is also the cursor, so a
page never repeats or skips a hit while new messages arrive. The caller's :class:`Scope`
narrows them in the same statement: a page is never shorter because of what one may not see.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, literal, or_, select, text, tuple_, union_all
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ColumnElement, Select

from hub.scope import Scope
from hub.search.query import Cursor, SearchQuery, encode_cursor, snippet
from hub.store.schema import conversations, customers, identities, messages

# the indexed expressions of migration 0012 (an expression index serves only its expression)
MESSAGE_DOCUMENT = (
    "to_tsvector('simple', regexp_replace(coalesce(messages.subject, '') || ' ' "
    "|| messages.text, '[^[:alnum:]]+', ' ', 'g'))"
)
CUSTOMER_DOCUMENT = (
    "to_tsvector('simple', regexp_replace(coalesce(customers.name, '') || ' ' "
    "|| coalesce(customers.company, '') || ' ' || coalesce(customers.external_id, ''), "
    "'[^[:alnum:]]+', ' ', 'g'))"
)


@dataclass(frozen=True, slots=True)
class Page:
    hits: list[dict[str, Any]]
    next_cursor: str | None


def _message_matches(dialect: str) -> ColumnElement[bool]:
    if dialect == "sqlite":
        return text(
            "messages.rowid IN (SELECT rowid FROM messages_fts WHERE messages_fts MATCH :fts)"
        )  # type: ignore[return-value]
    return text(f"{MESSAGE_DOCUMENT} @@ to_tsquery('simple', :tsq)")  # type: ignore[return-value]


def _customer_matches(dialect: str) -> ColumnElement[bool]:
    if dialect == "sqlite":
        return text(
            "customers.rowid IN (SELECT rowid FROM customers_fts WHERE customers_fts MATCH :fts)"
        )  # type: ignore[return-value]
    return text(f"{CUSTOMER_DOCUMENT} @@ to_tsquery('simple', :tsq)")  # type: ignore[return-value]


def message_hits(dialect: str) -> Select[Any]:
    """Messages with every term (also the benchmark's bare query, ordered and limited)."""
    return select(
        messages.c.created_at.label("at"),
        literal("message").label("match"),
        messages.c.id.label("key"),
        messages.c.conversation_id.label("conversation_id"),
    ).where(_message_matches(dialect))


def _customer_hits(dialect: str) -> Select[Any]:
    by_name = select(customers.c.id).where(_customer_matches(dialect))
    by_address = select(identities.c.customer_id).where(
        identities.c.address == bindparam("address")
    )
    return select(
        conversations.c.updated_at.label("at"),
        literal("customer").label("match"),
        conversations.c.id.label("key"),
        conversations.c.id.label("conversation_id"),
    ).where(conversations.c.customer_id.in_(by_name.union(by_address)))


def _scoped(scope: Scope) -> ColumnElement[bool] | None:
    if scope.everything:
        return None
    return or_(
        conversations.c.queue.in_(sorted(scope.queues)), conversations.c.assignee == scope.agent
    )


def _page_of(branch: Select[Any], match: str, query: SearchQuery, scope: Scope) -> Any:
    """One kind of hit, already cut to the page: scoped, after the cursor, newest first,
    ``limit + 1`` of them, so the outer sort and joins see at most two pages' rows."""
    columns = branch.selected_columns
    conditions: list[ColumnElement[bool]] = []
    limit = _scoped(scope)
    if limit is not None:
        if match == "message":  # the customer branch reads conversations already
            branch = branch.join_from(
                messages, conversations, conversations.c.id == messages.c.conversation_id
            )
        conditions.append(limit)
    if query.after is not None:
        after = query.after
        conditions.append(
            tuple_(columns.at, literal(match), columns.key)
            < tuple_(literal(after.at), literal(after.match), literal(after.key))
        )
    cut = (
        branch.where(*conditions)
        .order_by(columns.at.desc(), columns.key.desc())
        .limit(query.limit + 1)
    )
    return select(cut.subquery(f"{match}_page"))


def statement(dialect: str, query: SearchQuery, scope: Scope) -> Select[Any]:
    hits = union_all(
        _page_of(message_hits(dialect), "message", query, scope),
        _page_of(_customer_hits(dialect), "customer", query, scope),
    ).subquery("hits")
    order = (hits.c.at.desc(), hits.c.match.desc(), hits.c.key.desc())
    return (
        select(
            hits.c.at,
            hits.c.match,
            hits.c.key,
            hits.c.conversation_id,
            conversations.c.channel,
            conversations.c.inbox,
            conversations.c.queue,
            conversations.c.status,
            conversations.c.assignee,
            conversations.c.subject,
            conversations.c.customer_id,
            customers.c.name.label("customer_name"),
            customers.c.external_id.label("customer_number"),
        )
        .select_from(hits)
        .join(conversations, conversations.c.id == hits.c.conversation_id)
        .join(customers, customers.c.id == conversations.c.customer_id)
        .order_by(*order)
        .limit(query.limit + 1)
    )


def parameters(dialect: str, query: SearchQuery) -> dict[str, str]:
    """The statement's bound values: the query only ever travels as parameters."""
    if dialect == "sqlite":
        return {"fts": query.fts5(), "address": query.text}
    return {"tsq": query.tsquery(), "address": query.text}


async def search(connection: AsyncConnection, query: SearchQuery, scope: Scope) -> Page:
    """One page of hits (``limit`` of them) and the cursor of the next, if there is one."""
    dialect = connection.dialect.name
    stmt = statement(dialect, query, scope)
    rows = (await connection.execute(stmt, parameters(dialect, query))).all()
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    texts = await _message_texts(connection, [r.key for r in rows if r.match == "message"])
    hits = [_hit(row, texts.get(row.key), query) for row in rows]
    last = rows[-1] if more else None
    cursor = (
        encode_cursor(Cursor(at=float(last.at), match=last.match, key=last.key))
        if last is not None
        else None
    )
    return Page(hits=hits, next_cursor=cursor)


async def _message_texts(
    connection: AsyncConnection, ids: list[str]
) -> dict[str, tuple[str, str | None, str, str | None]]:
    """Text, subject, kind and author of the page's messages (read after the page is cut, so
    the sort never carries whole texts)."""
    if not ids:
        return {}
    rows = await connection.execute(
        select(
            messages.c.id, messages.c.text, messages.c.subject, messages.c.kind, messages.c.author
        ).where(messages.c.id.in_(ids))
    )
    return {r.id: (r.text, r.subject, r.kind, r.author) for r in rows}


def _hit(
    row: Any, message: tuple[str, str | None, str, str | None] | None, query: SearchQuery
) -> dict[str, Any]:
    body, subject, kind, author = message or ("", None, None, None)
    return {
        "match": row.match,
        "at": float(row.at),
        "conversation_id": row.conversation_id,
        "message_id": row.key if row.match == "message" else None,
        "message_kind": kind,
        "author": author,
        "snippet": snippet(body or subject or "", query.terms) if message else None,
        "channel": row.channel,
        "inbox": row.inbox,
        "queue": row.queue,
        "status": row.status,
        "assignee": row.assignee,
        "subject": subject if subject is not None else row.subject,
        "customer": {
            "id": row.customer_id,
            "name": row.customer_name,
            "customer_number": row.customer_number,
        },
    }
