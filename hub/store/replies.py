"""Agents' replies and internal notes: stored once per client id, a reply with its outbox row
in the same transaction, so it is sent exactly when it is stored.

Replies go through the writer as a batch handler, like ingest and dispatch writes: whatever
replies wait together are read with three statements (the keys already stored, the
conversations with their newest and first inbound message, the owners of those senders) and
written with one statement per table, so a reply costs a constant handful of statements
however many share the commit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import and_, desc, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.envelope import (
    Attachment,
    Envelope,
    Identity,
    Outbound,
    Template,
    ThreadHints,
    decode_envelope,
    reply_to,
)
from hub.errors import Forbidden, HubError, InvalidState, NotFound, StoreConflict
from hub.ids import new_id
from hub.store.audit import event_row
from hub.store.database import Database
from hub.store.ingest import outbox_row
from hub.store.messages import MESSAGE_COLUMNS, message_record
from hub.store.records import Message, MessageFile, Reply
from hub.store.schema import (
    ASSIGNED,
    attachments,
    conversations,
    events,
    identities,
    messages,
    outbox,
)

#: another channel instance a reply leaves through: (inbox, channel, recipient)
Via = tuple[str, str, Identity]


@dataclass(frozen=True, slots=True)
class _Draft:
    """What an agent asked to store, and the idempotency key it is stored under."""

    conversation_id: str
    agent: str
    key: str
    text: str
    note: bool
    template: Template | None
    via: Via | None
    files: tuple[Attachment, ...]


@dataclass(frozen=True, slots=True)
class _Target:
    """What storing a reply needs of its conversation: who holds it, where it is, and the
    inbound messages a reply may answer (newest and first, as stored envelopes)."""

    status: str
    assignee: str | None
    channel: str
    inbox: str
    customer_id: str
    newest: str | None
    first: str | None


class Replies:
    """Writes of agents' replies and notes."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def add(
        self,
        conversation_id: str,
        *,
        agent: str,
        client_id: str,
        text: str,
        note: bool = False,
        template: Template | None = None,
        via: Via | None = None,
        files: tuple[Attachment, ...] = (),
    ) -> Reply:
        """Store an agent's reply (queued in the outbox) or internal note, once per client id.

        ``template`` is an approved template the reply is sent as (``text`` is its rendering);
        ``via`` (inbox, channel, recipient) sends it through another channel instance, as a new
        message there rather than a threaded answer; ``files`` go with it (already stored)."""
        key = f"{'note' if note else 'reply'}:{agent}:{conversation_id}:{client_id}"
        draft = _Draft(conversation_id, agent, key, text, note, template, via, files)

        try:
            outcome: Reply | HubError = await self._db.writer.submit(self._store_batch, draft)
        except StoreConflict:  # a concurrent resend won the race: report the stored one
            async with self._db.read() as connection:
                stored = (await _by_keys(connection, [key])).get(key)
            if stored is None:
                raise
            return Reply(message=stored, duplicate=True)
        if isinstance(outcome, HubError):  # this draft was refused; its neighbours were not
            raise outcome
        return outcome

    async def _store_batch(
        self, connection: AsyncConnection, drafts: list[_Draft]
    ) -> Sequence[Reply | HubError]:
        """Store the drafts of one commit with a constant number of statements; a draft that
        cannot be stored gets its error as its result, so it sinks no other write."""
        now = self._db.clock()
        stored = await _by_keys(connection, [draft.key for draft in drafts])
        targets = await _targets(connection, {draft.conversation_id for draft in drafts})
        owners = await _owners(connection, targets.values())
        rows = _Rows()
        results: list[Reply | HubError] = []
        for draft in drafts:
            existing = stored.get(draft.key)
            if existing is not None:  # an earlier commit, or an earlier draft of this one
                results.append(Reply(message=existing, duplicate=True))
                continue
            try:
                message = rows.add(draft, targets.get(draft.conversation_id), owners, now)
            except HubError as exc:
                results.append(exc)
                continue
            stored[draft.key] = message
            results.append(Reply(message=message, duplicate=False))
        await rows.write(connection)
        return results


