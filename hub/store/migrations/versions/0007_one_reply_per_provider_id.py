"""One provider message belongs to one reply; the outbox remembers a reply's first attempt.

A retry that looks for an earlier attempt's message (Twilio cannot deduplicate creates) may
only adopt a message created after the reply's first attempt whose provider id no other reply
holds (issue 14, item 1). Before this, a second reply with the same text could be recorded under
the first one's provider id and never sent: such later duplicates lose the provider id and say
so in ``delivery_error``, so the index can be built and an agent can see which replies to check.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

WHERE = "direction = 'outbound' AND provider_id IS NOT NULL"
UNBOUND = (
    "provider id also recorded for an earlier reply; this reply may never have been sent (issue 14)"
)


def upgrade() -> None:
    op.execute(
        sa.text(
            "UPDATE messages SET provider_id = NULL, delivery_error = :note "
            "WHERE direction = 'outbound' AND provider_id IS NOT NULL AND EXISTS ("
            "SELECT 1 FROM messages AS earlier WHERE earlier.inbox = messages.inbox "
            "AND earlier.provider_id = messages.provider_id "
            "AND earlier.direction = 'outbound' AND (earlier.created_at < messages.created_at "
            "OR (earlier.created_at = messages.created_at AND earlier.id < messages.id)))"
        ).bindparams(note=UNBOUND)
    )
    op.create_index(
        "uq_messages_outbound_provider",
        "messages",
        ["inbox", "provider_id"],
        unique=True,
        sqlite_where=sa.text(WHERE),
        postgresql_where=sa.text(WHERE),
    )
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("first_attempt_at", sa.Double))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("first_attempt_at")
    op.drop_index("uq_messages_outbound_provider", table_name="messages")
