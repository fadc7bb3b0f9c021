"""Storing a batch of inbound envelopes in one transaction: dedupe, identify, decide, thread.

Each stage is a function over the whole batch so that the number of statements per batch stays
constant (a handful), whatever its size. The rules decision is a pure function passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import msgspec
from sqlalchemy import and_, bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.customers.context import CustomerRef, facts_from_row, facts_query
from hub.customers.linking import (
    attach_claims,
    link_vouched,
    remember_crm,
    unverified_prospect,
)
from hub.customers.providers import Lookup, overlay
from hub.envelope import Envelope, Identity, Outbound, encode_envelope, reply_to
from hub.ids import new_id
from hub.store.audit import event_row
from hub.store.database import insert_ignoring_conflicts
from hub.store.schema import (
    attachments,
    conversations,
    customers,
    events,
    identities,
    messages,
    outbox,
)
from rules.decision import Decision

QUEUED = "queued"
ASSIGNED = "assigned"
CLOSED = "closed"


Decide = Callable[[Envelope, CustomerRef], Decision]


@dataclass(frozen=True, slots=True)
class Stored:
    """What happened to one envelope of a batch."""

    message_id: str
    conversation_id: str
    duplicate: bool
    conversation_created: bool = False
    reopened: bool = False
    status: str = QUEUED
    assignee: str | None = None
    queue: str | None = None
    priority: str | None = None
    queued_at: float | None = None
    customer_id: str | None = None
    auto_reply: Outbound | None = None
    skills: tuple[str, ...] = ()
    preferred_agent: str | None = None
    sla: float | None = None
    attachment_ids: tuple[str, ...] = ()  # in the order of the envelope's attachments


def outbox_row(outbound: Outbound, now: float) -> dict[str, object]:
    """The outbox entry that makes the sender deliver ``outbound``."""
    return {
        "message_id": outbound.message_id,
        "inbox": outbound.inbox,
        "payload": msgspec.json.encode(outbound).decode(),
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


def outbound_row(outbound: Outbound, channel: str, kind: str = "message") -> dict[str, object]:
    """The messages row of a reply we send."""
    return {
        "id": outbound.message_id,
        "conversation_id": outbound.conversation_id,
        "kind": kind,
        "direction": "outbound",
        "channel": channel,
        "inbox": outbound.inbox,
        "idempotency_key": outbound.idempotency_key,
        "provider_id": None,
        "author": outbound.author,
        "text": outbound.text,
        "html": None,
        "subject": outbound.subject,
        "envelope": None,
        "rules": None,
        "delivery_status": "queued",
        "delivery_error": None,
        "created_at": outbound.created_at,
    }


async def find_duplicates(
    connection: AsyncConnection, batch: Sequence[Envelope]
) -> dict[str, tuple[str, str]]:
    """Idempotency keys already stored, with their message and conversation ids."""
    keys = list({envelope.idempotency_key for envelope in batch})
    rows = await connection.execute(
        select(messages.c.idempotency_key, messages.c.id, messages.c.conversation_id).where(
            messages.c.idempotency_key.in_(keys)
        )
    )
    return {row.idempotency_key: (row.id, row.conversation_id) for row in rows}


async def identify(
    connection: AsyncConnection, senders: Sequence[Identity], now: float
) -> dict[tuple[str, str], CustomerRef]:
    """Resolve each sender identity to one customer, creating prospects for new addresses.

    Concurrent first messages from one address (another hub process, say) still yield one
    customer: the identity's unique constraint decides, and a losing prospect is removed.
    """
    wanted = {(sender.kind, sender.address): sender for sender in senders}
    found = await _load_identities(connection, wanted, now)
    missing = [key for key in wanted if key not in found]
    if missing:
        created = {key: new_id(now) for key in missing}
        await connection.execute(
            customers.insert(),
            [
                {"id": cid, "kind": "prospect", "name": wanted[key].display_name, "created_at": now}
                for key, cid in created.items()
            ],
        )
        await connection.execute(
            insert_ignoring_conflicts(connection, identities),
            [
                {
                    "id": new_id(now),
                    "customer_id": cid,
                    "kind": key[0],
                    "address": key[1],
                    "display_name": wanted[key].display_name,
                    "created_at": now,
                }
                for key, cid in created.items()
            ],
        )
        found = await _load_identities(connection, wanted, now)
        losers = [cid for key, cid in created.items() if found[key].id != cid]
        if losers:
            await connection.execute(delete(customers).where(customers.c.id.in_(losers)))
    return found


async def _load_identities(
    connection: AsyncConnection, wanted: dict[tuple[str, str], Identity], now: float
) -> dict[tuple[str, str], CustomerRef]:
    """Customers (with everything rules see of them) behind the wanted identities: one query,
    using the (kind, address) index."""
    rows = await connection.execute(
        facts_query()
        .add_columns(identities.c.kind.label("identity_kind"), identities.c.address)
        .join(identities, identities.c.customer_id == customers.c.id)
        .where(
            and_(
                identities.c.kind.in_({kind for kind, _ in wanted}),
                identities.c.address.in_({address for _, address in wanted}),
            )
        )
    )
    found: dict[tuple[str, str], CustomerRef] = {}
    for row in rows:
        key = (row.identity_kind, row.address)
        if key in wanted:
            facts = facts_from_row(row._mapping, now, row.open_conversations or 0)
            found[key] = CustomerRef(row.id, facts.known, row.name, facts)
    return found


async def open_threads(
    connection: AsyncConnection, batch: Sequence[Envelope]
) -> dict[tuple[str, str], dict[str, object]]:
    """Open (not closed) conversations for the batch's thread keys, by (inbox, thread key)."""
    sessions = {envelope.thread.session for envelope in batch if envelope.thread.session}
    if not sessions:
        return {}
    rows = await connection.execute(
        select(
            conversations.c.id,
            conversations.c.inbox,
            conversations.c.thread_key,
            conversations.c.customer_id,
            conversations.c.status,
            conversations.c.assignee,
            conversations.c.queue,
            conversations.c.priority,
            conversations.c.queued_at,
        ).where(and_(conversations.c.thread_key.in_(sessions), conversations.c.status != CLOSED))
    )
    return {(row.inbox, row.thread_key): dict(row._mapping) for row in rows}