class _Rows:
    """The rows a batch of replies writes, one INSERT per table."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.files: list[dict[str, Any]] = []
        self.outbox: list[dict[str, Any]] = []
        self.events: list[dict[str, object]] = []

    def add(
        self,
        draft: _Draft,
        target: _Target | None,
        owners: dict[tuple[str, str], str],
        now: float,
    ) -> Message:
        """The rows of ``draft`` on a conversation the agent holds (NotFound, Forbidden,
        InvalidState otherwise); returns the message as stored."""
        if target is None:
            raise NotFound(f"conversation {draft.conversation_id} does not exist")
        if target.status != ASSIGNED or target.assignee != draft.agent:
            raise Forbidden(f"conversation {draft.conversation_id} is not assigned to you")
        message_id = new_id(now)
        row = _message_row(draft, target, message_id, now)
        if draft.note:
            self.messages.append(row)
            self.events.append(
                event_row(
                    now,
                    "note.added",
                    conversation_id=draft.conversation_id,
                    message_id=message_id,
                    agent=draft.agent,
                )
            )
            return _message(row)
        outbound = _outbound(draft, _answered(target, owners), message_id, now)
        listed = tuple(
            MessageFile(
                id=new_id(now),
                name=item.name,
                content_type=item.content_type,
                size=item.size,
                sha256=item.sha256,
            )
            for item in draft.files
        )
        self.messages.append(row)
        self.files.extend(
            {**msgspec.structs.asdict(file), "message_id": message_id, "blob_ref": item.blob_ref}
            for file, item in zip(listed, draft.files, strict=True)
        )
        self.outbox.append(outbox_row(outbound, now))
        self.events.append(
            event_row(
                now,
                "reply.queued",
                conversation_id=draft.conversation_id,
                message_id=message_id,
                agent=draft.agent,
            )
        )
        return _message(row, listed)

    async def write(self, connection: AsyncConnection) -> None:
        # files after their messages and the outbox after both: the foreign keys' order
        for table, rows in (
            (messages, self.messages),
            (attachments, self.files),
            (outbox, self.outbox),
            (events, self.events),
        ):
            if rows:
                await connection.execute(table.insert(), rows)


async def _by_keys(connection: AsyncConnection, keys: list[str]) -> dict[str, Message]:
    """The replies or notes stored under these keys (listed without their files, as they
    always were)."""
    rows = await connection.execute(
        select(*MESSAGE_COLUMNS, messages.c.idempotency_key).where(
            messages.c.idempotency_key.in_(keys)
        )
    )
    return {row.idempotency_key: message_record(row) for row in rows}


def _inbound_envelope(*, newest: bool) -> Any:
    """The newest (or first) inbound message's stored envelope of the outer conversation."""
    created = desc(messages.c.created_at) if newest else messages.c.created_at
    ids = desc(messages.c.id) if newest else messages.c.id
    return (
        select(messages.c.envelope)
        .where(
            and_(
                messages.c.conversation_id == conversations.c.id,
                messages.c.direction == "inbound",
                messages.c.envelope.is_not(None),
            )
        )
        .order_by(created, ids)
        .limit(1)
        .correlate(conversations)
        .scalar_subquery()
    )


async def _targets(connection: AsyncConnection, ids: set[str]) -> dict[str, _Target]:
    """What the replies of a batch need of their conversations, with one statement."""
    rows = await connection.execute(
        select(
            conversations.c.id,
            conversations.c.status,
            conversations.c.assignee,
            conversations.c.channel,
            conversations.c.inbox,
            conversations.c.customer_id,
            _inbound_envelope(newest=True).label("newest"),
            _inbound_envelope(newest=False).label("first"),
        ).where(conversations.c.id.in_(ids))
    )
    return {
        row.id: _Target(
            status=row.status,
            assignee=row.assignee,
            channel=row.channel,
            inbox=row.inbox,
            customer_id=row.customer_id,
            newest=row.newest,
            first=row.first,
        )
        for row in rows
    }


async def _owners(connection: AsyncConnection, targets: Any) -> dict[tuple[str, str], str]:
    """Which customer owns each newest inbound sender of these conversations (one statement)."""
    senders = set()
    for target in targets:
        if target.newest is not None:
            sender = decode_envelope(target.newest).sender
            senders.add((sender.kind, sender.address))
    if not senders:
        return {}
    rows = await connection.execute(
        select(identities.c.kind, identities.c.address, identities.c.customer_id).where(
            tuple_(identities.c.kind, identities.c.address).in_(list(senders))
        )
    )
    return {(row.kind, row.address): row.customer_id for row in rows}


def _answered(target: _Target, owners: dict[tuple[str, str], str]) -> Envelope:
    """The inbound message a reply answers, and so whom it goes to: the conversation's customer
    (as :func:`hub.store.messages.answered` says: the newest message if its sender is one of
    the customer's identities, else the one that opened the conversation; never whoever wrote
    last)."""
    if target.newest is None:
        raise InvalidState("this conversation has no inbound message to reply to")
    newest = decode_envelope(target.newest)
    if owners.get((newest.sender.kind, newest.sender.address)) == target.customer_id:
        return newest
    return decode_envelope(target.first) if target.first is not None else newest


def _message_row(draft: _Draft, target: _Target, message_id: str, now: float) -> dict[str, Any]:
    """The messages row of a reply or note."""
    return {
        "id": message_id,
        "conversation_id": draft.conversation_id,
        "kind": "note" if draft.note else "message",
        "direction": "outbound",
        "channel": draft.via[1] if draft.via else target.channel,
        "inbox": draft.via[0] if draft.via else target.inbox,
        "idempotency_key": draft.key,
        "provider_id": None,
        "author": draft.agent,
        "text": draft.text,
        "html": None,
        "subject": None,
        "envelope": None,
        "rules": None,
        "delivery_status": None if draft.note else "queued",
        "delivery_error": None,
        "created_at": now,
    }


def _message(row: dict[str, Any], files: tuple[MessageFile, ...] = ()) -> Message:
    return Message(
        id=row["id"],
        conversation_id=row["conversation_id"],
        kind=row["kind"],
        direction=row["direction"],
        channel=row["channel"],
        author=row["author"],
        text=row["text"],
        subject=row["subject"],
        rules=row["rules"],
        delivery_status=row["delivery_status"],
        delivery_error=row["delivery_error"],
        created_at=row["created_at"],
        attachments=files,
    )


def _outbound(draft: _Draft, answering: Envelope, message_id: str, now: float) -> Outbound:
    """What the outbox sends: an answer to the customer's message, as the agent asked."""
    outbound = reply_to(
        answering,
        message_id=message_id,
        conversation_id=draft.conversation_id,
        idempotency_key=draft.key,
        text=draft.text,
        created_at=now,
        author=draft.agent,
    )
    if draft.template is not None:
        outbound = msgspec.structs.replace(outbound, template=draft.template)
    if draft.via is not None:
        outbound = msgspec.structs.replace(
            outbound, inbox=draft.via[0], recipient=draft.via[2], thread=ThreadHints()
        )
    if draft.files:
        outbound = msgspec.structs.replace(outbound, attachments=draft.files)
    return outbound
