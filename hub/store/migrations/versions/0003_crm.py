"""CRM data: customer numbers, company, manual tier, tags and attributes; orders, invoices and
computed customer stats (ABC tier, RFM, punctuality).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ID = sa.String(32)


def upgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("external_id", sa.String(128)))
        batch.add_column(sa.Column("company", sa.Text))
        batch.add_column(sa.Column("tier_override", sa.String(1)))
        batch.add_column(sa.Column("tags", sa.JSON))
        batch.add_column(sa.Column("attributes", sa.JSON))
        batch.add_column(sa.Column("updated_at", sa.Double))
        batch.create_unique_constraint("uq_customers_external_id", ["external_id"])
    op.create_table(
        "orders",
        sa.Column("id", ID, primary_key=True),
        sa.Column("external_id", sa.String(128), nullable=False, unique=True),
        sa.Column("customer_id", ID, sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("ordered_at", sa.Double, nullable=False),
        sa.Column("amount_cents", sa.BigInteger, nullable=False),
        sa.Column("product", sa.Text),
    )
    op.create_index("ix_orders_customer_id", "orders", ["customer_id"])
    op.create_table(
        "invoices",
        sa.Column("id", ID, primary_key=True),
        sa.Column("external_id", sa.String(128), nullable=False, unique=True),
        sa.Column("customer_id", ID, sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("issued_at", sa.Double),
        sa.Column("due_at", sa.Double, nullable=False),
        sa.Column("paid_at", sa.Double),
        sa.Column("amount_cents", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_invoices_customer_id", "invoices", ["customer_id"])
    op.create_table(
        "customer_stats",
        sa.Column("customer_id", ID, sa.ForeignKey("customers.id"), primary_key=True),
        sa.Column("lifetime_value_cents", sa.BigInteger, nullable=False),
        sa.Column("revenue_window_cents", sa.BigInteger, nullable=False),
        sa.Column("orders_12m", sa.Integer, nullable=False),
        sa.Column("orders_window", sa.Integer, nullable=False),
        sa.Column("last_order_at", sa.Double),
        sa.Column("last_purchase", sa.Text),
        sa.Column("payment_punctuality", sa.Double),
        sa.Column("overdue_invoices", sa.Integer, nullable=False),
        sa.Column("abc", sa.String(1), nullable=False),
        sa.Column("rfm_r", sa.Integer, nullable=False),
        sa.Column("rfm_f", sa.Integer, nullable=False),
        sa.Column("rfm_m", sa.Integer, nullable=False),
        sa.Column("computed_at", sa.Double, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("customer_stats")
    op.drop_table("invoices")
    op.drop_table("orders")
    with op.batch_alter_table("customers") as batch:
        batch.drop_constraint("uq_customers_external_id", type_="unique")
        for column in (
            "updated_at",
            "attributes",
            "tags",
            "tier_override",
            "company",
            "external_id",
        ):
            batch.drop_column(column)
