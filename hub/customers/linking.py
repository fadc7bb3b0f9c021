"""Which customer a sender is, when the channel says more than an address.

A channel may vouch for the sender (a signed customer number), doubt them (a sender address
that failed authentication) or pass on what they only claimed (a typed email). These steps run
inside the ingest transaction, before the rules decide.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
from sqlalchemy import and_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.customers.context import CustomerRef, identity_owner
from hub.customers.merge import merge
from hub.envelope import Envelope
from hub.ids import new_id
from hub.store.database import insert_ignoring_conflicts
from hub.store.schema import customers, events, identities
from rules.context import CustomerFacts


async def link_vouched(connection: AsyncConnection, batch: Sequence[Envelope], now: float) -> None:
    """Attach senders to the customers their channel vouched for (signed customer ids).

    A new address becomes the customer's identity, a prospect's is merged in (undoably); an
    address that belongs to another customer stays there and the clash is audited.
    """
    vouched = [e for e in batch if e.vouched_customer]
    if not vouched:
        return
    numbers = {e.vouched_customer for e in vouched}
    owners = dict(
        (
            await connection.execute(
                select(customers.c.external_id, customers.c.id).where(
                    and_(customers.c.external_id.in_(numbers), customers.c.kind == "customer")
                )
            )
        ).all()
    )
    for envelope in vouched:
        customer_id = owners.get(envelope.vouched_customer)
        sender = envelope.sender
        if customer_id is None:
            continue
        owner = await identity_owner(connection, sender.kind, sender.address)
        if owner is None:
            await connection.execute(
                identities.insert(),
                {
                    "id": new_id(now),
                    "customer_id": customer_id,
                    "kind": sender.kind,
                    "address": sender.address,
                    "display_name": sender.display_name,
                    "created_at": now,
                },
            )
        elif owner.customer_id != customer_id and owner.kind == "prospect":
            await merge(
                connection,
                owner.customer_id,
                customer_id,
                now=now,
                reason=f"{envelope.channel} vouched for customer {envelope.vouched_customer}",
            )
        elif owner.customer_id != customer_id:
            await connection.execute(
                events.insert(),
                {
                    "at": now,
                    "kind": "identity.clash",
                    "data": {
                        "kind": sender.kind,
                        "address": sender.address,
                        "vouched": envelope.vouched_customer,
                        "owner": owner.customer_id,
                    },
                },
            )


async def remember_crm(
    connection: AsyncConnection, customer: CustomerRef, values: dict[str, Any], now: float
) -> None:
    """Keep the external CRM's latest answer with the customer, so the console (and rules,
    while the CRM is down) see it too. Written only when it changed."""
    stored = (
        await connection.execute(
            select(customers.c.attributes).where(customers.c.id == customer.id)
        )
    ).scalar_one_or_none()
    attributes = dict(stored or {})  # the stored ones: facts carry the CRM's laid over them
    known = attributes.get("crm")
    if isinstance(known, dict) and known.get("values") == values:
        return
    attributes["crm"] = {"values": values, "fetched_at": now}
    await connection.execute(
        update(customers).where(customers.c.id == customer.id).values(attributes=attributes)
    )


async def unverified_prospect(
    connection: AsyncConnection, envelope: Envelope, claimed: CustomerRef, now: float
) -> CustomerRef:
    """A separate record for a message whose sender may be forged but names a known customer:
    it is not attached to that customer (the agent sees whom it claims to be)."""
    customer_id = new_id(now)
    sender = envelope.sender
    attributes = {
        "claims": [
            {
                "kind": sender.kind,
                "address": sender.address,
                "customer": claimed.id,
                "verified": False,
            }
        ]
    }
    await connection.execute(
        customers.insert(),
        {
            "id": customer_id,
            "kind": "prospect",
            "name": sender.display_name,
            "created_at": now,
            "attributes": attributes,
        },
    )
    await connection.execute(
        events.insert(),
        {
            "at": now,
            "kind": "identity.unverified",
            "data": {
                "kind": sender.kind,
                "address": sender.address,
                "claimed_customer": claimed.id,
                "prospect": customer_id,
            },
        },
    )
    facts = CustomerFacts(id=customer_id, name=sender.display_name or "", attributes=attributes)
    return CustomerRef(customer_id, False, sender.display_name, facts)


async def attach_claims(
    connection: AsyncConnection, envelope: Envelope, customer: CustomerRef, now: float
) -> CustomerRef:
    """Addresses the sender gave without proof: a free one becomes theirs; one that belongs to
    someone else is only recorded as a claim for the agent to check (never merged)."""
    claims = list((customer.facts.attributes if customer.facts else {}).get("claims", []))
    changed = False
    for claimed in envelope.claimed:
        owner = await identity_owner(connection, claimed.kind, claimed.address)
        if owner is None:
            await connection.execute(
                insert_ignoring_conflicts(connection, identities),
                {
                    "id": new_id(now),
                    "customer_id": customer.id,
                    "kind": claimed.kind,
                    "address": claimed.address,
                    "display_name": claimed.display_name,
                    "created_at": now,
                },
            )
        elif owner.customer_id != customer.id:
            claim = {
                "kind": claimed.kind,
                "address": claimed.address,
                "customer": owner.customer_id,
                "customer_number": owner.external_id,
                "verified": False,
            }
            if claim not in claims:
                claims.append(claim)
                changed = True
    if not changed:
        return customer
    attributes = {**(customer.facts.attributes if customer.facts else {}), "claims": claims}
    await connection.execute(
        update(customers).where(customers.c.id == customer.id).values(attributes=attributes)
    )
    facts = (
        msgspec.structs.replace(customer.facts, attributes=attributes) if customer.facts else None
    )
    return CustomerRef(customer.id, customer.known, customer.name, facts)
