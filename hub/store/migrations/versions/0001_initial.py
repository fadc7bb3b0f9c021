"""Initial schema: customers, identities, conversations, messages, attachments, events, outbox,
sessions.

Revision ID: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.String(32)


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", ID, primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.Text),
        sa.Column("created_at", sa.Double, nullable=False),
    )
    op.create_table(
        "identities",
        sa.Column("id", ID, primary_key=True),
        sa.Column("customer_id", ID, sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("address", sa.String(512), nullable=False),
        sa.Column("display_name", sa.Text),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.UniqueConstraint("kind", "address", name="uq_identities_kind_address"),
    )
    op.create_index("ix_identities_customer_id", "identities", ["customer_id"])
    op.create_table(
        "conversations",
        sa.Column("id", ID, primary_key=True),
        sa.Column("customer_id", ID, sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("inbox", sa.String(64), nullable=False),
        sa.Column("thread_key", sa.String(512)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("queue", sa.String(64), nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("assignee", sa.String(64)),
        sa.Column("subject", sa.Text),
        sa.Column("decision", sa.JSON),
        sa.Column("disposition", sa.String(64)),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
        sa.Column("queued_at", sa.Double),
        sa.Column("closed_at", sa.Double),
    )
    op.create_index("ix_conversations_customer_id", "conversations", ["customer_id"])
    op.create_index("ix_conversations_assignee", "conversations", ["assignee"])
    op.create_index("ix_conversations_thread", "conversations", ["inbox", "thread_key", "status"])
    op.create_index("ix_conversations_status", "conversations", ["status"])
    op.create_table(
        "messages",
        sa.Column("id", ID, primary_key=True),
        sa.Column("conversation_id", ID, sa.ForeignKey("conversations.id"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("inbox", sa.String(64), nullable=False),
        sa.Column("idempotency_key", sa.String(512), nullable=False),
        sa.Column("provider_id", sa.String(256)),
        sa.Column("author", sa.String(64)),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("html", sa.Text),
        sa.Column("subject", sa.Text),
        sa.Column("envelope", sa.Text),
        sa.Column("rules", sa.JSON),
        sa.Column("delivery_status", sa.String(16)),
        sa.Column("delivery_error", sa.Text),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.UniqueConstraint("idempotency_key", name="uq_messages_idempotency_key"),
    )
    op.create_index("ix_messages_conversation", "messages", ["conversation_id", "created_at"])
    op.create_table(
        "attachments",
        sa.Column("id", ID, primary_key=True),
        sa.Column("message_id", ID, sa.ForeignKey("messages.id"), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("content_type", sa.String(255), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("blob_ref", sa.String(128), nullable=False),
    )
    op.create_index("ix_attachments_message_id", "attachments", ["message_id"])
    op.create_table(
        "events",
        sa.Column(
            "seq",
            sa.Integer().with_variant(sa.BigInteger, "postgresql"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("conversation_id", ID),
        sa.Column("message_id", ID),
        sa.Column("agent", sa.String(64)),
        sa.Column("data", sa.JSON),
    )
    op.create_index("ix_events_conversation_id", "events", ["conversation_id"])
    op.create_table(
        "outbox",
        sa.Column("message_id", ID, sa.ForeignKey("messages.id"), primary_key=True),
        sa.Column("inbox", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.Double, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("sent_at", sa.Double),
    )
    op.create_index("ix_outbox_due", "outbox", ["status", "next_attempt_at"])
    op.create_table(
        "sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("agent", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("expires_at", sa.Double, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "sessions",
        "outbox",
        "events",
        "attachments",
        "messages",
        "conversations",
        "identities",
        "customers",
    ):
        op.drop_table(table)
