"""The dispatch service's writes (assign, close, requeue, move, audit events), applied in
batches: one statement per kind of write for a whole commit, not one per conversation.

Every statement the writer runs costs a trip through the event loop, and a busy hub has
thousands of callbacks queued; so the same kind of change to many conversations goes in as one
conditional UPDATE run for many parameter sets, and what each write found (done, or the state
had changed) is told per write. Writes to the same conversation keep their order; writes to
different conversations commute, so they are grouped by kind.

With several hub processes, a write carries the fencing token of the dispatch lease its
process held when it decided it (``hub.lease``); a commit whose writes carry a token
that is not the lease's current one is refused with :class:`LeaseLost` (the writer then retries
each write alone, so only the stale ones fail). Token 0 is refused always: a standby carries
it, so nothing it does can write dispatch state. Writes without a token (one process) are not
checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.errors import LeaseLost, StoreError
from hub.store.audit import event_row
from hub.store.conversations import SUMMARY_COLUMNS, summary_of
from hub.store.leases import fencing_token
from hub.store.schema import ASSIGNED, CLOSED, QUEUED, conversations, events

ASSIGN = "assign"
CLOSE = "close"
REQUEUE = "requeue"
MOVE = "move"
EVENT = "event"

_ORDER = (MOVE, REQUEUE, ASSIGN, CLOSE)  # any order will do: one conversation per group


@dataclass(frozen=True, slots=True)
class DispatchWrite:
    kind: str
    conversation_id: str | None
    agent: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    token: int | None = None  # the dispatch lease's fencing token (None: one process)


async def apply_writes(
    connection: AsyncConnection, writes: list[DispatchWrite], now: float
) -> list[Any]:
    """Apply ``writes`` in one transaction; per write: assign and close give whether they
    happened, requeue the conversation's summary or None (closed meanwhile), the others None.
    Audit events (one per write that happened) go in with one INSERT, in the writes' order.
    :class:`LeaseLost` if a write's fencing token is not the lease's (nothing is applied)."""
    tokens = {write.token for write in writes if write.token is not None}
    if tokens:
        current = await fencing_token(connection)
        stale = tokens - {current or None}  # 0 (never held; a standby's token) never writes
        if stale:
            raise LeaseLost(
                f"dispatch write with fencing token {min(stale)} refused: the lease's is "
                f"{current}; another hub process dispatches now"
            )
    results: list[Any] = [None] * len(writes)
    rows: list[dict[str, Any] | None] = [None] * len(writes)
    groups: dict[str, list[int]] = {}
    touched: set[str] = set()

    async def flush() -> None:
        for kind in _ORDER:
            members = groups.pop(kind, [])
            if members:
                await _GROUP[kind](connection, writes, members, now, results, rows)
        touched.clear()

    for index, write in enumerate(writes):
        if write.kind == EVENT:
            rows[index] = _event_row(now, write, write.data["kind"], write.data.get("data"))
            continue
        assert write.conversation_id is not None
        if write.conversation_id in touched:
            await flush()  # a second write to the same conversation sees the first
        touched.add(write.conversation_id)
        groups.setdefault(write.kind, []).append(index)
    await flush()
    log = [row for row in rows if row is not None]
    if log:
        await connection.execute(events.insert(), log)
    return results


def _event_row(
    now: float, write: DispatchWrite, kind: str, data: dict[str, Any] | None = None
) -> dict[str, Any]:
    return event_row(now, kind, conversation_id=write.conversation_id, agent=write.agent, data=data)


def _ids(writes: list[DispatchWrite], members: list[int]) -> list[str]:
    return [str(writes[index].conversation_id) for index in members]


# Per kind of write: which rows qualify is read first (locking them on PostgreSQL, where other
# hub processes write too; SQLite has only this writer), then one UPDATE runs for every row that
# qualifies (executemany: compiled once, one trip to the driver). The UPDATEs keep their
# conditions, so they can never apply to a row that does not qualify.
_ASSIGN = (
    update(conversations)
    .where(and_(conversations.c.id == bindparam("cid"), conversations.c.status == QUEUED))
    .values(status=ASSIGNED, assignee=bindparam("agent"), updated_at=bindparam("now"))
)
_CLOSE = (
    update(conversations)
    .where(
        and_(
            conversations.c.id == bindparam("cid"),
            conversations.c.status == ASSIGNED,
            conversations.c.assignee == bindparam("agent"),
        )
    )
    .values(
        status=CLOSED,
        disposition=bindparam("disposition"),
        closed_at=bindparam("now"),
        updated_at=bindparam("now"),
    )
)
_REQUEUE = (
    update(conversations)
    .where(and_(conversations.c.id == bindparam("cid"), conversations.c.status != CLOSED))
    .values(status=QUEUED, assignee=None, updated_at=bindparam("now"))
)
_MOVE = (
    update(conversations)
    .where(and_(conversations.c.id == bindparam("cid"), conversations.c.status == QUEUED))
    .values(
        queue=bindparam("queue"),
        priority=func.coalesce(bindparam("priority"), conversations.c.priority),
        updated_at=bindparam("now"),
    )
)


async def _current(connection: AsyncConnection, ids: list[str], *columns: Any) -> dict[str, Any]:
    """The rows of ``ids`` as they are now, locked until the commit where the database can."""
    rows = await connection.execute(
        select(conversations.c.id, conversations.c.status, conversations.c.assignee, *columns)
        .where(conversations.c.id.in_(ids))
        .with_for_update()
    )
    return {row.id: row for row in rows}


async def _update(
    connection: AsyncConnection, statement: Any, params: list[dict[str, Any]]
) -> None:
    if params:
        result = await connection.execute(statement, params)
        if result.rowcount not in (-1, len(params)):  # -1: the driver does not count
            raise StoreError("a dispatch write changed other rows than the ones it had locked")


async def _assign(
    connection: AsyncConnection,
    writes: list[DispatchWrite],
    members: list[int],
    now: float,
    results: list[Any],
    rows: list[dict[str, Any] | None],
) -> None:
    current = await _current(connection, _ids(writes, members))
    params = []
    for index in members:
        write = writes[index]
        row = current.get(str(write.conversation_id))
        results[index] = row is not None and row.status == QUEUED
        if results[index]:
            params.append({"cid": write.conversation_id, "agent": write.agent, "now": now})
            rows[index] = _event_row(now, write, "conversation.assigned")
    await _update(connection, _ASSIGN, params)


async def _close(
    connection: AsyncConnection,
    writes: list[DispatchWrite],
    members: list[int],
    now: float,
    results: list[Any],
    rows: list[dict[str, Any] | None],
) -> None:
    current = await _current(connection, _ids(writes, members))
    params = []
    for index in members:
        write = writes[index]
        row = current.get(str(write.conversation_id))
        disposition = write.data["disposition"]
        results[index] = row is not None and row.status == ASSIGNED and row.assignee == write.agent
        if results[index]:
            params.append(
                {
                    "cid": write.conversation_id,
                    "agent": write.agent,
                    "disposition": disposition,
                    "now": now,
                }
            )
            rows[index] = _event_row(
                now, write, "conversation.closed", {"disposition": disposition}
            )
    await _update(connection, _CLOSE, params)


async def _requeue(
    connection: AsyncConnection,
    writes: list[DispatchWrite],
    members: list[int],
    now: float,
    results: list[Any],
    rows: list[dict[str, Any] | None],
) -> None:
    # what a requeue hands back: the conversation as dispatch queues it again
    current = await _current(connection, _ids(writes, members), *SUMMARY_COLUMNS[1:])
    params = []
    for index in members:
        write = writes[index]
        row = current.get(str(write.conversation_id))
        if row is None or row.status == CLOSED:
            continue  # closed in the meantime: nothing to take back
        params.append({"cid": write.conversation_id, "now": now})
        results[index] = summary_of(row)  # nobody holds it now
        rows[index] = _event_row(
            now, write, "conversation.requeued", {"reason": write.data["reason"]}
        )
    await _update(connection, _REQUEUE, params)


async def _move(
    connection: AsyncConnection,
    writes: list[DispatchWrite],
    members: list[int],
    now: float,
    results: list[Any],
    rows: list[dict[str, Any] | None],
) -> None:
    await connection.execute(
        _MOVE,
        [
            {
                "cid": writes[index].conversation_id,
                "queue": writes[index].data["queue"],
                "priority": writes[index].data.get("priority"),
                "now": now,
            }
            for index in members
        ],
    )
    for index in members:
        write = writes[index]
        rows[index] = _event_row(now, write, "conversation.moved", dict(write.data))


_GROUP = {ASSIGN: _assign, CLOSE: _close, REQUEUE: _requeue, MOVE: _move}
