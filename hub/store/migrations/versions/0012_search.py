"""Full-text search over message text, subjects and customers (issue 18).

SQLite: FTS5 tables over ``messages`` (text, subject) and ``customers`` (name, company,
customer number) as external-content indexes keyed by the rowid, kept in step by triggers, so
no writer of those tables has to know about them (ingest, replies, erasure). ``VACUUM`` may
renumber rowids, so ``hub.privacy.erase.compact`` rebuilds both indexes after one.

PostgreSQL: GIN indexes over ``to_tsvector('simple', …)`` expressions (``hub.search.sql``
uses the very same expressions). The ``simple`` configuration does not stem: the hub serves
German and English text in one column, and a stemmer for either language would mangle the
other's words and customer numbers alike. Everything but letters and digits becomes a space
first, so both databases cut text into the same words (PostgreSQL's parser alone keeps
``R-2211`` as ``r`` and ``-2211`` and an address as one word); neither folds diacritics, for
the same reason (``Müller`` finds ``Müller`` and ``müller``, not ``Muller``).

Also an index on identity addresses, for finding a customer by an exact address, and
``customer_notes``: what agents keep on a customer (the console's customer panel), and an
index for the inbox views (``GET /api/conversations``: by state, newest change first).

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

#: the indexed text, identical in hub/search/sql.py (an expression index is used only for
#: the expression it was built on)
MESSAGE_DOCUMENT = (
    "to_tsvector('simple', regexp_replace(coalesce(subject, '') || ' ' || text, "
    "'[^[:alnum:]]+', ' ', 'g'))"
)
CUSTOMER_DOCUMENT = (
    "to_tsvector('simple', regexp_replace(coalesce(name, '') || ' ' || coalesce(company, '') "
    "|| ' ' || coalesce(external_id, ''), '[^[:alnum:]]+', ' ', 'g'))"
)

_SQLITE_UP = [
    "CREATE VIRTUAL TABLE messages_fts USING fts5(text, subject, content='messages', "
    "content_rowid='rowid', tokenize='unicode61 remove_diacritics 0')",
    "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN "
    "INSERT INTO messages_fts(rowid, text, subject) VALUES (new.rowid, new.text, new.subject); "
    "END",
    "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, text, subject) "
    "VALUES ('delete', old.rowid, old.text, old.subject); END",
    "CREATE TRIGGER messages_fts_update AFTER UPDATE OF text, subject ON messages BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, text, subject) "
    "VALUES ('delete', old.rowid, old.text, old.subject); "
    "INSERT INTO messages_fts(rowid, text, subject) VALUES (new.rowid, new.text, new.subject); "
    "END",
    "INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')",
    "CREATE VIRTUAL TABLE customers_fts USING fts5(name, company, external_id, "
    "content='customers', content_rowid='rowid', tokenize='unicode61 remove_diacritics 0')",
    "CREATE TRIGGER customers_fts_insert AFTER INSERT ON customers BEGIN "
    "INSERT INTO customers_fts(rowid, name, company, external_id) "
    "VALUES (new.rowid, new.name, new.company, new.external_id); END",
    "CREATE TRIGGER customers_fts_delete AFTER DELETE ON customers BEGIN "
    "INSERT INTO customers_fts(customers_fts, rowid, name, company, external_id) "
    "VALUES ('delete', old.rowid, old.name, old.company, old.external_id); END",
    "CREATE TRIGGER customers_fts_update AFTER UPDATE OF name, company, external_id "
    "ON customers BEGIN "
    "INSERT INTO customers_fts(customers_fts, rowid, name, company, external_id) "
    "VALUES ('delete', old.rowid, old.name, old.company, old.external_id); "
    "INSERT INTO customers_fts(rowid, name, company, external_id) "
    "VALUES (new.rowid, new.name, new.company, new.external_id); END",
    "INSERT INTO customers_fts(customers_fts) VALUES ('rebuild')",
]
_SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS messages_fts_insert",
    "DROP TRIGGER IF EXISTS messages_fts_delete",
    "DROP TRIGGER IF EXISTS messages_fts_update",
    "DROP TABLE IF EXISTS messages_fts",
    "DROP TRIGGER IF EXISTS customers_fts_insert",
    "DROP TRIGGER IF EXISTS customers_fts_delete",
    "DROP TRIGGER IF EXISTS customers_fts_update",
    "DROP TABLE IF EXISTS customers_fts",
]


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for statement in _SQLITE_UP:
            op.execute(statement)
    else:
        op.execute(f"CREATE INDEX ix_messages_search ON messages USING gin ({MESSAGE_DOCUMENT})")
        op.execute(f"CREATE INDEX ix_customers_search ON customers USING gin ({CUSTOMER_DOCUMENT})")
    op.create_index("ix_identities_address", "identities", ["address"])
    op.create_index("ix_conversations_status_updated", "conversations", ["status", "updated_at"])
    op.create_table(
        "customer_notes",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("customer_id", sa.String(32), sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("author", sa.String(64), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
    )
    op.create_index("ix_customer_notes_customer_id", "customer_notes", ["customer_id"])


def downgrade() -> None:
    op.drop_table("customer_notes")
    op.drop_index("ix_conversations_status_updated", table_name="conversations")
    op.drop_index("ix_identities_address", table_name="identities")
    if op.get_bind().dialect.name == "sqlite":
        for statement in _SQLITE_DOWN:
            op.execute(statement)
    else:
        op.execute("DROP INDEX IF EXISTS ix_messages_search")
        op.execute("DROP INDEX IF EXISTS ix_customers_search")