async def linked_threads(
    connection: AsyncConnection, batch: Sequence[Envelope]
) -> dict[int, dict[str, object]]:
    """Conversations (open or closed) that envelopes name by a verified conversation id or by
    the provider ids they answer, by batch position; the same row object per conversation.

    A conversation id is only taken within its inbox; of the referenced messages, In-Reply-To
    wins, then the newest entry of References that is stored in the same inbox. Whether the
    sender may join the conversation found is decided by the caller (:func:`joins`)."""
    wanted_ids = {e.thread.conversation for e in batch if e.thread.conversation}
    refs = {
        ref for e in batch for ref in (*e.thread.references, *filter(None, [e.thread.in_reply_to]))
    }
    if not wanted_ids and not refs:
        return {}
    columns = (
        conversations.c.id,
        conversations.c.inbox,
        conversations.c.thread_key,
        conversations.c.customer_id,
        conversations.c.status,
        conversations.c.assignee,
        conversations.c.queue,
        conversations.c.priority,
        conversations.c.queued_at,
    )
    rows: dict[str, dict[str, object]] = {}
    if wanted_ids:
        for row in await connection.execute(
            select(*columns).where(conversations.c.id.in_(wanted_ids))
        ):
            rows[row.id] = dict(row._mapping)
    by_ref: dict[tuple[str, str], str] = {}
    if refs:
        inboxes = {e.inbox for e in batch}
        found = await connection.execute(
            select(messages.c.inbox, messages.c.provider_id, *columns)
            .join(conversations, conversations.c.id == messages.c.conversation_id)
            .where(and_(messages.c.inbox.in_(inboxes), messages.c.provider_id.in_(refs)))
            .order_by(messages.c.created_at)
        )
        for ref_row in found:
            mapping = dict(ref_row._mapping)
            by_ref[(str(mapping.pop("inbox")), str(mapping.pop("provider_id")))] = str(ref_row.id)
            mapping["inbox"] = ref_row.inbox
            rows.setdefault(str(ref_row.id), mapping)
    linked: dict[int, dict[str, object]] = {}
    for index, envelope in enumerate(batch):
        hint = envelope.thread.conversation
        if hint and hint in rows and rows[hint]["inbox"] == envelope.inbox:
            linked[index] = rows[hint]
            continue
        candidates = [*filter(None, [envelope.thread.in_reply_to])]
        candidates.extend(reversed(envelope.thread.references))
        for ref in candidates:
            conversation_id = by_ref.get((envelope.inbox, ref))
            if conversation_id is not None:
                linked[index] = rows[conversation_id]
                break
    return linked


