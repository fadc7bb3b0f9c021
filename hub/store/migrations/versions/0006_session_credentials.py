"""Sessions bound to the credential they were made with, and indexed for revocation.

A session row records a fingerprint of the agent's password hash at login; when hub.yaml's
hash changes, every older session stops working. Sessions from before this migration carry no
fingerprint, so they are removed: agents log in once more after the upgrade.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DELETE FROM sessions")
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("credential", sa.String(64), nullable=False))
    op.create_index("ix_sessions_agent", "sessions", ["agent"])
    op.create_index("ix_sessions_expires_at", "sessions", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_sessions_expires_at", table_name="sessions")
    op.drop_index("ix_sessions_agent", table_name="sessions")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("credential")
