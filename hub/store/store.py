"""The store the hub talks to: reads on pooled connections, writes through the batching writer."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
import time
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import and_, case, desc, func, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from connectors.base import HistoryItem
from hub.customers.context import customer_contexts, identity_owner
from hub.envelope import (
    Attachment,
    Delivery,
    DeliveryStatus,
    Envelope,
    Identity,
    Outbound,
    Template,
    ThreadHints,
    decode_envelope,
    problem_notes,
    reply_to,
)
from hub.errors import Forbidden, InvalidState, NotFound, ProviderIdTaken, StoreConflict, StoreError
from hub.ids import new_id
from hub.store import migrate
from hub.store.audit import event_row
from hub.store.database import Writer, create_engine
from hub.store.dispatch_writes import (
    ASSIGN,
    CLOSE,
    EVENT,
    MOVE,
    REQUEUE,
    DispatchWrite,
    apply_writes,
)
from hub.store.failures import translate
from hub.store.ingest import ASSIGNED, QUEUED, outbox_row
from hub.store.schema import (
    attachments,
    connector_state,
    conversations,
    events,
    identities,
    messages,
    opt_outs,
    outbox,
    rule_revisions,
    sessions,
)
from rules.decision import Priority

Clock = Callable[[], float]
PROBE_BYTES = 64 * 1024  # room a readiness test write needs while writes have been failing
_HUB_STATE = "_hub"  # connector_state rows of the hub itself (no instance may be named so)
_outbound_decoder = msgspec.json.Decoder(Outbound)

#: how far along a reply is; a provider's late or repeated report never moves it backwards
_DELIVERY_RANK = {
    DeliveryStatus.QUEUED: 0,
    DeliveryStatus.SENT: 1,
    DeliveryStatus.DELIVERED: 2,
    DeliveryStatus.READ: 3,
    DeliveryStatus.UNDELIVERED: 4,
    DeliveryStatus.FAILED: 4,
}


@dataclass(frozen=True, slots=True)
class DeliveryChange:
    """A reply whose delivery state a provider's report changed."""

    conversation_id: str
    message_id: str
    status: str
    error: str | None
    changed: bool = True


@dataclass(frozen=True, slots=True)
class Reply:
    """An agent's reply or note as stored; ``duplicate`` when the client id was seen before."""

    message: dict[str, Any]
    duplicate: bool


@dataclass(frozen=True, slots=True)
class OutboxItem:
    message_id: str
    outbound: Outbound
    attempts: int


@dataclass(frozen=True, slots=True)
class Attempt:
    """A send attempt as counted before it starts: its number (1 for the first) and when the
    reply's first attempt began."""

    number: int
    first_at: float


@dataclass(frozen=True, slots=True)
class StoredSession:
    """An agent session row; ``credential`` fingerprints the password hash it was made with."""

    token_hash: str
    agent: str
    credential: str
    expires_at: float


def token_hash(token: str) -> str:
    """What the store keeps of a session token (never the token itself)."""
    return hashlib.sha256(token.encode()).hexdigest()


