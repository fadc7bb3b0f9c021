"""Which customer a sender is, when the channel says more than an address.

A channel may vouch for the sender (a signed customer number), doubt them (a sender address
that failed authentication) or pass on what they only claimed (a typed email). The writes run
inside the ingest transaction, after the rules decided on what ``hub.ingest.customer`` foresaw
of them; both follow the same pure rules (:func:`vouching`, :func:`unverified`,
:func:`claimed_attributes`), so what rules saw is what is stored unless another message changed
the customer in between.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, Literal

import msgspec
from sqlalchemy import and_, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.customers.context import CustomerRef, facts_from_row, facts_query
from hub.customers.merge import merge
from hub.envelope import Envelope, Identity
from hub.ids import new_id
from hub.store.database import insert_ignoring_conflicts
from hub.store.identities import identity_owner
from hub.store.schema import customers, events, identities
from rules.context import CustomerFacts

Key = tuple[str, str]  # an identity's (kind, address)
Owner = tuple[str, str | None]  # the customer id and customer number that own an address


def key_of(identity: Identity) -> Key:
    return (identity.kind, identity.address)


def vouching(
    owner_id: str | None, owner_kind: str | None, vouched_id: str
) -> Literal["link", "merge", "clash", "keep"]:
    """What vouching for ``vouched_id`` does to a sender address owned by ``owner_id``: a free
    address is linked to the customer, a prospect's is merged in (undoably), one that belongs to
    another customer stays there (the clash is audited)."""
    if owner_id is None:
        return "link"
    if owner_id == vouched_id:
        return "keep"
    return "merge" if owner_kind == "prospect" else "clash"


def unverified(envelope: Envelope, claimed: CustomerRef, customer_id: str) -> CustomerRef:
    """The prospect a message gets whose sender may be forged but is a known customer's address:
    it is not attached to that customer (the agent sees whom it claims to be)."""
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
    facts = CustomerFacts(id=customer_id, name=sender.display_name or "", attributes=attributes)
    return CustomerRef(customer_id, False, sender.display_name, facts)


def claimed_attributes(
    attributes: Mapping[str, Any],
    customer_id: str,
    claimed: Sequence[Identity],
    owners: Mapping[Key, Owner],
) -> dict[str, Any] | None:
    """``attributes`` with the addresses the sender claimed that someone else owns recorded as
    unproven claims (never merged), or None when no claim is new."""
    claims = list(attributes.get("claims", []))
    changed = False
    for identity in claimed:
        owner = owners.get(key_of(identity))
        if owner is None or owner[0] == customer_id:
            continue
        claim = {
            "kind": identity.kind,
            "address": identity.address,
            "customer": owner[0],
            "customer_number": owner[1],
            "verified": False,
        }
        if claim not in claims:
            claims.append(claim)
            changed = True
    return {**attributes, "claims": claims} if changed else None


def with_attributes(customer: CustomerRef, attributes: dict[str, Any]) -> CustomerRef:
    facts = (
        msgspec.structs.replace(customer.facts, attributes=attributes) if customer.facts else None
    )
    return CustomerRef(customer.id, customer.known, customer.name, facts)


def _owners_query(base: Any) -> Any:
    return base.add_columns(identities.c.kind.label("identity_kind"), identities.c.address).join(
        identities, identities.c.customer_id == customers.c.id
    )


# built once: building this statement cost about as much as running it, every batch
_OWNERS_WITH_FACTS = _owners_query(facts_query())
_OWNERS = _owners_query(select(customers))


async def owner_rows(
    connection: AsyncConnection, wanted: Collection[Key], *, facts: bool = True
) -> dict[Key, dict[str, Any]]:
    """The customers that own the wanted addresses, with everything rules see of them (or,
    without ``facts``, only their own row: no figures, no open conversations counted), as
    dicts by address: one statement, using the (kind, address) index."""
    if not wanted:
        return {}
    result = await connection.execute(
        (_OWNERS_WITH_FACTS if facts else _OWNERS).where(
            and_(
                identities.c.kind.in_({kind for kind, _ in wanted}),
                identities.c.address.in_({address for _, address in wanted}),
            )
        )
    )
    names = list(result.keys())  # rows as dicts by zipping: many times faster than _mapping
    found = {}
    for row in result:
        if (key := (row.identity_kind, row.address)) in wanted:
            found[key] = dict(zip(names, row, strict=True))
    return found


def customer_of(row: Mapping[Any, Any], now: float) -> CustomerRef:
    """A customer row of :func:`owner_rows` (or ``facts_query``) as rules see them."""
    facts = facts_from_row(row, now, row.get("open_conversations") or 0)
    return CustomerRef(row["id"], facts.known, row["name"], facts)


async def identify(
    connection: AsyncConnection,
    senders: Sequence[Identity],
    now: float,
    prospect_ids: Mapping[Key, str] | None = None,
) -> dict[Key, CustomerRef]:
    """Resolve each sender identity to one customer, creating prospects for new addresses
    (with the id ``prospect_ids`` gives, when it does). The facts are the customer's own row
    only (no figures, no open conversations): the rules read theirs before the transaction.

    Concurrent first messages from one address (another hub process, say) still yield one
    customer: the identity's unique constraint decides, and a losing prospect is removed.
    """
    wanted = {key_of(sender): sender for sender in senders}
    found = await _customers(connection, wanted, now)
    missing = [key for key in wanted if key not in found]
    if missing:
        created = {key: (prospect_ids or {}).get(key) or new_id(now) for key in missing}
        await connection.execute(
            customers.insert(),
            [
                {"id": cid, "kind": "prospect", "name": wanted[key].display_name, "created_at": now}
                for key, cid in created.items()
            ],
        )
        await connection.execute(
            insert_ignoring_conflicts(connection, identities),
            [
                {
                    "id": new_id(now),
                    "customer_id": cid,
                    "kind": key[0],
                    "address": key[1],
                    "display_name": wanted[key].display_name,
                    "created_at": now,
                }
                for key, cid in created.items()
            ],
        )
        found = await _customers(connection, wanted, now)
        losers = [cid for key, cid in created.items() if found[key].id != cid]
        if losers:
            await connection.execute(delete(customers).where(customers.c.id.in_(losers)))
    return found


async def _customers(
    connection: AsyncConnection, wanted: Mapping[Key, Identity], now: float
) -> dict[Key, CustomerRef]:
    # the rules decided before the transaction: what it needs of a customer is in its own row
    rows = await owner_rows(connection, wanted.keys(), facts=False)
    return {key: customer_of(row, now) for key, row in rows.items()}


async def link_vouched(connection: AsyncConnection, batch: Sequence[Envelope], now: float) -> None:
    """Attach senders to the customers their channel vouched for (signed customer ids), as
    :func:`vouching` says."""
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
        action = vouching(
            owner.customer_id if owner else None, owner.kind if owner else None, customer_id
        )
        if action == "link":
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
        elif action == "merge":
            await merge(
                connection,
                owner.customer_id,
                customer_id,
                now=now,
                reason=f"{envelope.channel} vouched for customer {envelope.vouched_customer}",
            )
        elif action == "clash":
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
    connection: AsyncConnection,
    envelope: Envelope,
    claimed: CustomerRef,
    now: float,
    customer_id: str | None = None,
) -> CustomerRef:
    """Store the :func:`unverified` prospect (with id ``customer_id``, or a new one)."""
    prospect = unverified(envelope, claimed, customer_id or new_id(now))
    sender = envelope.sender
    await connection.execute(
        customers.insert(),
        {
            "id": prospect.id,
            "kind": "prospect",
            "name": sender.display_name,
            "created_at": now,
            "attributes": prospect.facts.attributes if prospect.facts else None,
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
                "prospect": prospect.id,
            },
        },
    )
    return prospect


async def attach_claims(
    connection: AsyncConnection, envelope: Envelope, customer: CustomerRef, now: float
) -> CustomerRef:
    """Addresses the sender gave without proof: a free one becomes theirs; one that belongs to
    someone else is only recorded as a claim for the agent to check (never merged)."""
    owners: dict[Key, Owner] = {}
    for claimed in envelope.claimed:
        owner = await identity_owner(connection, claimed.kind, claimed.address)
        if owner is not None:
            owners[key_of(claimed)] = (owner.customer_id, owner.external_id)
            continue
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
    attributes = claimed_attributes(
        customer.facts.attributes if customer.facts else {}, customer.id, envelope.claimed, owners
    )
    if attributes is None:
        return customer
    await connection.execute(
        update(customers).where(customers.c.id == customer.id).values(attributes=attributes)
    )
    return with_attributes(customer, attributes)
