"""Delivery tracking: find a reply by its provider id (status callbacks) and keep opt-outs.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_messages_provider", "messages", ["inbox", "provider_id"])
    op.create_table(
        "opt_outs",
        sa.Column("inbox", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("address", sa.String(512), primary_key=True),
        sa.Column("keyword", sa.String(32), nullable=False),
        sa.Column("at", sa.Double, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("opt_outs")
    op.drop_index("ix_messages_provider", "messages")