class Store:
    """Conversations, messages, customers, sessions and the outbox, on SQLite or PostgreSQL."""

    def __init__(
        self,
        url: str,
        *,
        sqlite_synchronous: str = "full",
        batch_max: int = 256,
        clock: Clock = time.time,
    ) -> None:
        self.engine: AsyncEngine = create_engine(url, sqlite_synchronous=sqlite_synchronous)
        self.writer = Writer(self.engine, batch_max=batch_max)
        self.clock = clock

    async def start(self, *, run_migrations: bool = True) -> None:
        """Apply pending migrations and start the writer."""
        if run_migrations:
            await migrate.upgrade(self.engine)
        self.writer.start()

    async def close(self) -> None:
        await self.writer.close()
        await self.engine.dispose()

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A pooled connection for reads. What the driver raises inside leaves as the typed
        errors of ``hub.store.failures`` (:class:`StoreUnavailable` when the database cannot
        answer); the hub's own errors pass through."""
        try:
            async with self.engine.connect() as connection:
                yield connection
        except Exception as exc:
            error = translate(exc)
            if error is None:
                raise
            raise error from exc

    async def ping(self) -> None:
        """Raise :class:`StoreUnavailable` if the database cannot answer a trivial query."""
        async with self.read() as connection:
            await connection.execute(text("SELECT 1"))

    async def write_problem(self) -> str | None:
        """Why the store cannot write now, or None. While the writer's last commit failed for
        want of the database (disk full, read-only, gone), a test write of
        :data:`PROBE_BYTES` of fresh space is made first, so readiness comes back once there
        is room for real work again, not merely for a tiny row."""
        if not self.writer.running:
            return "the store writer is not running"
        if self.writer.failing is None:
            return None

        async def probe(connection: AsyncConnection) -> None:
            # the new row is written before the old one is freed: it needs new space
            key = f"write_probe:{new_id(self.clock())}"
            await connection.execute(
                connector_state.insert(),
                {
                    "instance": _HUB_STATE,
                    "key": key,
                    "value": secrets.token_hex(PROBE_BYTES // 2),  # incompressible
                    "updated_at": self.clock(),
                },
            )
            await connection.execute(
                connector_state.delete().where(
                    and_(
                        connector_state.c.instance == _HUB_STATE,
                        connector_state.c.key.like("write_probe:%"),
                        connector_state.c.key != key,
                    )
                )
            )

        try:
            await self.writer.call(probe)
        except StoreError as exc:
            return str(exc)
        return None

    # -- reads -----------------------------------------------------------------------------

    async def history(self, inbox: str, session: str, limit: int = 200) -> list[HistoryItem]:
        """Customer-visible messages of every conversation on thread ``session``, oldest first."""
        query = (
            select(
                messages.c.id,
                messages.c.direction,
                messages.c.text,
                messages.c.created_at,
                messages.c.author,
            )
            .join(conversations, conversations.c.id == messages.c.conversation_id)
            .where(
                and_(
                    conversations.c.inbox == inbox,
                    conversations.c.thread_key == session,
                    messages.c.kind == "message",
                )
            )
            .order_by(desc(messages.c.created_at), desc(messages.c.id))
            .limit(limit)
        )
        async with self.read() as connection:
            rows = (await connection.execute(query)).all()
        return [
            HistoryItem(
                message_id=row.id,
                direction=row.direction,
                text=row.text,
                created_at=row.created_at,
                author=row.author,
            )
            for row in reversed(rows)
        ]

    async def conversation(self, conversation_id: str) -> dict[str, Any]:
        """A conversation with its customer, identities and messages (notes included)."""
        found = await self.conversations([conversation_id])
        if conversation_id not in found:
            raise NotFound(f"conversation {conversation_id} does not exist")
        return found[conversation_id]

    async def conversations(self, conversation_ids: Collection[str]) -> dict[str, dict[str, Any]]:
        """:meth:`conversation` of many at once with eight statements, whatever their number
        (the dispatch service loads what its offers and assignments show in batches); ids that
        do not exist are left out."""
        wanted = list(dict.fromkeys(conversation_ids))
        async with self.read() as connection:
            selected = await connection.execute(
                select(conversations).where(conversations.c.id.in_(wanted))
            )
            names = list(selected.keys())  # rows as dicts by zipping: many times faster
            found = {row.id: dict(zip(names, row, strict=True)) for row in selected}
            if not found:
                return {}
            ids = list(found)
            contexts = await customer_contexts(
                connection,
                {conversation["customer_id"] for conversation in found.values()},
                self.clock(),
                history=10,
            )
            rows = (
                await connection.execute(
                    select(*_MESSAGE_COLUMNS, messages.c.envelope)
                    .where(messages.c.conversation_id.in_(ids))
                    .order_by(messages.c.created_at, messages.c.id)
                )
            ).all()
            files = (
                await connection.execute(
                    select(attachments)
                    .join(messages, messages.c.id == attachments.c.message_id)
                    .where(messages.c.conversation_id.in_(ids))
                )
            ).all()
            by_conversation: dict[str, list[Any]] = {}
            for message in rows:
                by_conversation.setdefault(message.conversation_id, []).append(message)
            recipients = await _recipients(connection, found, by_conversation)
            last_inbound: dict[str, float] = {}
            for conversation_id, listed in by_conversation.items():
                last = next((m for m in reversed(listed) if _stored_inbound(m)), None)
                if last is not None:
                    last_inbound[conversation_id] = last.created_at
            opted: dict[tuple[str, str, str], dict[str, Any]] = {}
            if recipients:
                keys = {
                    (found[conversation_id]["inbox"], recipient.kind, recipient.address)
                    for conversation_id, recipient in recipients.items()
                }
                for opt in await connection.execute(
                    select(
                        opt_outs.c.inbox,
                        opt_outs.c.kind,
                        opt_outs.c.address,
                        opt_outs.c.keyword,
                        opt_outs.c.at,
                    ).where(
                        tuple_(opt_outs.c.inbox, opt_outs.c.kind, opt_outs.c.address).in_(
                            list(keys)
                        )
                    )
                ):
                    opted[(opt.inbox, opt.kind, opt.address)] = {
                        "keyword": opt.keyword,
                        "at": opt.at,
                    }
        by_message: dict[str, list[dict[str, Any]]] = {}
        listed = [c.name for c in attachments.columns if c.name not in {"message_id", "blob_ref"}]
        for item in files:
            by_message.setdefault(item.message_id, []).append(
                {name: getattr(item, name) for name in listed}
            )
        result: dict[str, dict[str, Any]] = {}
        for conversation_id, conversation in found.items():
            context = contexts.get(conversation["customer_id"])
            if context is None:
                continue  # cannot happen with the foreign key; as good as not found
            recipient = recipients.get(conversation_id)
            conversation["customer"] = {
                **context,
                "history": [past for past in context["history"] if past["id"] != conversation_id],
            }
            conversation["recipient"] = recipient
            conversation["last_inbound_at"] = last_inbound.get(conversation_id)
            conversation["opt_out"] = (
                None
                if recipient is None
                else opted.get((conversation["inbox"], recipient.kind, recipient.address))
            )
            conversation["messages"] = [
                {
                    **dict(zip(_MESSAGE_NAMES, message, strict=False)),  # not the envelope (last)
                    "attachments": by_message.get(message.id, []),
                    "notes": _notes(message.envelope),
                }
                for message in by_conversation.get(conversation_id, [])
            ]
            result[conversation_id] = conversation
        return result

    async def conversations_with_status(self, status: str) -> list[dict[str, Any]]:
        """Summary rows of conversations in ``status`` (for restoring dispatch at start-up)."""
        async with self.read() as connection:
            rows = await connection.execute(
                select(
                    conversations.c.id,
                    conversations.c.queue,
                    conversations.c.priority,
                    conversations.c.assignee,
                    conversations.c.queued_at,
                    conversations.c.created_at,
                    conversations.c.channel,
                    conversations.c.decision,
                    conversations.c.customer_id,
                )
                .where(conversations.c.status == status)
                .order_by(conversations.c.queued_at)
            )
            return [dict(row._mapping) for row in rows]

    async def queued_pages(self, size: int = 1000) -> AsyncIterator[list[dict[str, Any]]]:
        """Every queued conversation as :meth:`conversations_with_status` rows, in pages of
        ``size``, most urgent first, then oldest: one query streamed page by page, so a large
        backlog can be taken in while the hub already works (dispatch start-up)."""
        rank = case(
            {str(priority): -priority.rank for priority in Priority},
            value=conversations.c.priority,
            else_=-Priority.NORMAL.rank,
        )
        query = (
            select(
                conversations.c.id,
                conversations.c.queue,
                conversations.c.priority,
                conversations.c.queued_at,
                conversations.c.created_at,
                conversations.c.channel,
                conversations.c.decision,
                conversations.c.customer_id,
            )
            .where(conversations.c.status == QUEUED)
            .order_by(rank, conversations.c.queued_at, conversations.c.id)
        )
        async with self.read() as connection:
            result = await connection.stream(query)
            async for page in result.partitions(size):
                yield [dict(row._mapping) for row in page]

    async def queued_on_thread(self, inbox: str, session: str) -> dict[str, Any] | None:
        """The waiting conversation of a thread (a chat visitor), if there is one."""
        async with self.read() as connection:
            row = (
                await connection.execute(
                    select(conversations.c.id, conversations.c.queue).where(
                        and_(
                            conversations.c.inbox == inbox,
                            conversations.c.thread_key == session,
                            conversations.c.status == QUEUED,
                        )
                    )
                )
            ).first()
        return None if row is None else dict(row._mapping)

    async def last_agent(self, customer_id: str, *, besides: str) -> str | None:
        """Who handled the customer's most recent other conversation (for sticky routing)."""
        async with self.read() as connection:
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

    # -- dispatch state --------------------------------------------------------------------
    #
    # These return a future instead of being coroutines: the write is queued when the method
    # is called, so the dispatch service, which does not wait for one write before deciding the
    # next, still has them committed in the order it decided them. Awaiting the future waits
    # for the commit. A commit's dispatch writes go in with a few statements (dispatch_writes).

    def assign(self, conversation_id: str, agent: str) -> asyncio.Future[None]:
        """Give a queued conversation to ``agent`` (InvalidState if it is not queued any more:
        this conditional update is what keeps a conversation from being assigned twice)."""
        return _checked(
            self._dispatch_write(DispatchWrite(ASSIGN, conversation_id, agent)),
            lambda done: (
                None if done else InvalidState(f"conversation {conversation_id} is not waiting")
            ),
        )

    def requeue(
        self, conversation_id: str, *, reason: str, agent: str | None
    ) -> asyncio.Future[dict[str, Any] | None]:
        """Put an assigned conversation back in its queue, keeping its age and priority.

        Resolves to what dispatch needs to queue it again (queue, priority, queued_at, channel,
        decision), or None if it was closed in the meantime (then nothing changed).
        """
        return self._dispatch_write(
            DispatchWrite(REQUEUE, conversation_id, agent, {"reason": reason})
        )

    def move(
        self,
        conversation_id: str,
        *,
        queue: str,
        reason: str,
        skills: list[str],
        priority: str | None = None,
    ) -> asyncio.Future[None]:
        """Record that dispatch moved waiting work to another queue (overflow, full queue)."""
        data = {"queue": queue, "reason": reason, "skills": skills, "priority": priority}
        return self._dispatch_write(DispatchWrite(MOVE, conversation_id, None, data))

    def close_conversation(
        self, conversation_id: str, *, agent: str, disposition: str
    ) -> asyncio.Future[None]:
        """Close a conversation ``agent`` holds (Forbidden if they do not hold it)."""
        return _checked(
            self._dispatch_write(
                DispatchWrite(CLOSE, conversation_id, agent, {"disposition": disposition})
            ),
            lambda done: (
                None
                if done
                else Forbidden(f"conversation {conversation_id} is not assigned to you")
            ),
        )

    def audit(
        self,
        kind: str,
        *,
        conversation_id: str | None = None,
        agent: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> asyncio.Future[None]:
        """Append an event to the audit log."""
        return self._dispatch_write(
            DispatchWrite(EVENT, conversation_id, agent, {"kind": kind, "data": data})
        )

    def _dispatch_write(self, write: DispatchWrite) -> asyncio.Future[Any]:
        return self.writer.enqueue(self._dispatch_batch, write)

    async def _dispatch_batch(
        self, connection: AsyncConnection, writes: list[DispatchWrite]
    ) -> list[Any]:
        return await apply_writes(connection, writes, self.clock())

    # -- replies and the outbox --------------------------------------------------------------

    async def add_reply(
        self,
        conversation_id: str,
        *,
        agent: str,
        client_id: str,
        text: str,
        note: bool = False,
        template: Template | None = None,
        via: tuple[str, str, Identity] | None = None,
        files: tuple[Attachment, ...] = (),
    ) -> Reply:
        """Store an agent's reply (queued in the outbox) or internal note, once per client id.

        ``template`` is an approved template the reply is sent as (``text`` is its rendering);
        ``via`` (inbox, channel, recipient) sends it through another channel instance, as a new
        message there rather than a threaded answer; ``files`` go with it (already stored)."""
        key = f"{'note' if note else 'reply'}:{agent}:{conversation_id}:{client_id}"

        async def run(connection: AsyncConnection) -> Reply:
            existing = (
                await connection.execute(
                    select(*_MESSAGE_COLUMNS).where(messages.c.idempotency_key == key)
                )
            ).first()
            if existing is not None:
                return Reply({**dict(existing._mapping), "attachments": []}, duplicate=True)
            conversation = (
                await connection.execute(
                    select(conversations).where(conversations.c.id == conversation_id)
                )
            ).first()
            if conversation is None:
                raise NotFound(f"conversation {conversation_id} does not exist")
            if conversation.status != ASSIGNED or conversation.assignee != agent:
                raise Forbidden(f"conversation {conversation_id} is not assigned to you")
            now = self.clock()
            message_id = new_id(now)
            row = {
                "id": message_id,
                "conversation_id": conversation_id,
                "kind": "note" if note else "message",
                "direction": "outbound",
                "channel": via[1] if via else conversation.channel,
                "inbox": via[0] if via else conversation.inbox,
                "idempotency_key": key,
                "provider_id": None,
                "author": agent,
                "text": text,
                "html": None,
                "subject": None,
                "envelope": None,
                "rules": None,
                "delivery_status": None if note else "queued",
                "delivery_error": None,
                "created_at": now,
            }
            if note:
                await connection.execute(messages.insert(), row)
                await _event(connection, now, "note.added", conversation_id, message_id, agent)
                return Reply({**row, "attachments": []}, duplicate=False)
            answered = await _answered(connection, conversation_id, conversation.customer_id)
            if answered is None:
                raise InvalidState("this conversation has no inbound message to reply to")
            outbound = reply_to(
                answered,
                message_id=message_id,
                conversation_id=conversation_id,
                idempotency_key=key,
                text=text,
                created_at=now,
                author=agent,
            )
            if template is not None:
                outbound = msgspec.structs.replace(outbound, template=template)
            if via is not None:
                outbound = msgspec.structs.replace(
                    outbound, inbox=via[0], recipient=via[2], thread=ThreadHints()
                )
            if files:
                outbound = msgspec.structs.replace(outbound, attachments=files)
            await connection.execute(messages.insert(), row)
            file_rows = [
                {
                    "id": new_id(now),
                    "message_id": message_id,
                    "name": item.name,
                    "content_type": item.content_type,
                    "size": item.size,
                    "sha256": item.sha256,
                    "blob_ref": item.blob_ref,
                }
                for item in files
            ]
            if file_rows:
                await connection.execute(attachments.insert(), file_rows)
            await connection.execute(outbox.insert(), outbox_row(outbound, now))
            await _event(connection, now, "reply.queued", conversation_id, message_id, agent)
            listed = [
                {k: v for k, v in f.items() if k not in {"message_id", "blob_ref"}}
                for f in file_rows
            ]
            return Reply({**row, "attachments": listed}, duplicate=False)

        try:
            reply: Reply = await self.writer.call(run)
        except StoreConflict:  # a concurrent resend won the race: report the stored one
            return Reply(await self._message_by_key(key), duplicate=True)
        return reply

    async def _message_by_key(self, key: str) -> dict[str, Any]:
        async with self.read() as connection:
            row = (
                await connection.execute(
                    select(*_MESSAGE_COLUMNS).where(messages.c.idempotency_key == key)
                )
            ).one()
        return {**dict(row._mapping), "attachments": []}

    async def due_outbox(self, limit: int = 100) -> list[OutboxItem]:
        """Pending sends whose next attempt is due, oldest first."""
        async with self.read() as connection:
            rows = await connection.execute(
                select(outbox.c.message_id, outbox.c.payload, outbox.c.attempts)
                .where(and_(outbox.c.status == "pending", outbox.c.next_attempt_at <= self.clock()))
                .order_by(outbox.c.next_attempt_at)
                .limit(limit)
            )
            return [
                OutboxItem(row.message_id, _outbound_decoder.decode(row.payload), row.attempts)
                for row in rows
            ]

    async def begin_attempt(self, message_id: str, after: int | None = None) -> Attempt | None:
        """Claim and count a send attempt before it starts; its number (1 for the first) and
        when the reply's first attempt began.

        Written before the connector is called, so after a crash mid-send the next attempt knows
        an earlier one may have reached the provider, and from when its message can date. With
        ``after`` (the attempts the caller saw), it is a claim: None when the reply is no longer
        pending or another attempt was counted since, so a stale read never sends it twice.
        """

        async def run(connection: AsyncConnection) -> Attempt | None:
            now = self.clock()
            claim = update(outbox).where(outbox.c.message_id == message_id)
            if after is not None:
                claim = claim.where(outbox.c.status == "pending", outbox.c.attempts == after)
            counted = await connection.execute(
                claim.values(
                    attempts=outbox.c.attempts + 1,
                    first_attempt_at=func.coalesce(outbox.c.first_attempt_at, now),
                )
            )
            if after is not None and counted.rowcount != 1:
                return None
            row = (
                await connection.execute(
                    select(outbox.c.attempts, outbox.c.first_attempt_at).where(
                        outbox.c.message_id == message_id
                    )
                )
            ).first()
            if row is None:
                return Attempt(1, now)
            return Attempt(int(row.attempts), float(row.first_attempt_at))

        result: Attempt | None = await self.writer.call(run)
        return result

    async def update_delivery(
        self, inbox: str, provider_id: str, delivery: Delivery
    ) -> DeliveryChange | None:
        """Apply a provider's later report on a reply it accepted as ``provider_id``.

        None if no reply of ``inbox`` has that id; ``changed`` is False when the report would
        move it backwards (or repeats what is known).
        """

        async def run(connection: AsyncConnection) -> DeliveryChange | None:
            row = (
                await connection.execute(
                    select(
                        messages.c.id, messages.c.conversation_id, messages.c.delivery_status
                    ).where(
                        and_(
                            messages.c.inbox == inbox,
                            messages.c.provider_id == provider_id,
                            messages.c.direction == "outbound",
                        )
                    )
                )
            ).first()
            if row is None:
                return None
            try:
                current = _DELIVERY_RANK[DeliveryStatus(row.delivery_status)]
            except ValueError:
                current = -1
            if _DELIVERY_RANK[delivery.status] <= current:
                return DeliveryChange(
                    row.conversation_id, row.id, row.delivery_status, None, changed=False
                )
            error = delivery.error_message
            if delivery.error_code:
                error = f"{delivery.error_code}: {error or ''}".strip()
            now = self.clock()
            await connection.execute(
                update(messages)
                .where(messages.c.id == row.id)
                .values(delivery_status=str(delivery.status), delivery_error=error)
            )
            if delivery.status in {DeliveryStatus.FAILED, DeliveryStatus.UNDELIVERED}:
                await connection.execute(
                    update(outbox)
                    .where(outbox.c.message_id == row.id)
                    .values(status="failed", last_error=error)
                )
            await _event(
                connection,
                now,
                "delivery.updated",
                row.conversation_id,
                row.id,
                data={"status": str(delivery.status), "error": error, "source": "provider"},
            )
            return DeliveryChange(row.conversation_id, row.id, str(delivery.status), error)

        change: DeliveryChange | None = await self.writer.call(run)
        return change

    async def connector_state(self, instance: str, key: str) -> str | None:
        """A value connector ``instance`` saved under ``key``, or None."""
        async with self.read() as connection:
            row = (
                await connection.execute(
                    select(connector_state.c.value).where(
                        and_(connector_state.c.instance == instance, connector_state.c.key == key)
                    )
                )
            ).first()
        return None if row is None else str(row.value)

    async def save_connector_state(self, instance: str, key: str, value: str) -> None:
        """Durably replace the value of ``key`` for connector ``instance``."""

        async def run(connection: AsyncConnection) -> None:
            where = and_(connector_state.c.instance == instance, connector_state.c.key == key)
            await connection.execute(connector_state.delete().where(where))
            await connection.execute(
                connector_state.insert(),
                {"instance": instance, "key": key, "value": value, "updated_at": self.clock()},
            )

        await self.writer.call(run)

    async def delete_connector_state(self, instance: str, key: str) -> None:
        """Forget ``key`` of connector ``instance``."""

        async def run(connection: AsyncConnection) -> None:
            await connection.execute(
                connector_state.delete().where(
                    and_(connector_state.c.instance == instance, connector_state.c.key == key)
                )
            )

        await self.writer.call(run)

    async def connector_state_keys(self, instance: str, prefix: str) -> list[str]:
        """The keys connector ``instance`` saved that start with ``prefix``, sorted."""
        async with self.engine.connect() as connection:
            rows = await connection.execute(
                select(connector_state.c.key)
                .where(
                    and_(
                        connector_state.c.instance == instance,
                        connector_state.c.key.startswith(prefix, autoescape=True),
                    )
                )
                .order_by(connector_state.c.key)
            )
            return [str(row.key) for row in rows]

    async def set_opt_out(
        self, inbox: str, identity: Identity, opted_out: bool, keyword: str
    ) -> None:
        """Record that ``identity`` wants nothing more from ``inbox`` (or wants it again)."""

        async def run(connection: AsyncConnection) -> None:
            now = self.clock()
            key = and_(
                opt_outs.c.inbox == inbox,
                opt_outs.c.kind == identity.kind,
                opt_outs.c.address == identity.address,
            )
            await connection.execute(opt_outs.delete().where(key))
            if opted_out:
                await connection.execute(
                    opt_outs.insert(),
                    {
                        "inbox": inbox,
                        "kind": identity.kind,
                        "address": identity.address,
                        "keyword": keyword[:32],
                        "at": now,
                    },
                )
            await _event(
                connection,
                now,
                "consent.opt_out" if opted_out else "consent.opt_in",
                data={
                    "inbox": inbox,
                    "kind": identity.kind,
                    "address": identity.address,
                    "keyword": keyword[:32],
                },
            )

        await self.writer.call(run)

    async def opted_out(self, inbox: str, identity: Identity) -> str | None:
        """The keyword ``identity`` opted out of ``inbox`` with, or None."""
        async with self.read() as connection:
            row = (
                await connection.execute(
                    select(opt_outs.c.keyword).where(
                        and_(
                            opt_outs.c.inbox == inbox,
                            opt_outs.c.kind == identity.kind,
                            opt_outs.c.address == identity.address,
                        )
                    )
                )
            ).first()
        return row.keyword if row else None

    async def record_delivery(
        self, message_id: str, delivery: Delivery, *, retry_at: float | None = None
    ) -> None:
        """Record a send's outcome; ``retry_at`` keeps the outbox entry pending for later.

        :class:`ProviderIdTaken` (nothing recorded) if another reply holds the provider id.
        """

        async def run(connection: AsyncConnection) -> None:
            now = self.clock()
            error = delivery.error_message
            if delivery.error_code:
                error = f"{delivery.error_code}: {error or ''}".strip()
            pending = retry_at is not None
            if delivery.provider_id is not None:
                await _ensure_provider_id_free(connection, message_id, delivery.provider_id)
            await connection.execute(
                update(outbox)
                .where(outbox.c.message_id == message_id)
                .values(
                    status="pending"
                    if pending
                    else ("failed" if delivery.status in {"failed", "undelivered"} else "sent"),
                    next_attempt_at=retry_at if pending else now,
                    last_error=error,
                    sent_at=None if pending else now,
                )
            )
            await connection.execute(
                update(messages)
                .where(messages.c.id == message_id)
                .values(
                    delivery_status=str(delivery.status),
                    delivery_error=error,
                    provider_id=delivery.provider_id,
                )
            )
            await _event(
                connection,
                now,
                "delivery.updated",
                None,
                message_id,
                data={"status": str(delivery.status), "error": error},
            )

        try:
            await self.writer.call(run)
        except StoreConflict as exc:  # another process recorded it first: the index said so
            raise ProviderIdTaken(
                f"provider id {delivery.provider_id} belongs to another reply"
            ) from exc

    # -- rules revisions ---------------------------------------------------------------------

    async def record_rules_revision(self, digest: str, path: str, text: str) -> bool:
        """Keep an accepted rules file (once per content); True if it was new."""

        async def run(connection: AsyncConnection) -> bool:
            known = (
                await connection.execute(
                    select(rule_revisions.c.digest).where(rule_revisions.c.digest == digest)
                )
            ).first()
            if known is not None:
                return False
            now = self.clock()
            await connection.execute(
                rule_revisions.insert(),
                {"digest": digest, "path": path, "loaded_at": now, "text": text},
            )
            await _event(connection, now, "rules.loaded", data={"digest": digest, "path": path})
            return True

        result: bool = await self.writer.call(run)
        return result

    async def rules_revision(self, digest: str) -> dict[str, Any] | None:
        async with self.read() as connection:
            row = (
                await connection.execute(
                    select(rule_revisions).where(rule_revisions.c.digest == digest)
                )
            ).first()
        return None if row is None else dict(row._mapping)

    # -- agent sessions ----------------------------------------------------------------------

    async def create_session(self, agent: str, ttl: float, credential: str) -> str:
        """A new opaque session token for ``agent``; only its hash is stored, with the
        fingerprint of the credential it was made with (``hub.sessions``)."""
        token = secrets.token_urlsafe(32)

        async def run(connection: AsyncConnection) -> None:
            now = self.clock()
            await connection.execute(
                sessions.insert(),
                {
                    "token_hash": token_hash(token),
                    "agent": agent,
                    "created_at": now,
                    "expires_at": now + ttl,
                    "credential": credential,
                },
            )
            await _event(connection, now, "agent.login", agent=agent)

        await self.writer.call(run)
        return token

    async def attachment(self, attachment_id: str) -> dict[str, Any] | None:
        """An attachment with what deciding who may see it needs: its conversation's id,
        status and assignee. None if there is no such attachment."""
        async with self.read() as connection:
            row = (
                await connection.execute(
                    select(
                        attachments.c.id,
                        attachments.c.name,
                        attachments.c.content_type,
                        attachments.c.blob_ref,
                        conversations.c.id.label("conversation_id"),
                        conversations.c.assignee,
                    )
                    .join(messages, messages.c.id == attachments.c.message_id)
                    .join(conversations, conversations.c.id == messages.c.conversation_id)
                    .where(attachments.c.id == attachment_id)
                )
            ).first()
        return dict(row._mapping) if row is not None else None

    async def sessions(self, token_hashes: Collection[str]) -> dict[str, StoredSession]:
        """The stored sessions among ``token_hashes`` (expired ones included), by hash."""
        if not token_hashes:
            return {}
        async with self.read() as connection:
            rows = (
                await connection.execute(
                    select(sessions).where(sessions.c.token_hash.in_(list(token_hashes)))
                )
            ).all()
        return {
            row.token_hash: StoredSession(
                token_hash=row.token_hash,
                agent=row.agent,
                credential=row.credential,
                expires_at=row.expires_at,
            )
            for row in rows
        }

    async def delete_sessions(
        self, *, token_hash: str | None = None, agent: str | None = None, reason: str
    ) -> list[str]:
        """Remove one session (by token hash) or all of an agent's; returns the removed hashes
        and records ``agent.logout`` for each."""
        if (token_hash is None) == (agent is None):
            raise ValueError("give either token_hash or agent")
        which = (
            sessions.c.token_hash == token_hash
            if token_hash is not None
            else sessions.c.agent == agent
        )

        async def run(connection: AsyncConnection) -> list[str]:
            rows = (
                await connection.execute(
                    select(sessions.c.token_hash, sessions.c.agent).where(which)
                )
            ).all()
            if rows:
                await connection.execute(sessions.delete().where(which))
            now = self.clock()
            for row in rows:
                await _event(
                    connection, now, "agent.logout", agent=row.agent, data={"reason": reason}
                )
            return [row.token_hash for row in rows]

        removed: list[str] = await self.writer.call(run)
        return removed

    async def purge_sessions(self, before: float) -> int:
        """Forget sessions that expired before ``before``; returns how many."""

        async def run(connection: AsyncConnection) -> int:
            result = await connection.execute(
                sessions.delete().where(sessions.c.expires_at < before)
            )
            return int(result.rowcount or 0)

        count: int = await self.writer.call(run)
        return count


def _stored_inbound(message: Any) -> bool:
    return bool(message.direction == "inbound" and message.envelope)


async def _recipients(
    connection: AsyncConnection,
    found: dict[str, dict[str, Any]],
    by_conversation: dict[str, list[Any]],
) -> dict[str, Identity]:
    """:func:`_answered`'s sender for many conversations from their loaded messages (ordered
    by time): the newest inbound message's sender if they are one of the conversation's
    customer's identities, else the sender of the message that opened it. One statement."""
    newest: dict[str, Envelope] = {}
    first: dict[str, Any] = {}
    for conversation_id, listed in by_conversation.items():
        inbound = [m for m in listed if _stored_inbound(m)]
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


async def _newest_inbound(connection: AsyncConnection, conversation_id: str) -> Any:
    """The newest inbound message row (``envelope``, ``created_at``) of a conversation."""
    return await _inbound(connection, conversation_id, newest=True)


async def _inbound(connection: AsyncConnection, conversation_id: str, *, newest: bool) -> Any:
    created = desc(messages.c.created_at) if newest else messages.c.created_at
    ids = desc(messages.c.id) if newest else messages.c.id
    return (
        await connection.execute(
            select(messages.c.envelope, messages.c.created_at)
            .where(
                and_(
                    messages.c.conversation_id == conversation_id,
                    messages.c.direction == "inbound",
                    messages.c.envelope.is_not(None),
                )
            )
            .order_by(created, ids)
            .limit(1)
        )
    ).first()


async def _answered(
    connection: AsyncConnection, conversation_id: str, customer_id: str
) -> Envelope | None:
    """The inbound message a reply answers, and so whom it goes to: the conversation's customer.

    That is the newest message whose sender is one of the customer's identities; when the
    newest came from anyone else (stored before strangers were kept out of threads, or a
    customer whose record holds no address, such as an unverified sender's), the message that
    opened the conversation. A reply never goes to whoever wrote last."""
    last = await _newest_inbound(connection, conversation_id)
    if last is None:
        return None
    newest = decode_envelope(last.envelope)
    owner = await identity_owner(connection, newest.sender.kind, newest.sender.address)
    if owner is not None and owner.customer_id == customer_id:
        return newest
    first = await _inbound(connection, conversation_id, newest=False)
    return decode_envelope(first.envelope) if first is not None else newest


async def _ensure_provider_id_free(
    connection: AsyncConnection, message_id: str, provider_id: str
) -> None:
    """Raise :class:`ProviderIdTaken` if a reply other than ``message_id`` of the same inbox
    holds ``provider_id`` (the unique index catches what concurrent processes race past)."""
    inbox = select(messages.c.inbox).where(messages.c.id == message_id).scalar_subquery()
    holder = (
        await connection.execute(
            select(messages.c.id).where(
                and_(
                    messages.c.inbox == inbox,
                    messages.c.provider_id == provider_id,
                    messages.c.direction == "outbound",
                    messages.c.id != message_id,
                )
            )
        )
    ).first()
    if holder is not None:
        raise ProviderIdTaken(f"provider id {provider_id} belongs to reply {holder.id}")


def _notes(stored: str | None) -> list[str]:
    """The problem notes of a stored envelope (see :func:`problem_notes`)."""
    if not stored:
        return []
    try:
        return list(problem_notes(decode_envelope(stored).metadata))
    except (msgspec.DecodeError, msgspec.ValidationError):
        return []


_MESSAGE_COLUMNS = (
    messages.c.id,
    messages.c.conversation_id,
    messages.c.kind,
    messages.c.direction,
    messages.c.channel,
    messages.c.author,
    messages.c.text,
    messages.c.subject,
    messages.c.rules,
    messages.c.delivery_status,
    messages.c.delivery_error,
    messages.c.created_at,
)
_MESSAGE_NAMES = tuple(column.name for column in _MESSAGE_COLUMNS)


def _checked(
    future: asyncio.Future[Any], refusal: Callable[[Any], Exception | None]
) -> asyncio.Future[None]:
    """A future that fails with ``refusal(result)`` when that is not None (the write found
    the state changed), and otherwise resolves to None when ``future`` does."""
    checked: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def settle(done: asyncio.Future[Any]) -> None:
        if checked.done():
            return
        if done.cancelled():
            checked.cancel()
        elif (error := done.exception()) is not None:
            checked.set_exception(error)
        elif (problem := refusal(done.result())) is not None:
            checked.set_exception(problem)
        else:
            checked.set_result(None)

    future.add_done_callback(settle)
    return checked


async def _event(
    connection: AsyncConnection,
    at: float,
    kind: str,
    conversation_id: str | None = None,
    message_id: str | None = None,
    agent: str | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    await connection.execute(
        events.insert(),
        event_row(
            at, kind, conversation_id=conversation_id, message_id=message_id, agent=agent, data=data
        ),
    )
