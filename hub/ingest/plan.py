"""The ingest planner: a new message, what is stored, its customer and the rules' decision in;
everything to write and to publish out.

Pure, like ``hub.dispatch.core``: no I/O, and ``now`` and the id factory are passed in. The
shell (``hub.ingest.stages``) reads the state, calls :func:`plan_batch` inside the transaction
and writes the rows :mod:`hub.ingest.rows` makes of the plans.

Threading: a message that names a conversation (a verified conversation id, or the provider
ids it answers) joins it only if its sender is that conversation's customer and verified, or
it is a delivery report carrying the conversation's own token; anyone else's message is noted
for the agent and starts a conversation of its own. A closed conversation is reopened (queued
again as the rules decide) when the channel says a reply does that, and left alone otherwise.
Without a link, a message joins the open conversation of its session, or starts one. The rules'
auto-reply goes out once per new conversation, never to automated mail. What the rules saw
(:class:`Seen`) rides along, so the rows record it next to the message for replays.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec

from hub.bus import MESSAGES, OUTBOX, AttachmentListed, MessageStored, OutboxReady
from hub.envelope import Envelope, Outbound, problem_notes, reply_to
from hub.store.ingest import CLOSED, QUEUED, ConversationState
from rules.context import CustomerFacts
from rules.decision import Decision

NewId = Callable[[], str]
#: a bus topic and the event to publish on it once the plan is committed
Publication = tuple[str, MessageStored | OutboxReady]


class Action(enum.StrEnum):
    """What a message does to its conversation."""

    CREATE = "create"  # starts it
    REOPEN = "reopen"  # queues a closed one again
    APPEND = "append"  # joins it as it is


class Audit(msgspec.Struct, frozen=True, kw_only=True):
    """One audit event (an ``events`` row)."""

    kind: str
    conversation_id: str
    message_id: str | None = None
    data: dict[str, Any]


class Existing(msgspec.Struct, frozen=True, kw_only=True):
    """What is stored that a message may belong to."""

    linked: ConversationState | None = None  # named by a verified id or answered provider ids
    session: ConversationState | None = None  # the open conversation of its (inbox, session)


class Seen(msgspec.Struct, frozen=True):
    """What the rules saw of the customer and when they decided: recorded with the message
    (``hub.ingest.record``) so ``rules diff`` replays it as it was."""

    customer: CustomerFacts
    decided_at: float


class IngestPlan(msgspec.Struct, frozen=True, kw_only=True):
    """Everything storing one message writes and publishes."""

    action: Action
    conversation: ConversationState  # where the message lands, as it is once written
    envelope: Envelope  # as stored: noted when it claimed a conversation it may not join
    customer_id: str
    decision: Decision
    message_id: str
    attachment_ids: tuple[str, ...] = ()  # in the order of the envelope's attachments
    auto_reply: Outbound | None = None
    audit: tuple[Audit, ...] = ()
    publish: tuple[Publication, ...] = ()
    seen: Seen | None = None  # None: nothing to record (a caller without rules' context)


def joins(conversation: ConversationState, envelope: Envelope, customer_id: str) -> bool:
    """Whether a message whose references name ``conversation`` may join it: only its
    customer's.

    Knowing a Message-ID (someone was in Cc, or a forwarded mail showed it), or even holding
    one of our signed ids, proves nothing about who writes: a stranger who could join would see
    their text shown with the customer's context and receive the agent's answer. So the sender
    must resolve to the conversation's customer (one of its identities), and a sender whose
    authentication failed never joins. A delivery report (a bounce) joins the conversation
    its verified token names: only a mail we sent carries that token."""
    if envelope.thread.delivery_report:
        return envelope.thread.conversation == conversation.id
    return envelope.sender_verified and conversation.customer_id == customer_id


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


def plan(
    envelope: Envelope,
    existing: Existing,
    customer_id: str,
    decision: Decision,
    *,
    now: float,
    new_id: NewId,
    seen: Seen | None = None,
) -> IngestPlan:
    """Where ``envelope`` lands and what storing it writes and publishes (ids are taken from
    ``new_id`` in this order: conversation, message, attachments, auto-reply)."""
    action, conversation, stored, audit = _place(
        envelope, existing, customer_id, decision, now, new_id
    )
    message_id = new_id()
    attachment_ids = tuple(new_id() for _ in envelope.attachments)
    audit.append(
        Audit(
            kind="message.received",
            conversation_id=conversation.id,
            message_id=message_id,
            data={"channel": envelope.channel, "inbox": envelope.inbox},
        )
    )
    auto_reply = None
    if decision.auto_reply and action is Action.CREATE and not envelope.auto_submitted:
        # once per new conversation, never to automated mail: no reply loops
        auto_reply = reply_to(
            stored,
            message_id=new_id(),
            conversation_id=conversation.id,
            idempotency_key=f"auto:{message_id}",
            text=decision.auto_reply,
            created_at=now,
        )
        audit.append(
            Audit(
                kind="auto_reply.queued",
                conversation_id=conversation.id,
                message_id=auto_reply.message_id,
                data={"rules": list(decision.rules)},
            )
        )
    planned = IngestPlan(
        action=action,
        conversation=conversation,
        envelope=stored,
        customer_id=customer_id,
        decision=decision,
        message_id=message_id,
        attachment_ids=attachment_ids,
        auto_reply=auto_reply,
        audit=tuple(audit),
        seen=seen,
    )
    return msgspec.structs.replace(planned, publish=publications(planned, envelope))


def _place(
    envelope: Envelope,
    existing: Existing,
    customer_id: str,
    decision: Decision,
    now: float,
    new_id: NewId,
) -> tuple[Action, ConversationState, Envelope, list[Audit]]:
    """The conversation a message lands in and what it does to it; the envelope as stored."""
    audit: list[Audit] = []
    routed = {"queue": decision.queue, "rules": list(decision.rules)}
    conversation = existing.linked
    if conversation is not None and not joins(conversation, envelope, customer_id):
        refused = {
            "inbox": envelope.inbox,
            "kind": envelope.sender.kind,
            "address": envelope.sender.address,
            "customer": customer_id,
        }
        audit.append(Audit(kind="thread.refused", conversation_id=conversation.id, data=refused))
        envelope = claim_note(envelope, conversation.id)
        conversation = None
    if conversation is not None and conversation.status == CLOSED:
        if envelope.thread.reopen:
            reopened = msgspec.structs.replace(
                conversation,
                status=QUEUED,
                assignee=None,
                queue=decision.queue,
                priority=str(decision.priority),
                queued_at=now,
            )
            audit.append(
                Audit(kind="conversation.reopened", conversation_id=reopened.id, data=routed)
            )
            return Action.REOPEN, reopened, envelope, audit
        conversation = None
    if conversation is None:
        conversation = existing.session
    if conversation is not None:
        return Action.APPEND, conversation, envelope, audit
    created = ConversationState(
        id=new_id(),
        inbox=envelope.inbox,
        thread_key=envelope.thread.session,
        customer_id=customer_id,
        status=QUEUED,
        assignee=None,
        queue=decision.queue,
        priority=str(decision.priority),
        queued_at=now,
    )
    audit.append(Audit(kind="conversation.created", conversation_id=created.id, data=routed))
    return Action.CREATE, created, envelope, audit


def publications(planned: IngestPlan, received: Envelope) -> tuple[Publication, ...]:
    """What dispatch and the consoles learn once ``planned`` is committed. ``received`` is the
    envelope as it arrived: its notes are the connector's."""
    conversation = planned.conversation
    decision = planned.decision
    routed = planned.action is not Action.APPEND  # new work for dispatch: the rules' asks
    message = MessageStored(
        conversation_id=conversation.id,
        message_id=planned.message_id,
        direction=str(received.direction),
        conversation_created=planned.action is Action.CREATE,
        reopened=planned.action is Action.REOPEN,
        status=conversation.status,
        assignee=conversation.assignee,
        queue=conversation.queue,
        priority=conversation.priority,
        queued_at=conversation.queued_at,
        channel=received.channel,
        text=received.text,
        created_at=received.received_at,
        customer_id=planned.customer_id,
        skills=decision.skills if routed else (),
        preferred_agent=decision.agent if routed else None,
        sla=decision.sla_seconds if routed else None,
        attachments=tuple(
            AttachmentListed(
                id=attachment_id,
                name=attachment.name,
                content_type=attachment.content_type,
                size=attachment.size,
                sha256=attachment.sha256,
            )
            for attachment_id, attachment in zip(
                planned.attachment_ids, received.attachments, strict=True
            )
        ),
        notes=problem_notes(received.metadata),
    )
    reply = planned.auto_reply
    if reply is None:
        return ((MESSAGES, message),)
    answer = MessageStored(
        conversation_id=reply.conversation_id,
        message_id=reply.message_id,
        direction="outbound",
        status=conversation.status,
        channel=received.channel,
        text=reply.text,
        created_at=reply.created_at,
    )
    return (
        (MESSAGES, message),
        (MESSAGES, answer),
        (OUTBOX, OutboxReady(message_id=reply.message_id)),
    )


