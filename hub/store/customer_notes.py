"""What agents record on a customer from the console: notes, and their verdict on a claim.

A claim is an address the sender gave that belongs to another customer (``attributes.claims``,
written by ``hub.customers.linking``); an agent who checked it confirms or rejects it. Either
way the claim stays a claim (customers are merged by a supervisor, ``POST
/api/customers/merge``), now with who checked it and when; the audit log gets
``identity.claim_confirmed`` or ``identity.claim_rejected``. Notes are audited without their
text (``customer.note_added``), so erasing the customer removes the text everywhere.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.errors import NotFound
from hub.ids import new_id
from hub.store.audit import record_event
from hub.store.database import Database
from hub.store.schema import conversations, customer_notes, customers

NOTES_SHOWN = 50


class ClaimUnknown(NotFound):
    """The conversation's customer has no claim of that kind and address."""


async def _customer_of(connection: AsyncConnection, conversation_id: str) -> str:
    found = (
        await connection.execute(
            select(conversations.c.customer_id).where(conversations.c.id == conversation_id)
        )
    ).scalar_one_or_none()
    if found is None:
        raise NotFound(f"conversation {conversation_id} does not exist")
    return str(found)


class CustomerNotes:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def of(self, customer_id: str) -> list[dict[str, Any]]:
        """The customer's newest notes, newest first."""
        async with self._db.read() as connection:
            rows = await connection.execute(
                select(
                    customer_notes.c.id,
                    customer_notes.c.author,
                    customer_notes.c.text,
                    customer_notes.c.created_at,
                )
                .where(customer_notes.c.customer_id == customer_id)
                .order_by(customer_notes.c.created_at.desc(), customer_notes.c.id.desc())
                .limit(NOTES_SHOWN)
            )
            return [dict(row._mapping) for row in rows]

    async def add(self, conversation_id: str, agent: str, text: str) -> str:
        """Keep ``text`` on the customer of ``conversation_id``; the note's id."""
        now = self._db.clock()
        note_id = new_id(now)

        async def write(connection: AsyncConnection) -> None:
            customer_id = await _customer_of(connection, conversation_id)
            await connection.execute(
                customer_notes.insert(),
                {
                    "id": note_id,
                    "customer_id": customer_id,
                    "author": agent,
                    "text": text,
                    "created_at": now,
                },
            )
            await record_event(
                connection,
                now,
                "customer.note_added",
                conversation_id=conversation_id,
                agent=agent,
                data={"customer_id": customer_id, "note": note_id},
            )

        await self._db.writer.call(write)
        return note_id

    async def judge_claim(
        self, conversation_id: str, agent: str, kind: str, address: str, confirmed: bool
    ) -> None:
        """Record ``agent``'s verdict on the claim; :class:`ClaimUnknown` if there is none."""
        now = self._db.clock()

        async def write(connection: AsyncConnection) -> None:
            customer_id = await _customer_of(connection, conversation_id)
            attributes = (
                await connection.execute(
                    select(customers.c.attributes).where(customers.c.id == customer_id)
                )
            ).scalar_one_or_none() or {}
            claims = [dict(claim) for claim in attributes.get("claims", [])]
            match = next(
                (c for c in claims if c.get("kind") == kind and c.get("address") == address), None
            )
            if match is None:
                raise ClaimUnknown(f"the customer claims no {kind} {address!r}")
            match.update(
                verified=confirmed, rejected=not confirmed, checked_by=agent, checked_at=now
            )
            await connection.execute(
                update(customers)
                .where(customers.c.id == customer_id)
                .values(attributes={**attributes, "claims": claims}, updated_at=now)
            )
            await record_event(
                connection,
                now,
                "identity.claim_confirmed" if confirmed else "identity.claim_rejected",
                conversation_id=conversation_id,
                agent=agent,
                data={
                    "kind": kind,
                    "address": address,
                    "customer_number": match.get("customer_number"),
                    "customer": match.get("customer"),
                },
            )

        await self._db.writer.call(write)
