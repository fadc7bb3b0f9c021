"""Routing records: what the rules saw of each inbound message and what they decided.

One row per inbound message, written in the ingest transaction: the envelope fields rules read
(besides text and subject, which the message row holds), the customer's facts as they were, the
moment, whether it started a conversation, and the decision with its rules revision, as
positional MessagePack. ``channelhub rules diff`` replays them through a changed rules file
(issue 20, docs/rules.md); the privacy code exports, erases and expires them (docs/privacy.md).

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "routing_records",
        sa.Column("message_id", sa.String(32), sa.ForeignKey("messages.id"), primary_key=True),
        sa.Column("customer_id", sa.String(32), nullable=False),
        sa.Column("decided_at", sa.Double, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_routing_records_customer_id", "routing_records", ["customer_id"])
    op.create_index("ix_routing_records_decided_at", "routing_records", ["decided_at"])


def downgrade() -> None:
    op.drop_index("ix_routing_records_decided_at", table_name="routing_records")
    op.drop_index("ix_routing_records_customer_id", table_name="routing_records")
    op.drop_table("routing_records")
