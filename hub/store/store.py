"""The store the hub talks to: one handle over the store's aggregates.

Each aggregate is a small module over its own tables and returns typed records
(``hub.store.records``): ``conversations``, ``messages``, ``replies``, ``outbox``,
``assignments`` (dispatch's writes), ``events`` (the event outbox), ``sessions``,
``revisions``, ``connector_state``, ``opt_outs``, ``attachments``, ``leases`` (one holder
at a time, own transactions) and ``readiness``; inbound envelopes are stored in batches by
``hub.ingest`` through the same writer. They share one :class:`~hub.store.database.Database`:
reads on pooled connections, writes through its group-committing writer. :class:`Store` gives
their methods the names callers use, so the hub holds one object and each method lives with
its tables.
"""

from __future__ import annotations

import time

from hub.store.assignments import Assignments
from hub.store.attachments import Attachments
from hub.store.calls import CallEvents
from hub.store.connector_state import ConnectorStates
from hub.store.conversations import Conversations, CustomerContexts, bare_contexts
from hub.store.customer_notes import CustomerNotes
from hub.store.database import Clock, Database
from hub.store.event_outbox import EventOutbox
from hub.store.leases import Leases
from hub.store.messages import Messages
from hub.store.opt_outs import OptOuts
from hub.store.outbox import Outbox
from hub.store.readiness import Readiness
from hub.store.replies import Replies
from hub.store.revisions import RulesRevisions
from hub.store.sessions import AgentSessions


class Store:
    """Conversations, messages, customers, sessions and the outbox, on SQLite or PostgreSQL.

    Each public name is bound to an aggregate's method when the store is made, so a method is
    defined (signature, docstring) once, where its tables are; ``engine``, ``writer``,
    ``clock`` and ``read`` are the shared database's, for ``hub.customers.repository``.
    ``customer_contexts`` is what a conversation shows of its customer
    (``hub.customers.context.customer_contexts`` in the hub; without it, only their id).
    """

    def __init__(
        self,
        url: str,
        *,
        sqlite_synchronous: str = "full",
        sqlite_calls: str = "inline",
        batch_max: int = 256,
        clock: Clock = time.time,
        customer_contexts: CustomerContexts = bare_contexts,
    ) -> None:
        database = Database(
            url,
            sqlite_synchronous=sqlite_synchronous,
            sqlite_calls=sqlite_calls,
            batch_max=batch_max,
            clock=clock,
        )
        self._database = database
        self.engine = database.engine
        self.writer = database.writer
        self.clock = clock
        self.read = database.read
        readiness = Readiness(database)
        self.ping = readiness.ping
        self.write_problem = readiness.write_problem
        self._bind_conversations(database, customer_contexts)
        self._bind_dispatch(database)
        self._bind_replies(database)
        self._bind_channels(database)

    def _bind_conversations(self, database: Database, contexts: CustomerContexts) -> None:
        """Conversations, their messages and what agents note on customers."""
        conversations = Conversations(database, contexts)
        self.conversation = conversations.get
        self.conversation_for_reply = conversations.for_reply
        self.conversations = conversations.many
        self.conversations_with_status = conversations.with_status
        self.queued_pages = conversations.queued_pages
        self.queued_on_thread = conversations.queued_on_thread
        self.last_agent = conversations.last_agent
        self.history = Messages(database).history
        notes = CustomerNotes(database)
        self.customer_notes = notes.of
        self.add_customer_note = notes.add
        self.judge_claim = notes.judge_claim

    def _bind_dispatch(self, database: Database) -> None:
        """Dispatch's fenced writes and the leases that fence them."""
        assignments = Assignments(database)
        self.assign = assignments.assign
        self.requeue = assignments.requeue
        self.move = assignments.move
        self.close_conversation = assignments.close
        self.audit = assignments.audit
        self.fence_dispatch = assignments.fence
        leases = Leases(database)
        self.claim_lease = leases.claim
        self.release_lease = leases.release

    def _bind_replies(self, database: Database) -> None:
        """Replies, the reply outbox and the event outbox."""
        self.add_reply = Replies(database).add
        outbox = Outbox(database)
        self.due_outbox = outbox.due
        self.claim_outbox = outbox.claim
        self.release_outbox_claims = outbox.release_claims
        self.begin_attempt = outbox.begin_attempt
        self.record_delivery = outbox.record_delivery
        self.update_delivery = outbox.update_delivery
        self._events = events = EventOutbox(database)
        self.add_events = events.add
        self.claim_events = events.claim
        self.events_done = events.done
        self.delete_published_events = events.delete_published
        self.release_events = events.release
        self.event_backlog = events.backlog

    def _bind_channels(self, database: Database) -> None:
        """What channels keep: opt-outs, files, calls, connector state, rules, sessions."""
        opt_outs = OptOuts(database)
        self.set_opt_out = opt_outs.set
        self.opted_out = opt_outs.keyword
        self.attachment = Attachments(database).get
        self.record_call_event = CallEvents(database).record

        states = ConnectorStates(database)
        self.connector_state = states.get
        self.save_connector_state = states.save
        self.delete_connector_state = states.delete
        self.connector_state_keys = states.keys

        revisions = RulesRevisions(database)
        self.record_rules_revision = revisions.record
        self.rules_revision = revisions.get

        sessions = AgentSessions(database)
        self.create_session = sessions.create
        self.sessions = sessions.find
        self.delete_sessions = sessions.delete
        self.purge_sessions = sessions.purge

    async def start(self, *, run_migrations: bool = True) -> None:
        """Apply pending migrations and start the writer."""
        await self._database.start(run_migrations=run_migrations)

    async def close(self) -> None:
        """Commit what is queued, then close the writer and the pool."""
        self._events.flush()  # published events' rows go, or they are published again
        await self._database.close()
