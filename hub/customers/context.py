"""A customer as rules and agents see them.

:func:`facts_query` and :func:`facts_from_row` give what rules read (``hub.ingest`` reads
them before the rules decide, in bulk); :func:`customer_context` is the fuller view for the
console and ``customers show``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.customers.providers import Lookup, overlay
from hub.errors import NotFound
from hub.store.schema import conversations, customer_stats, customers, identities
from rules.context import CustomerFacts

DAY = 86_400.0


@dataclass(frozen=True, slots=True)
class CustomerRef:
    """The customer an inbound message resolved to, with what rules may know of them."""

    id: str
    known: bool
    name: str | None
    facts: CustomerFacts | None = None


def open_conversations_column() -> Any:
    """A correlated count of the customer's conversations that are not closed."""
    return (
        select(func.count())
        .where(
            and_(conversations.c.customer_id == customers.c.id, conversations.c.status != "closed")
        )
        .scalar_subquery()
        .label("open_conversations")
    )


def facts_query() -> Any:
    """Customers with their stats and open conversations: one row each, one statement."""
    return select(customers, customer_stats, open_conversations_column()).outerjoin(
        customer_stats, customer_stats.c.customer_id == customers.c.id
    )


async def load_facts(
    connection: AsyncConnection, customer_ids: Sequence[str], now: float
) -> dict[str, CustomerFacts]:
    """What rules see of each customer: CRM fields, computed stats, open conversations."""
    if not customer_ids:
        return {}
    rows = await connection.execute(facts_query().where(customers.c.id.in_(set(customer_ids))))
    return {row.id: facts_from_row(row._mapping, now, row.open_conversations or 0) for row in rows}


def facts_from_row(row: Any, now: float, open_conversations: int) -> CustomerFacts:
    known = row["kind"] == "customer"
    last_order = row.get("last_order_at")
    punctuality = row.get("payment_punctuality")
    facts = CustomerFacts(
        known=known,
        id=row["id"],
        name=row.get("name") or "",
        tier=row.get("tier_override") or row.get("abc") or "",
        lifetime_value=(row.get("lifetime_value_cents") or 0) / 100,
        orders_12m=row.get("orders_12m") or 0,
        last_order_at=last_order or 0.0,
        days_since_last_order=int((now - last_order) // DAY) if last_order else 0,
        last_purchase=row.get("last_purchase") or "",
        # nothing fell due yet: nothing speaks against the customer
        payment_punctuality=(1.0 if known else 0.0) if punctuality is None else punctuality,
        overdue_invoices=row.get("overdue_invoices") or 0,
        open_conversations=open_conversations,
        tags=list(row.get("tags") or []),
        attributes=dict(row.get("attributes") or {}),
    )
    crm = facts.attributes.get("crm")
    if isinstance(crm, dict) and isinstance(crm.get("values"), dict):
        # what an external CRM said last time (see providers): it wins over local data
        facts = overlay(facts, Lookup(crm["values"]))
    return facts


async def customer_context(
    connection: AsyncConnection, customer_id: str, now: float, *, history: int = 20
) -> dict[str, Any]:
    """Everything an agent (and ``customers show``) sees of a customer: CRM fields, value,
    identities and the conversation history across every channel."""
    found = await customer_contexts(connection, [customer_id], now, history=history)
    if customer_id not in found:
        raise NotFound(f"customer {customer_id} does not exist")
    return found[customer_id]


async def customer_contexts(
    connection: AsyncConnection, customer_ids: Collection[str], now: float, *, history: int = 20
) -> dict[str, dict[str, Any]]:
    """:func:`customer_context` of many customers with three statements, whatever their number
    (the dispatch service shows many at once); customers that do not exist are left out."""
    wanted = list(set(customer_ids))
    if not wanted:
        return {}
    result = await connection.execute(facts_query().where(customers.c.id.in_(wanted)))
    names = list(result.keys())  # rows as dicts by zipping: many times faster than _mapping
    rows = {row.id: dict(zip(names, row, strict=True)) for row in result}
    if not rows:
        return {}
    idents: dict[str, list[dict[str, Any]]] = {}
    for ident in await connection.execute(
        select(
            identities.c.customer_id,
            identities.c.kind,
            identities.c.address,
            identities.c.display_name,
        )
        .where(identities.c.customer_id.in_(list(rows)))
        .order_by(identities.c.created_at)
    ):
        idents.setdefault(ident.customer_id, []).append(
            {"kind": ident.kind, "address": ident.address, "display_name": ident.display_name}
        )
    newest = (
        select(
            conversations.c.id,
            conversations.c.channel,
            conversations.c.inbox,
            conversations.c.status,
            conversations.c.subject,
            conversations.c.created_at,
            conversations.c.disposition,
            conversations.c.customer_id,
            func.row_number()
            .over(
                partition_by=conversations.c.customer_id,
                order_by=conversations.c.created_at.desc(),
            )
            .label("newest"),
        )
        .where(conversations.c.customer_id.in_(list(rows)))
        .subquery()
    )
    past: dict[str, list[dict[str, Any]]] = {}
    shown = ("id", "channel", "inbox", "status", "subject", "created_at", "disposition")
    for conversation in await connection.execute(
        select(newest)
        .where(newest.c.newest <= history)
        .order_by(newest.c.customer_id, newest.c.newest)
    ):
        past.setdefault(conversation.customer_id, []).append(
            dict(zip(shown, conversation, strict=False))
        )
    return {
        customer_id: _context(
            customer_id,
            row,
            facts_from_row(row, now, row["open_conversations"] or 0),
            idents.get(customer_id, []),
            past.get(customer_id, []),
        )
        for customer_id, row in rows.items()
    }


def _context(
    customer_id: str,
    row: Any,
    facts: CustomerFacts,
    idents: list[dict[str, Any]],
    past: list[dict[str, Any]],
) -> dict[str, Any]:
    stored = facts.attributes.get("crm")
    crm: dict[str, Any] = stored if isinstance(stored, dict) else {}
    tier_source: str | None
    if "tier" in (crm.get("values") or {}):
        tier_source = "crm"
    elif row.get("tier_override"):
        tier_source = "manual"
    else:
        tier_source = "computed" if row.get("abc") else None
    return {
        "id": customer_id,
        "kind": row["kind"],
        "known": facts.known,
        "customer_number": row.get("external_id"),
        "name": facts.name or row.get("name"),
        "company": row.get("company"),
        "tier": facts.tier or None,
        "tier_source": tier_source,
        "crm_fetched_at": crm.get("fetched_at"),
        "lifetime_value": facts.lifetime_value,
        "revenue_window": (row.get("revenue_window_cents") or 0) / 100,
        "orders_12m": facts.orders_12m,
        "last_order_at": facts.last_order_at or None,
        "days_since_last_order": facts.days_since_last_order if facts.last_order_at else None,
        "last_purchase": facts.last_purchase or None,
        "payment_punctuality": row.get("payment_punctuality"),
        "overdue_invoices": facts.overdue_invoices,
        "rfm": {"r": row.get("rfm_r"), "f": row.get("rfm_f"), "m": row.get("rfm_m")}
        if row.get("rfm_r")
        else None,
        "open_conversations": facts.open_conversations,
        "tags": facts.tags,
        "attributes": facts.attributes,
        "identities": idents,
        "history": past,
        "computed_at": row.get("computed_at"),
    }
