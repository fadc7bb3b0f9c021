"""The table rows a batch of ingest plans writes (``hub.store.ingest.write_rows`` writes them).

Pure. Rows of one table share one shape, so each table takes one multi-row statement.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from hub.envelope import Outbound, encode_envelope
from hub.ingest.plan import Action, IngestPlan
from hub.ingest.record import encoded
from hub.store.audit import event_row
from hub.store.ingest import IngestRows, outbound_row, outbox_row


def batch_rows(plans: Sequence[IngestPlan], now: float) -> IngestRows:
    """Every row the plans write: inbound messages in order, then the auto-replies."""
    rows = IngestRows()
    replies: list[tuple[Outbound, str]] = []
    reopened: dict[str, IngestPlan] = {}
    for planned in plans:
        conversation_id = planned.conversation.id
        if planned.action is Action.CREATE:
            rows.conversations.append(conversation_row(planned, now))
        elif planned.action is Action.REOPEN:
            reopened[conversation_id] = planned
        else:
            rows.touched[conversation_id] = now
        rows.messages.append(message_row(planned, now))
        rows.attachments.extend(attachment_rows(planned))
        if planned.seen is not None:
            rows.routing_records.append(routing_record_row(planned))
        rows.events.extend(
            event_row(
                now,
                audit.kind,
                conversation_id=audit.conversation_id,
                message_id=audit.message_id,
                data=audit.data,
            )
            for audit in planned.audit
        )
        if planned.auto_reply is not None:
            replies.append((planned.auto_reply, planned.envelope.channel))
    rows.messages.extend(outbound_row(reply, channel) for reply, channel in replies)
    rows.outbox.extend(outbox_row(reply, now) for reply, _ in replies)
    for conversation_id, planned in reopened.items():
        rows.touched.pop(conversation_id, None)  # the reopening moves updated_at itself
        rows.reopened.append(
            {
                "cid": conversation_id,
                "queue": planned.conversation.queue,
                "priority": planned.conversation.priority,
                "at": now,
            }
        )
    return rows


def conversation_row(planned: IngestPlan, now: float) -> dict[str, object]:
    """The ``conversations`` row of a conversation the plan starts."""
    conversation = planned.conversation
    return {
        "id": conversation.id,
        "customer_id": conversation.customer_id,
        "channel": planned.envelope.channel,
        "inbox": conversation.inbox,
        "thread_key": conversation.thread_key,
        "status": conversation.status,
        "queue": conversation.queue,
        "priority": conversation.priority,
        "assignee": conversation.assignee,
        "subject": planned.envelope.subject,
        "decision": msgspec.to_builtins(planned.decision),
        "rules_digest": planned.decision.revision,
        "created_at": now,
        "updated_at": now,
        "queued_at": conversation.queued_at,
    }


def message_row(planned: IngestPlan, now: float) -> dict[str, object]:
    """The ``messages`` row of the inbound message, with its envelope as stored."""
    envelope = planned.envelope
    return {
        "id": planned.message_id,
        "conversation_id": planned.conversation.id,
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
        "rules": list(planned.decision.rules),
        "delivery_status": None,
        "delivery_error": None,
        "created_at": envelope.received_at or now,
    }


def routing_record_row(planned: IngestPlan) -> dict[str, object]:
    """The ``routing_records`` row of the inbound message: what the rules saw and decided."""
    seen = planned.seen
    assert seen is not None
    data = encoded(
        planned.envelope,
        seen.customer,
        planned.decision,
        decided_at=seen.decided_at,
        created=planned.action is Action.CREATE,
    )
    return {
        "message_id": planned.message_id,
        "customer_id": planned.customer_id,
        "decided_at": seen.decided_at,
        "data": data,
    }


def attachment_rows(planned: IngestPlan) -> list[dict[str, object]]:
    """The ``attachments`` rows of the message (the bytes are in the blob store already)."""
    return [
        {
            "id": attachment_id,
            "message_id": planned.message_id,
            "name": attachment.name,
            "content_type": attachment.content_type,
            "size": attachment.size,
            "sha256": attachment.sha256,
            "blob_ref": attachment.blob_ref,
        }
        for attachment_id, attachment in zip(
            planned.attachment_ids, planned.envelope.attachments, strict=True
        )
    ]
