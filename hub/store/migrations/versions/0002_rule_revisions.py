"""Rule revisions: every accepted rules file (hash, time, text), to explain routing later.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rule_revisions",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("loaded_at", sa.Double, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
    )
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("rules_digest", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("rules_digest")
    op.drop_table("rule_revisions")