def joins(thread: dict[str, object], envelope: Envelope, customer: CustomerRef) -> bool:
    """Whether a message whose references name ``thread`` may join it: only its customer's.

    Knowing a Message-ID (someone was in Cc, or a forwarded mail showed it), or even holding
    one of our signed ids, proves nothing about who writes: a stranger who could join would see
    their text shown with the customer's context and receive the agent's answer. So the sender
    must resolve to the conversation's customer (one of its identities), and a sender whose
    authentication failed never joins. A delivery report (a bounce) joins the conversation
    its verified token names: only a mail we sent carries that token."""
    if envelope.thread.delivery_report:
        return envelope.thread.conversation == thread["id"]
    return envelope.sender_verified and thread["customer_id"] == customer.id


def claim_note(envelope: Envelope, claimed: str) -> Envelope:
    """``envelope`` flagged for the agent as claiming to continue conversation ``claimed``."""
    metadata = dict(envelope.metadata)
    problems = [str(item) for item in metadata.get("problems") or []][:9]
    problems.append(
        f"This message claims to continue conversation {claimed}, but its sender is not that "
        "conversation's customer (or failed authentication): it was opened as a conversation "
        "of its own. Check who wrote it before sharing anything."
    )
    metadata["claims_conversation"] = claimed
    metadata["problems"] = problems
    return msgspec.structs.replace(envelope, metadata=metadata)


async def store_batch(
    connection: AsyncConnection,
    batch: list[Envelope],
    decide: Decide,
    now: float,
    external: Sequence[Lookup | None] | None = None,
) -> list[Stored]:
    """Store every new envelope of ``batch``; return one :class:`Stored` per envelope, in order."""
    existing = await find_duplicates(connection, batch)
    fresh: list[int] = []
    first_of_key: dict[str, int] = {}
    for index, envelope in enumerate(batch):
        key = envelope.idempotency_key
        if key not in existing and key not in first_of_key:
            first_of_key[key] = index
            fresh.append(index)
    results: list[Stored | None] = [None] * len(batch)
    if fresh:
        await _store_fresh(connection, batch, fresh, decide, now, results, external)
    for index, envelope in enumerate(batch):
        if results[index] is None:
            key = envelope.idempotency_key
            if key in existing:
                message_id, conversation_id = existing[key]
            else:
                original = results[first_of_key[key]]
                assert original is not None
                message_id, conversation_id = original.message_id, original.conversation_id
            results[index] = Stored(message_id, conversation_id, duplicate=True)
    return [result for result in results if result is not None]


