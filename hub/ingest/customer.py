"""Who sent each message: foreseen before the ingest transaction, made so inside it.

:func:`foresee` reads, outside any transaction, who each sender will be once the transaction
has linked vouched senders, identified addresses and recorded claims (``hub.customers.linking``),
and what rules may know of them; the rules decide on that. :func:`link` does those writes in
the transaction and gives the customer each message is stored under: the same one, unless
another message changed that customer in between (the rules then decided on what was true a
moment earlier, as they did on the batch's first state before).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.customers.context import CustomerRef, facts_query
from hub.customers.linking import (
    Key,
    Owner,
    attach_claims,
    claimed_attributes,
    customer_of,
    identify,
    key_of,
    link_vouched,
    owner_rows,
    remember_crm,
    unverified,
    unverified_prospect,
    vouching,
    with_attributes,
)
from hub.customers.providers import Lookup, overlay
from hub.envelope import Envelope, Identity
from hub.store.schema import customers


@dataclass(frozen=True, slots=True)
class Arrival:
    """A message on its way in, with what an external CRM said of its sender (laid over the
    stored facts) and the id a prospect created for it takes (so that what rules saw and what
    is stored agree)."""

    envelope: Envelope
    external: Lookup | None
    prospect_id: str


async def foresee(
    connection: AsyncConnection, arrivals: Sequence[Arrival], now: float
) -> list[CustomerRef]:
    """The customer of each arrival as the transaction will find them, with the facts rules
    read: two statements at most, whatever the number of arrivals."""
    wanted = {
        key_of(identity)
        for arrival in arrivals
        for identity in (arrival.envelope.sender, *arrival.envelope.claimed)
    }
    rows = await owner_rows(connection, wanted)
    numbers = {
        number
        for arrival in arrivals
        if (number := arrival.envelope.vouched_customer)
        and _movable(rows.get(key_of(arrival.envelope.sender)))
    }
    return foreseen(arrivals, rows, await _vouched(connection, numbers), now)


def _movable(owner: Mapping[Any, Any] | None) -> bool:
    """Whether vouching may move a sender's address (a free one, or a prospect's): only then
    does the vouched customer need looking up."""
    return owner is None or owner["kind"] == "prospect"


async def _vouched(
    connection: AsyncConnection, numbers: Collection[str]
) -> dict[str, dict[str, Any]]:
    """Customers by customer number, with what rules see of them."""
    if not numbers:
        return {}
    result = await connection.execute(
        facts_query().where(
            and_(customers.c.external_id.in_(numbers), customers.c.kind == "customer")
        )
    )
    names = list(result.keys())
    return {row.external_id: dict(zip(names, row, strict=True)) for row in result}


def foreseen(
    arrivals: Sequence[Arrival],
    owners: Mapping[Key, Mapping[Any, Any]],
    vouched: Mapping[str, Mapping[Any, Any]],
    now: float,
) -> list[CustomerRef]:
    """:func:`foresee` on rows read: the transaction's steps in its order (vouching for the
    whole batch, identifying, then each message's doubt, claims and CRM answer)."""
    rows = dict(owners)
    for arrival in arrivals:
        number = arrival.envelope.vouched_customer
        target = vouched.get(number) if number else None
        if target is not None:
            key = key_of(arrival.envelope.sender)
            rows[key] = _after_vouching(rows.get(key), target)
    senders = {key_of(a.envelope.sender): a.envelope.sender for a in arrivals}
    found: dict[Key, CustomerRef] = {}
    for arrival in arrivals:
        key = key_of(arrival.envelope.sender)
        if key not in found:
            row = rows.get(key)
            found[key] = (
                customer_of(row, now)
                if row is not None
                else _prospect(arrival.prospect_id, senders[key], now)
            )
    claims: dict[Key, Owner] = {key: (row["id"], row["external_id"]) for key, row in rows.items()}
    return [_customer(arrival, found, claims) for arrival in arrivals]


def _after_vouching(
    owner: Mapping[Any, Any] | None, target: Mapping[Any, Any]
) -> Mapping[Any, Any]:
    action = vouching(
        owner["id"] if owner else None, owner["kind"] if owner else None, target["id"]
    )
    if action == "link" or owner is None:
        return target
    if action == "merge":  # the prospect's conversations, open ones too, move to the customer
        moved = owner["open_conversations"] or 0
        return {**target, "open_conversations": (target["open_conversations"] or 0) + moved}
    return owner


def _prospect(prospect_id: str, sender: Identity, now: float) -> CustomerRef:
    """The prospect :func:`~hub.customers.linking.identify` creates for a new address."""
    row = {"id": prospect_id, "kind": "prospect", "name": sender.display_name}
    return customer_of({**row, "open_conversations": 0}, now)


def _customer(
    arrival: Arrival, found: dict[Key, CustomerRef], owners: dict[Key, Owner]
) -> CustomerRef:
    """One arrival's customer after its own steps; ``found`` and ``owners`` carry what it
    changed to the arrivals after it, as the transaction's rows do."""
    envelope = arrival.envelope
    key = key_of(envelope.sender)
    customer = found[key]
    if not envelope.sender_verified and customer.known:
        customer = unverified(envelope, customer, arrival.prospect_id)
    if envelope.claimed:
        attributes = claimed_attributes(
            customer.facts.attributes if customer.facts else {},
            customer.id,
            envelope.claimed,
            owners,
        )
        for identity in envelope.claimed:  # a free address becomes theirs
            owners.setdefault(key_of(identity), (customer.id, None))
        if attributes is not None:
            customer = with_attributes(customer, attributes)
        if customer.known or envelope.sender_verified:
            found[key] = customer
    if arrival.external is not None and customer.facts is not None:
        facts = overlay(customer.facts, arrival.external)
        customer = CustomerRef(customer.id, customer.known, customer.name, facts)
    return customer


async def link(connection: AsyncConnection, arrivals: Sequence[Arrival], now: float) -> list[str]:
    """Inside the transaction: link, identify and record claims and CRM answers; the customer
    id each arrival is stored under, in order."""
    await link_vouched(connection, [arrival.envelope for arrival in arrivals], now)
    prospect_ids: dict[Key, str] = {}
    for arrival in arrivals:
        prospect_ids.setdefault(key_of(arrival.envelope.sender), arrival.prospect_id)
    found = await identify(
        connection, [arrival.envelope.sender for arrival in arrivals], now, prospect_ids
    )
    customer_ids = []
    for arrival in arrivals:
        envelope = arrival.envelope
        key = key_of(envelope.sender)
        customer = found[key]
        if not envelope.sender_verified and customer.known:
            customer = await unverified_prospect(
                connection, envelope, customer, now, arrival.prospect_id
            )
        if envelope.claimed:
            customer = await attach_claims(connection, envelope, customer, now)
            if customer.known or envelope.sender_verified:
                found[key] = customer
        lookup = arrival.external
        if lookup is not None and lookup.values is not None and customer.facts is not None:
            await remember_crm(connection, customer, lookup.values, now)
        customer_ids.append(customer.id)
    return customer_ids