def plan_batch(
    items: Sequence[tuple[Envelope, str, Decision]],
    linked: Mapping[int, ConversationState],
    sessions: Mapping[tuple[str, str], ConversationState],
    *,
    now: float,
    new_id: NewId,
    seen: Sequence[Seen | None] = (),
) -> list[IngestPlan]:
    """:func:`plan` for each (envelope, customer id, decision) of a batch, in order, each seeing
    what the ones before it did: a conversation one of them started or reopened.

    ``linked`` is what :func:`~hub.store.ingest.linked_threads` found by batch position,
    ``sessions`` the open conversations by (inbox, session) as stored before the batch,
    ``seen`` what the rules saw for each item (by position; missing: nothing recorded)."""
    current: dict[str, ConversationState] = {}
    open_sessions = dict(sessions)
    plans = []
    for position, (envelope, customer_id, decision) in enumerate(items):
        key = envelope.thread.session
        link = linked.get(position)
        session = open_sessions.get((envelope.inbox, key)) if key else None
        existing = Existing(
            linked=current.get(link.id, link) if link else None,
            session=current.get(session.id, session) if session else None,
        )
        planned = plan(
            envelope,
            existing,
            customer_id,
            decision,
            now=now,
            new_id=new_id,
            seen=seen[position] if position < len(seen) else None,
        )
        current[planned.conversation.id] = planned.conversation
        if planned.action is Action.CREATE and key:
            open_sessions[(envelope.inbox, key)] = planned.conversation
        plans.append(planned)
    return plans
