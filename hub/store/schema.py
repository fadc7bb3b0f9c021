"""Table definitions (SQLAlchemy Core). Alembic migrations in ``migrations/`` create them.

Times are seconds since the epoch (UTC) in double-precision columns: portable between SQLite and
PostgreSQL and cheap to compare. Ids are server-generated, time-ordered strings (see ``ids``).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData()

ID = String(32)

customers = Table(
    "customers",
    metadata,
    Column("id", ID, primary_key=True),
    Column("kind", String(16), nullable=False),  # customer | prospect
    Column("name", Text),
    Column("created_at", Double, nullable=False),
    Column("external_id", String(128), unique=True),  # the CRM's customer number
    Column("company", Text),
    Column("tier_override", String(1)),  # a manual tier wins over the computed one
    Column("tags", JSON),
    Column("attributes", JSON),
    Column("updated_at", Double),
)

identities = Table(
    "identities",
    metadata,
    Column("id", ID, primary_key=True),
    Column("customer_id", ID, ForeignKey("customers.id"), nullable=False, index=True),
    Column("kind", String(32), nullable=False),
    Column("address", String(512), nullable=False),
    Column("display_name", Text),
    Column("created_at", Double, nullable=False),
    UniqueConstraint("kind", "address", name="uq_identities_kind_address"),
)

#: the ``status`` of a conversation: waiting for an agent, with one, done (reopened by a reply)
QUEUED = "queued"
ASSIGNED = "assigned"
CLOSED = "closed"

conversations = Table(
    "conversations",
    metadata,
    Column("id", ID, primary_key=True),
    Column("customer_id", ID, ForeignKey("customers.id"), nullable=False, index=True),
    Column("channel", String(32), nullable=False),
    Column("inbox", String(64), nullable=False),
    Column("thread_key", String(512)),
    Column("status", String(16), nullable=False),  # queued | assigned | closed
    Column("queue", String(64), nullable=False),
    Column("priority", String(16), nullable=False),
    Column("assignee", String(64), index=True),
    Column("subject", Text),
    Column("decision", JSON),
    Column("rules_digest", String(64)),  # the rules revision that routed it
    Column("disposition", String(64)),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Column("queued_at", Double),
    Column("closed_at", Double),
    Index("ix_conversations_thread", "inbox", "thread_key", "status"),
    Index("ix_conversations_status", "status"),
    Index("ix_conversations_status_updated", "status", "updated_at"),  # inbox views
)

messages = Table(
    "messages",
    metadata,
    Column("id", ID, primary_key=True),
    Column("conversation_id", ID, ForeignKey("conversations.id"), nullable=False),
    Column("kind", String(16), nullable=False),  # message | note
    Column("direction", String(16), nullable=False),
    Column("channel", String(32), nullable=False),
    Column("inbox", String(64), nullable=False),
    Column("idempotency_key", String(512), nullable=False),
    Column("provider_id", String(256)),
    Column("author", String(64)),  # agent id for outbound messages and notes
    Column("text", Text, nullable=False),
    Column("html", Text),
    Column("subject", Text),
    Column("envelope", Text),  # the inbound Envelope as JSON, for replay and audits
    Column("rules", JSON),  # names of the rules that fired for this message
    Column("delivery_status", String(16)),
    Column("delivery_error", Text),
    Column("created_at", Double, nullable=False),
    UniqueConstraint("idempotency_key", name="uq_messages_idempotency_key"),
    Index("ix_messages_conversation", "conversation_id", "created_at"),
    Index("ix_messages_provider", "inbox", "provider_id"),
    # one provider message belongs to one reply: an earlier-attempt lookup can never record
    # another reply's message as this one's (issue 14)
    Index(
        "uq_messages_outbound_provider",
        "inbox",
        "provider_id",
        unique=True,
        sqlite_where=text("direction = 'outbound' AND provider_id IS NOT NULL"),
        postgresql_where=text("direction = 'outbound' AND provider_id IS NOT NULL"),
    ),
)

attachments = Table(
    "attachments",
    metadata,
    Column("id", ID, primary_key=True),
    Column("message_id", ID, ForeignKey("messages.id"), nullable=False, index=True),
    Column("name", Text, nullable=False),
    Column("content_type", String(255), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("blob_ref", String(128), nullable=False),
)

events = Table(
    "events",
    metadata,
    Column(
        "seq",
        Integer().with_variant(BigInteger, "postgresql"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("at", Double, nullable=False),
    Column("kind", String(64), nullable=False),
    Column("conversation_id", ID, index=True),
    Column("message_id", ID),
    Column("agent", String(64)),
    Column("data", JSON),
)

outbox = Table(
    "outbox",
    metadata,
    Column("message_id", ID, ForeignKey("messages.id"), primary_key=True),
    Column("inbox", String(64), nullable=False),
    Column("payload", Text, nullable=False),  # the Outbound as JSON
    Column("status", String(16), nullable=False),  # pending | sent | failed
    Column("attempts", Integer, nullable=False),
    Column("first_attempt_at", Double),  # when the first send attempt began (hub clock)
    Column("next_attempt_at", Double, nullable=False),
    Column("last_error", Text),
    Column("created_at", Double, nullable=False),
    Column("sent_at", Double),
    # which hub process has taken the reply to send, until when (a dead one's claim lapses)
    Column("claimed_by", String(64)),
    Column("claimed_until", Double),
    Index("ix_outbox_due", "status", "next_attempt_at"),
)

event_outbox = Table(
    "event_outbox",
    metadata,  # bus events committed with what they announce, deleted once published
    Column("id", ID, primary_key=True),  # time-ordered: the order they were committed in
    Column("topic", String(64), nullable=False),
    Column("event", Text, nullable=False),  # the event as the bus carries it (JSON)
    Column("created_at", Double, nullable=False),
    Column("conversation_id", ID, index=True),  # whose text it may carry (erasure deletes it)
    # the process that publishes it right after the commit, until when; then any relay may
    Column("claimed_by", String(64)),
    Column("claimed_until", Double),
    Index("ix_event_outbox_created", "created_at"),
)

leases = Table(
    "leases",
    metadata,  # one holder at a time per name (dispatch); token grows with every new holder
    Column("name", String(64), primary_key=True),
    Column("holder", String(128)),
    Column("token", BigInteger, nullable=False),
    Column("expires_at", Double, nullable=False),
)

opt_outs = Table(
    "opt_outs",
    metadata,  # addresses that asked one inbox to send nothing more (SMS STOP)
    Column("inbox", String(64), primary_key=True),
    Column("kind", String(32), primary_key=True),
    Column("address", String(512), primary_key=True),
    Column("keyword", String(32), nullable=False),
    Column("at", Double, nullable=False),
)

connector_state = Table(
    "connector_state",
    metadata,  # what a connector must remember across restarts (an IMAP mailbox position)
    Column("instance", String(64), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", Double, nullable=False),
)

sessions = Table(
    "sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("agent", String(64), nullable=False, index=True),
    Column("created_at", Double, nullable=False),
    Column("expires_at", Double, nullable=False, index=True),
    # fingerprint of the password hash the session was made with (hub.sessions)
    Column("credential", String(64), nullable=False),
)

routing_records = Table(
    "routing_records",
    metadata,
    # what the rules saw of an inbound message and what they decided (hub.ingest.record):
    # replayed by ``channelhub rules diff``; personal data, so exported, erased and expired
    Column("message_id", ID, ForeignKey("messages.id"), primary_key=True),
    Column("customer_id", ID, nullable=False, index=True),  # the message's customer
    Column("decided_at", Double, nullable=False, index=True),
    Column("data", LargeBinary, nullable=False),  # positional MessagePack
)

rule_revisions = Table(
    "rule_revisions",
    metadata,
    Column("digest", String(64), primary_key=True),
    Column("path", Text, nullable=False),
    Column("loaded_at", Double, nullable=False),
    Column("text", Text, nullable=False),
)

orders = Table(
    "orders",
    metadata,
    Column("id", ID, primary_key=True),
    Column("external_id", String(128), nullable=False, unique=True),
    Column("customer_id", ID, ForeignKey("customers.id"), nullable=False, index=True),
    Column("ordered_at", Double, nullable=False),
    Column("amount_cents", BigInteger, nullable=False),
    Column("product", Text),
)

customer_notes = Table(
    "customer_notes",
    metadata,  # what agents keep on a customer (shown with every conversation of theirs)
    Column("id", ID, primary_key=True),
    Column("customer_id", ID, ForeignKey("customers.id"), nullable=False, index=True),
    Column("author", String(64), nullable=False),
    Column("text", Text, nullable=False),
    Column("created_at", Double, nullable=False),
)

invoices = Table(
    "invoices",
    metadata,
    Column("id", ID, primary_key=True),
    Column("external_id", String(128), nullable=False, unique=True),
    Column("customer_id", ID, ForeignKey("customers.id"), nullable=False, index=True),
    Column("issued_at", Double),
    Column("due_at", Double, nullable=False),
    Column("paid_at", Double),
    Column("amount_cents", BigInteger, nullable=False),
)

customer_stats = Table(
    "customer_stats",
    metadata,
    Column("customer_id", ID, ForeignKey("customers.id"), primary_key=True),
    Column("lifetime_value_cents", BigInteger, nullable=False),
    Column("revenue_window_cents", BigInteger, nullable=False),
    Column("orders_12m", Integer, nullable=False),
    Column("orders_window", Integer, nullable=False),  # orders in the value window (RFM F)
    Column("last_order_at", Double),
    Column("last_purchase", Text),
    Column("payment_punctuality", Double),  # NULL until an invoice fell due
    Column("overdue_invoices", Integer, nullable=False),
    Column("abc", String(1), nullable=False),
    Column("rfm_r", Integer, nullable=False),
    Column("rfm_f", Integer, nullable=False),
    Column("rfm_m", Integer, nullable=False),
    Column("computed_at", Double, nullable=False),
)
