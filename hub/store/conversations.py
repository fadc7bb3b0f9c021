"""Conversations as the console and dispatch read them.

A :class:`Conversation` comes with its customer, its messages and whom a reply goes to; many
of them load with a fixed number of statements (the dispatch service shows many at once).
:class:`ConversationSummary` rows are what dispatch queues and restores.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Mapping
from typing import Any, Protocol

from sqlalchemy import and_, case, desc, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.envelope import Envelope, Identity, decode_envelope
from hub.errors import NotFound
from hub.store.calls import calls_of
from hub.store.database import Database
from hub.store.messages import MESSAGE_COLUMNS, message_record, notes_of, stored_inbound
from hub.store.records import (
    CONVERSATION_COLUMNS,
    Conversation,
    ConversationSummary,
    MessageFile,
    OptOut,
)
from hub.store.schema import QUEUED, attachments, conversations, identities, messages, opt_outs

#: what a :class:`ConversationSummary` is made of (``summary_of``)
SUMMARY_COLUMNS = (
    conversations.c.id,
    conversations.c.queue,
    conversations.c.priority,
    conversations.c.queued_at,
    conversations.c.created_at,
    conversations.c.channel,
    conversations.c.decision,
    conversations.c.customer_id,
)
_FILE_COLUMNS = (
    attachments.c.message_id,
    attachments.c.id,
    attachments.c.name,
    attachments.c.content_type,
    attachments.c.size,
    attachments.c.sha256,
)
_OptOutKey = tuple[str, str, str]  # inbox, identity kind, address


class CustomerContexts(Protocol):
    """What a conversation shows of its customers, many at once, read on the conversation's
    own connection: ``hub.customers.context.customer_contexts``, passed in by whoever opens the
    store, so the store does not import the customers package (which builds on it)."""

    async def __call__(
        self,
        connection: AsyncConnection,
        customer_ids: Collection[str],
        now: float,
        *,
        history: int = 20,
    ) -> dict[str, dict[str, Any]]: ...


async def bare_contexts(
    connection: AsyncConnection, customer_ids: Collection[str], now: float, *, history: int = 20
) -> dict[str, dict[str, Any]]:
    """A customer as only their id: for a store opened without :class:`CustomerContexts`
    (tools and tests that show no customers)."""
    return {customer_id: {"id": customer_id, "history": []} for customer_id in customer_ids}


def summary_of(row: Any, assignee: str | None = None) -> ConversationSummary:
    """A :class:`ConversationSummary` from a row of :data:`SUMMARY_COLUMNS`."""
    return ConversationSummary(
        id=row.id,
        queue=row.queue,
        priority=row.priority,
        queued_at=row.queued_at,
        created_at=row.created_at,
        channel=row.channel,
        decision=row.decision,
        customer_id=row.customer_id,
        assignee=assignee,
    )


class Conversations:
    """Reads of conversations, whole or as summaries."""

    def __init__(self, database: Database, customer_contexts: CustomerContexts) -> None:
        self._db = database
        self._customer_contexts = customer_contexts

    async def get(self, conversation_id: str) -> Conversation:
        """A conversation with its customer, identities and messages (notes included)."""
        found = await self.many([conversation_id])
        if conversation_id not in found:
            raise NotFound(f"conversation {conversation_id} does not exist")
        return found[conversation_id]

    async def many(self, conversation_ids: Collection[str]) -> dict[str, Conversation]:
        """:meth:`get` of many at once with eight statements, whatever their number (the
        dispatch service loads what its offers and assignments show in batches); ids that do
        not exist are left out."""
        wanted = list(dict.fromkeys(conversation_ids))
        async with self._db.read() as connection:
            selected = await connection.execute(
                select(*(conversations.c[name] for name in CONVERSATION_COLUMNS)).where(
                    conversations.c.id.in_(wanted)
                )
            )
            names = list(selected.keys())  # rows as dicts by zipping: many times faster
            found = {row.id: dict(zip(names, row, strict=True)) for row in selected}
            if not found:
                return {}
            contexts = await self._customer_contexts(
                connection,
                {conversation["customer_id"] for conversation in found.values()},
                self._db.clock(),
                history=10,
            )
            by_conversation = await _messages_of(connection, list(found))
            files = await _files_of(connection, list(found))
            recipients = await _recipients(connection, found, by_conversation)
            opted = await _opt_outs(connection, found, recipients)
            calls = await calls_of(  # only calls have call events: no query for the rest
                connection, [key for key, row in found.items() if row["channel"] == "voice"]
            )
        result: dict[str, Conversation] = {}
        for conversation_id, columns in found.items():
            context = contexts.get(columns["customer_id"])
            if context is None:
                continue  # cannot happen with the foreign key; as good as not found
            recipient = recipients.get(conversation_id)
            listed = by_conversation.get(conversation_id, [])
            result[conversation_id] = Conversation(
                **columns,
                customer={
                    **context,
                    "history": [old for old in context["history"] if old["id"] != conversation_id],
                },
                recipient=recipient,
                last_inbound_at=_last_inbound_at(listed),
                opt_out=(
                    None
                    if recipient is None
                    else opted.get((columns["inbox"], recipient.kind, recipient.address))
                ),
                messages=tuple(
                    message_record(row, files.get(row.id, ()), notes_of(row.envelope))
                    for row in listed
                ),
                calls=calls.get(conversation_id, ()),
            )
        return result

    async def for_reply(self, conversation_id: str) -> Conversation:
        """A conversation as checking an agent's reply sees it: whom it goes to, the last
        inbound time and the recipient's opt-out, without the customer's context and with no
        messages (four statements instead of :meth:`get`'s eight and its context work)."""
        async with self._db.read() as connection:
            selected = await connection.execute(
                select(*(conversations.c[name] for name in CONVERSATION_COLUMNS)).where(
                    conversations.c.id == conversation_id
                )
            )
            names = list(selected.keys())
            row = selected.first()
            if row is None:
                raise NotFound(f"conversation {conversation_id} does not exist")
            found = {conversation_id: dict(zip(names, row, strict=True))}
            inbound = (
                await connection.execute(
                    select(*MESSAGE_COLUMNS, messages.c.envelope)
                    .where(
                        and_(
                            messages.c.conversation_id == conversation_id,
                            messages.c.direction == "inbound",
                            messages.c.envelope.is_not(None),
                        )
                    )
                    .order_by(messages.c.created_at, messages.c.id)
                )
            ).all()
            recipients = await _recipients(connection, found, {conversation_id: list(inbound)})
            opted = await _opt_outs(connection, found, recipients)
        columns = found[conversation_id]
        recipient = recipients.get(conversation_id)
        return Conversation(
            **columns,
            customer={},
            recipient=recipient,
            last_inbound_at=_last_inbound_at(list(inbound)),
            opt_out=(
                None
                if recipient is None
                else opted.get((columns["inbox"], recipient.kind, recipient.address))
            ),
        )

    async def with_status(self, status: str) -> list[ConversationSummary]:
        """Summaries of the conversations in ``status`` (for restoring dispatch at start-up),
        oldest in the queue first."""
        async with self._db.read() as connection:
            rows = await connection.execute(
                select(*SUMMARY_COLUMNS, conversations.c.assignee)
                .where(conversations.c.status == status)
                .order_by(conversations.c.queued_at)
            )
            return [summary_of(row, row.assignee) for row in rows]

    async def queued_pages(
        self, size: int, urgency: Mapping[str, int], *, default: int = 0
    ) -> AsyncIterator[list[ConversationSummary]]:
        """Every queued conversation's summary, in pages of ``size``, most urgent first (by
        ``urgency`` of its priority, higher first, ``default`` for another), then oldest: one
        query streamed page by page, so a large backlog can be taken in while the hub already
        works (dispatch start-up)."""
        rank = case(
            {priority: -rank for priority, rank in urgency.items()},
            value=conversations.c.priority,
            else_=-default,
        )
        query = (
            select(*SUMMARY_COLUMNS)
            .where(conversations.c.status == QUEUED)
            .order_by(rank, conversations.c.queued_at, conversations.c.id)
        )
        async with self._db.read() as connection:
            result = await connection.stream(query)
            async for page in result.partitions(size):
                yield [summary_of(row) for row in page]

    async def queued_on_thread(self, inbox: str, session: str) -> ConversationSummary | None:
        """The waiting conversation of a thread (a chat visitor), if there is one."""
        async with self._db.read() as connection:
            row = (
                await connection.execute(
                    select(*SUMMARY_COLUMNS).where(
                        and_(
                            conversations.c.inbox == inbox,
                            conversations.c.thread_key == session,
                            conversations.c.status == QUEUED,
                        )
                    )
                )
            ).first()
        return None if row is None else summary_of(row)

    async def last_agent(self, customer_id: str, *, besides: str) -> str | None:
        """Who handled the customer's most recent other conversation (for sticky routing)."""
        async with self._db.read() as connection:
            row = (
                await connection.execute(
                    select(conversations.c.assignee)
                    .where(
                        and_(
                            conversations.c.customer_id == customer_id,
                            conversations.c.id != besides,
                            conversations.c.assignee.is_not(None),
                        )
                    )
                    .order_by(desc(conversations.c.updated_at))
                    .limit(1)
                )
            ).first()
        return None if row is None else str(row.assignee)


async def _messages_of(connection: AsyncConnection, ids: list[str]) -> dict[str, list[Any]]:
    """The message rows (with their envelope) of each conversation, oldest first."""
    rows = await connection.execute(
        select(*MESSAGE_COLUMNS, messages.c.envelope)
        .where(messages.c.conversation_id.in_(ids))
        .order_by(messages.c.created_at, messages.c.id)
    )
    by_conversation: dict[str, list[Any]] = {}
    for row in rows:
        by_conversation.setdefault(row.conversation_id, []).append(row)
    return by_conversation


async def _files_of(
    connection: AsyncConnection, ids: list[str]
) -> dict[str, tuple[MessageFile, ...]]:
    """The files of every message of these conversations, by message id."""
    rows = await connection.execute(
        select(*_FILE_COLUMNS)
        .join(messages, messages.c.id == attachments.c.message_id)
        .where(messages.c.conversation_id.in_(ids))
    )
    by_message: dict[str, list[MessageFile]] = {}
    for row in rows:
        by_message.setdefault(row.message_id, []).append(
            MessageFile(
                id=row.id,
                name=row.name,
                content_type=row.content_type,
                size=row.size,
                sha256=row.sha256,
            )
        )
    return {message_id: tuple(files) for message_id, files in by_message.items()}


def _last_inbound_at(listed: list[Any]) -> float | None:
    last = next((row for row in reversed(listed) if stored_inbound(row)), None)
    return None if last is None else float(last.created_at)


async def _recipients(
    connection: AsyncConnection,
    found: dict[str, dict[str, Any]],
    by_conversation: dict[str, list[Any]],
) -> dict[str, Identity]:
    """:func:`hub.store.replies._answered`'s sender for many conversations from their loaded
    messages (ordered by time): the newest inbound message's sender if they are one of the
    conversation's customer's identities, else the sender of the message that opened it. One
    statement."""
    newest: dict[str, Envelope] = {}
    first: dict[str, Any] = {}
    for conversation_id, listed in by_conversation.items():
        inbound = [row for row in listed if stored_inbound(row)]
        if inbound:
            newest[conversation_id] = decode_envelope(inbound[-1].envelope)
            first[conversation_id] = inbound[0]
    if not newest:
        return {}
    senders = {(e.sender.kind, e.sender.address) for e in newest.values()}
    owners = {
        (row.kind, row.address): row.customer_id
        for row in await connection.execute(
            select(identities.c.kind, identities.c.address, identities.c.customer_id).where(
                tuple_(identities.c.kind, identities.c.address).in_(list(senders))
            )
        )
    }
    recipients: dict[str, Identity] = {}
    for conversation_id, envelope in newest.items():
        owner = owners.get((envelope.sender.kind, envelope.sender.address))
        if owner == found[conversation_id]["customer_id"] or first[conversation_id] is None:
            recipients[conversation_id] = envelope.sender
        else:
            recipients[conversation_id] = decode_envelope(first[conversation_id].envelope).sender
    return recipients


async def _opt_outs(
    connection: AsyncConnection,
    found: dict[str, dict[str, Any]],
    recipients: dict[str, Identity],
) -> dict[_OptOutKey, OptOut]:
    """The opt-outs of these conversations' recipients from their inboxes. One statement."""
    if not recipients:
        return {}
    keys = {
        (found[conversation_id]["inbox"], recipient.kind, recipient.address)
        for conversation_id, recipient in recipients.items()
    }
    rows = await connection.execute(
        select(
            opt_outs.c.inbox, opt_outs.c.kind, opt_outs.c.address, opt_outs.c.keyword, opt_outs.c.at
        ).where(tuple_(opt_outs.c.inbox, opt_outs.c.kind, opt_outs.c.address).in_(list(keys)))
    )
    return {
        (row.inbox, row.kind, row.address): OptOut(keyword=row.keyword, at=row.at) for row in rows
    }
