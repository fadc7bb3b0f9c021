"""Leases: one holder at a time per name, with a fencing token.

The dispatch owner holds the ``dispatch`` lease; every assignment it writes carries the token
it got, and the store refuses a write whose token is not the lease's current one, so a paused
former owner can never assign (issue 17, docs/scaling.md).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(128)),
        sa.Column("token", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.Double, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("leases")
