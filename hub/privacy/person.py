"""Finding everything the store holds about one person, for export and erasure alike.

A person is a customer record plus the records merged into it (kept as ``merged``), their
identities (addresses), conversations, messages with their files, CRM orders and invoices,
opt-outs, and the audit events about any of these.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Text, cast, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.errors import NotFound
from hub.privacy.scrub import mentions
from hub.store.schema import (
    attachments,
    conversations,
    customers,
    events,
    identities,
    messages,
)

CHUNK = 500  # ids per IN (…): well under SQLite's and asyncpg's limits on parameters


def chunks(values: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


@dataclass(slots=True)
class Person:
    customer_id: str
    ids: list[str]  # the customer and the records merged into it
    addresses: set[tuple[str, str]] = field(default_factory=set)
    conversations: list[str] = field(default_factory=list)
    open_conversations: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    files: list[dict[str, Any]] = field(default_factory=list)  # attachments rows

    @property
    def blob_refs(self) -> set[str]:
        return {str(item["blob_ref"]) for item in self.files}


async def _merged_into(connection: AsyncConnection, customer_id: str) -> list[str]:
    """The records merged into ``customer_id`` (and into those), still marked merged."""
    merges = [
        row.data
        for row in await connection.execute(
            select(events.c.data).where(events.c.kind == "customer.merged")
        )
        if isinstance(row.data, dict)
    ]
    found = [customer_id]
    frontier = {customer_id}
    while frontier:
        sources = {
            str(data["from"])
            for data in merges
            if data.get("into") in frontier and data.get("from") not in found
        }
        if not sources:
            break
        still = set(
            (
                await connection.execute(
                    select(customers.c.id).where(
                        customers.c.id.in_(sources), customers.c.kind == "merged"
                    )
                )
            )
            .scalars()
            .all()
        )
        found += sorted(still)
        frontier = still
    return found


async def find_person(connection: AsyncConnection, customer_id: str) -> Person:
    """The person behind ``customer_id`` (NotFound if there is no such customer)."""
    exists = (
        await connection.execute(select(customers.c.id).where(customers.c.id == customer_id))
    ).first()
    if exists is None:
        raise NotFound(f"customer {customer_id} does not exist")
    person = Person(customer_id, await _merged_into(connection, customer_id))
    person.addresses = {
        (row.kind, row.address)
        for row in await connection.execute(
            select(identities.c.kind, identities.c.address).where(
                identities.c.customer_id.in_(person.ids)
            )
        )
    }
    for row in await connection.execute(
        select(conversations.c.id, conversations.c.status)
        .where(conversations.c.customer_id.in_(person.ids))
        .order_by(conversations.c.created_at, conversations.c.id)
    ):
        person.conversations.append(row.id)
        if row.status != "closed":
            person.open_conversations.append(row.id)
    for part in chunks(person.conversations):
        person.messages += (
            (
                await connection.execute(
                    select(messages.c.id)
                    .where(messages.c.conversation_id.in_(part))
                    .order_by(messages.c.created_at, messages.c.id)
                )
            )
            .scalars()
            .all()
        )
    for part in chunks(person.messages):
        person.files += [
            dict(row._mapping)
            for row in await connection.execute(
                select(attachments).where(attachments.c.message_id.in_(part))
            )
        ]
    return person


def _json_fragment(value: str) -> str:
    """``value`` as it appears inside stored JSON text (escaped like json.dumps)."""
    import json

    return json.dumps(value)[1:-1]


async def events_about(
    connection: AsyncConnection,
    person: Person,
    *,
    extra_conversations: Collection[str] = (),
) -> list[Any]:
    """The audit events about the person: of their conversations and messages, and those
    whose data names one of their records or addresses (a view of their record, a merge, an
    opt-out, a refused thread …). Oldest first."""
    conversation_ids = [*person.conversations, *extra_conversations]
    found: dict[int, Any] = {}
    for part in chunks(conversation_ids):
        for row in await connection.execute(
            select(events).where(events.c.conversation_id.in_(part))
        ):
            found[row.seq] = row
    for part in chunks(person.messages):
        for row in await connection.execute(select(events).where(events.c.message_id.in_(part))):
            found[row.seq] = row
    needles = [*person.ids, *(address for _, address in person.addresses)]
    text = cast(events.c.data, Text)
    for part in chunks(needles, 50):
        matches = or_(*(text.contains(_json_fragment(n), autoescape=True) for n in part))
        for row in await connection.execute(select(events).where(matches)):
            if row.seq not in found and mentions(row.data, person.ids, person.addresses):
                found[row.seq] = row
    return [found[seq] for seq in sorted(found)]


async def claimants(connection: AsyncConnection, person: Person) -> list[Any]:
    """Other records whose attributes hold a claim on the person (``id``, ``attributes``)."""
    needles = [*person.ids, *(address for _, address in person.addresses)]
    text = cast(customers.c.attributes, Text)
    found: dict[str, Any] = {}
    for part in chunks(needles, 50):
        matches = or_(*(text.contains(_json_fragment(n), autoescape=True) for n in part))
        for row in await connection.execute(
            select(customers.c.id, customers.c.attributes).where(
                matches, customers.c.id.not_in(person.ids)
            )
        ):
            found[row.id] = row
    return list(found.values())


def address_filter(
    addresses: Collection[tuple[str, str]], kind_column: Any, address_column: Any
) -> Any:
    """``(kind, address) IN (…)`` for a set of addresses."""
    return tuple_(kind_column, address_column).in_(list(addresses))
