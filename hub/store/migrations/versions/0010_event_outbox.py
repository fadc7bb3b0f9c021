"""The event outbox: bus events written in the transaction that makes them true.

Ingest commits a message and publishes its events on the bus afterwards; if that publish fails
(Redis unreachable) or the process dies in between, the provider's retry is a duplicate and
nothing would ever publish them. Each event is therefore a row here, written in the ingest
transaction, deleted once published; a relay on every hub process publishes the rows nobody
has confirmed (issue 17, docs/scaling.md).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "event_outbox",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("topic", sa.String(64), nullable=False),
        sa.Column("event", sa.Text, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("conversation_id", sa.String(32)),
        sa.Column("claimed_by", sa.String(64)),
        sa.Column("claimed_until", sa.Double),
    )
    op.create_index("ix_event_outbox_created", "event_outbox", ["created_at"])
    op.create_index("ix_event_outbox_conversation_id", "event_outbox", ["conversation_id"])


def downgrade() -> None:
    op.drop_index("ix_event_outbox_conversation_id", table_name="event_outbox")
    op.drop_index("ix_event_outbox_created", table_name="event_outbox")
    op.drop_table("event_outbox")