async def _store_fresh(
    connection: AsyncConnection,
    batch: list[Envelope],
    fresh: list[int],
    decide: Decide,
    now: float,
    results: list[Stored | None],
    external: Sequence[Lookup | None] | None,
) -> None:
    await link_vouched(connection, [batch[index] for index in fresh], now)
    customers_by_identity = await identify(
        connection, [batch[index].sender for index in fresh], now
    )
    threads = await open_threads(connection, [batch[index] for index in fresh])
    linked = await linked_threads(connection, [batch[index] for index in fresh])
    for row in threads.values():  # one row object per conversation, whichever way it is found
        for position, other in linked.items():
            if other["id"] == row["id"]:
                linked[position] = row
    reopened_rows: dict[str, dict[str, object]] = {}
    new_conversations: list[dict[str, object]] = []
    touched: dict[str, float] = {}
    message_rows: list[dict[str, object]] = []
    attachment_rows: list[dict[str, object]] = []
    event_rows: list[dict[str, object]] = []  # all built by event_row: one shape per batch
    replies: list[Outbound] = []
    for position, index in enumerate(fresh):
        envelope = batch[index]
        customer = customers_by_identity[(envelope.sender.kind, envelope.sender.address)]
        if not envelope.sender_verified and customer.known:
            customer = await unverified_prospect(connection, envelope, customer, now)
        if envelope.claimed:
            customer = await attach_claims(connection, envelope, customer, now)
            if customer.known or envelope.sender_verified:
                customers_by_identity[(envelope.sender.kind, envelope.sender.address)] = customer
        if external is not None and external[index] is not None and customer.facts is not None:
            lookup = external[index]
            if lookup is not None and lookup.values is not None:
                await remember_crm(connection, customer, lookup.values, now)
            customer = CustomerRef(
                customer.id, customer.known, customer.name, overlay(customer.facts, lookup)
            )
        decision = decide(envelope, customer)
        thread_key = envelope.thread.session
        thread = linked.get(position)
        if thread is not None and not joins(thread, envelope, customer):
            event_rows.append(
                event_row(
                    now,
                    "thread.refused",
                    conversation_id=thread["id"],
                    data={
                        "inbox": envelope.inbox,
                        "kind": envelope.sender.kind,
                        "address": envelope.sender.address,
                        "customer": customer.id,
                    },
                )
            )
            envelope = claim_note(envelope, str(thread["id"]))
            thread = None
        reopened = False
        if thread is not None and thread["status"] == CLOSED:
            if envelope.thread.reopen:
                reopened = str(thread["id"]) not in reopened_rows
                thread.update(
                    status=QUEUED,
                    assignee=None,
                    queue=decision.queue,
                    priority=str(decision.priority),
                    queued_at=now,
                )
                reopened_rows[str(thread["id"])] = thread
                if reopened:
                    event_rows.append(
                        event_row(
                            now,
                            "conversation.reopened",
                            conversation_id=thread["id"],
                            data={"queue": decision.queue, "rules": list(decision.rules)},
                        )
                    )
            else:
                thread = None
        if thread is None and thread_key:
            thread = threads.get((envelope.inbox, thread_key))
        created = thread is None
        if thread is None:
            thread = {
                "id": new_id(now),
                "customer_id": customer.id,
                "channel": envelope.channel,
                "inbox": envelope.inbox,
                "thread_key": thread_key,
                "status": QUEUED,
                "queue": decision.queue,
                "priority": str(decision.priority),
                "assignee": None,
                "subject": envelope.subject,
                "decision": msgspec.to_builtins(decision),
                "rules_digest": decision.revision,
                "created_at": now,
                "updated_at": now,
                "queued_at": now,
            }
            new_conversations.append(thread)
            if thread_key:
                threads[(envelope.inbox, thread_key)] = thread
            event_rows.append(
                event_row(
                    now,
                    "conversation.created",
                    conversation_id=thread["id"],
                    data={"queue": decision.queue, "rules": list(decision.rules)},
                )
            )
        else:
            touched[str(thread["id"])] = now
        message_id = new_id(now)
        message_rows.append(
            {
                "id": message_id,
                "conversation_id": thread["id"],
                "kind": "message",
                "direction": str(envelope.direction),
                "channel": envelope.channel,
                "inbox": envelope.inbox,
                "idempotency_key": envelope.idempotency_key,
                "provider_id": envelope.provider_id,
                "author": None,
                "text": envelope.text,
                "html": envelope.html,
                "subject": envelope.subject,
                "envelope": encode_envelope(envelope).decode(),
                "rules": list(decision.rules),
                "delivery_status": None,
                "delivery_error": None,
                "created_at": envelope.received_at or now,
            }
        )
        attachment_ids = tuple(new_id(now) for _ in envelope.attachments)
        attachment_rows.extend(
            {
                "id": attachment_id,
                "message_id": message_id,
                "name": attachment.name,
                "content_type": attachment.content_type,
                "size": attachment.size,
                "sha256": attachment.sha256,
                "blob_ref": attachment.blob_ref,
            }
            for attachment_id, attachment in zip(attachment_ids, envelope.attachments, strict=True)
        )
        event_rows.append(
            event_row(
                now,
                "message.received",
                conversation_id=thread["id"],
                message_id=message_id,
                data={"channel": envelope.channel, "inbox": envelope.inbox},
            )
        )
        auto_reply = None
        if decision.auto_reply and created and not envelope.auto_submitted:
            # once per new conversation, never to automated mail: no reply loops
            auto_reply = reply_to(
                envelope,
                message_id=new_id(now),
                conversation_id=str(thread["id"]),
                idempotency_key=f"auto:{message_id}",
                text=decision.auto_reply,
                created_at=now,
            )
            replies.append(auto_reply)
            event_rows.append(
                event_row(
                    now,
                    "auto_reply.queued",
                    conversation_id=thread["id"],
                    message_id=auto_reply.message_id,
                    data={"rules": list(decision.rules)},
                )
            )
        results[index] = Stored(
            message_id,
            str(thread["id"]),
            duplicate=False,
            conversation_created=created,
            reopened=reopened,
            status=str(thread["status"]),
            assignee=thread["assignee"],  # type: ignore[arg-type]
            queue=str(thread["queue"]),
            priority=str(thread["priority"]),
            queued_at=thread["queued_at"],  # type: ignore[arg-type]
            customer_id=customer.id,
            auto_reply=auto_reply,
            skills=decision.skills if created or reopened else (),
            preferred_agent=decision.agent if created or reopened else None,
            sla=decision.sla_seconds if created or reopened else None,
            attachment_ids=attachment_ids,
        )
    if new_conversations:
        await connection.execute(conversations.insert(), new_conversations)
    message_rows.extend(outbound_row(reply, envelope_channel(batch, reply)) for reply in replies)
    await connection.execute(messages.insert(), message_rows)
    if replies:
        await connection.execute(outbox.insert(), [outbox_row(reply, now) for reply in replies])
    if attachment_rows:
        await connection.execute(attachments.insert(), attachment_rows)
    if reopened_rows:
        await connection.execute(
            update(conversations)
            .where(conversations.c.id == bindparam("cid"))
            .values(
                status=QUEUED,
                assignee=None,
                queue=bindparam("queue"),
                priority=bindparam("priority"),
                queued_at=bindparam("at"),
                updated_at=bindparam("at"),
                closed_at=None,
                disposition=None,
            ),
            [
                {"cid": cid, "queue": row["queue"], "priority": row["priority"], "at": now}
                for cid, row in reopened_rows.items()
            ],
        )
        for cid in reopened_rows:
            touched.pop(cid, None)
    if touched:
        await connection.execute(
            update(conversations)
            .where(conversations.c.id == bindparam("cid"))
            .values(updated_at=bindparam("at")),
            [{"cid": cid, "at": at} for cid, at in touched.items()],
        )
    await connection.execute(events.insert(), event_rows)


def envelope_channel(batch: list[Envelope], reply: Outbound) -> str:
    """The channel of the inbox a reply leaves through (taken from the batch it answers)."""
    return next(envelope.channel for envelope in batch if envelope.inbox == reply.inbox)
