"""Identities: which customer owns a channel address."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.store.schema import customers, identities


async def identity_owner(connection: AsyncConnection, kind: str, address: str) -> Any:
    """The customer an identity belongs to (``customer_id``, ``kind``, ``external_id``) or None."""
    return (
        await connection.execute(
            select(identities.c.customer_id, customers.c.kind, customers.c.external_id)
            .join(customers, customers.c.id == identities.c.customer_id)
            .where(and_(identities.c.kind == kind, identities.c.address == address))
        )
    ).first()
