"""Outbox claims: the hub process sending a reply and until when it holds it.

With several hub processes on one PostgreSQL database, each takes due replies with
``SELECT … FOR UPDATE SKIP LOCKED`` and marks them ``claimed_by``/``claimed_until``, so one
process sends each reply and a dead process's claims lapse for another to take over (issue 17).
SQLite has one process and uses the same columns.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(64)))
        batch.add_column(sa.Column("claimed_until", sa.Double))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("claimed_until")
        batch.drop_column("claimed_by")
