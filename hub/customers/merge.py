"""Merging two customer records into one, and undoing it.

A merge moves the source's identities, conversations, orders and invoices to the target and
marks the source ``merged`` (it is kept, not deleted). The audit event lists every row that
moved, so an undo moves exactly those rows back, even after new messages arrived.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.errors import InvalidState, NotFound
from hub.store.schema import (
    conversations,
    customer_stats,
    customers,
    events,
    identities,
    invoices,
    orders,
)

MOVABLE = {
    "identities": identities,
    "conversations": conversations,
    "orders": orders,
    "invoices": invoices,
}


async def merge(
    connection: AsyncConnection,
    source: str,
    target: str,
    *,
    now: float,
    reason: str,
    actor: str | None = None,
) -> int:
    """Merge ``source`` into ``target``; returns the merge id (its audit event's number)."""
    if source == target:
        raise InvalidState("a customer cannot be merged into itself")
    kinds = dict(
        (
            await connection.execute(
                select(customers.c.id, customers.c.kind).where(customers.c.id.in_([source, target]))
            )
        ).all()
    )
    for customer_id in (source, target):
        if customer_id not in kinds:
            raise NotFound(f"customer {customer_id} does not exist")
        if kinds[customer_id] == "merged":
            raise InvalidState(f"customer {customer_id} was merged into another already")
    moved: dict[str, list[str]] = {}
    for name, table in MOVABLE.items():
        ids = (
            (await connection.execute(select(table.c.id).where(table.c.customer_id == source)))
            .scalars()
            .all()
        )
        moved[name] = list(ids)
        if ids:
            await connection.execute(
                update(table).where(table.c.id.in_(ids)).values(customer_id=target)
            )
    await connection.execute(
        update(customers).where(customers.c.id == source).values(kind="merged", updated_at=now)
    )
    await connection.execute(delete(customer_stats).where(customer_stats.c.customer_id == source))
    data: dict[str, Any] = {
        "from": source,
        "into": target,
        "reason": reason,
        "previous_kind": kinds[source],
        **moved,
    }
    result = await connection.execute(
        events.insert().returning(events.c.seq),
        {"at": now, "kind": "customer.merged", "agent": actor, "data": data},
    )
    return int(result.scalar_one())


async def unmerge(
    connection: AsyncConnection, merge_id: int, *, now: float, actor: str | None = None
) -> dict[str, Any]:
    """Undo a merge: the rows it moved go back to the restored source customer."""
    row = (
        await connection.execute(
            select(events.c.kind, events.c.data).where(events.c.seq == merge_id)
        )
    ).first()
    if row is None or row.kind != "customer.merged":
        raise NotFound(f"no merge with id {merge_id}")
    data = row.data
    undone = (
        (
            await connection.execute(
                select(events.c.data).where(events.c.kind == "customer.unmerged")
            )
        )
        .scalars()
        .all()
    )
    if any(entry and entry.get("merge") == merge_id for entry in undone):
        raise InvalidState(f"merge {merge_id} was undone already")
    source, target = data["from"], data["into"]
    state = (
        await connection.execute(select(customers.c.kind).where(customers.c.id == source))
    ).scalar_one_or_none()
    if state != "merged":
        raise InvalidState(f"customer {source} is not merged any more")
    for name, table in MOVABLE.items():
        ids = data.get(name) or []
        if ids:
            await connection.execute(
                update(table)
                .where(and_(table.c.id.in_(ids), table.c.customer_id == target))
                .values(customer_id=source)
            )
    await connection.execute(
        update(customers)
        .where(customers.c.id == source)
        .values(kind=data.get("previous_kind", "customer"), updated_at=now)
    )
    await connection.execute(
        events.insert(),
        {
            "at": now,
            "kind": "customer.unmerged",
            "agent": actor,
            "data": {"merge": merge_id, "from": source, "into": target},
        },
    )
    return {"merge": merge_id, "restored": source, "from": target}
