"""Who holds which conversation: dispatch's assign, requeue, move and close, with the audit
events written in the same order.

These return a future instead of being coroutines: the write is queued when the method is
called, so the dispatch service, which does not wait for one write before deciding the next,
still has them committed in the order it decided them. Awaiting the future waits for the
commit. A commit's dispatch writes go in with a few statements (``hub.store.dispatch_writes``).
With several hub processes, :meth:`Assignments.fence` makes every later write carry the
dispatch lease's token, which the store checks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from hub.errors import Forbidden, InvalidState
from hub.store.database import Database
from hub.store.dispatch_writes import (
    ASSIGN,
    CLOSE,
    EVENT,
    MOVE,
    REQUEUE,
    DispatchWrite,
    apply_writes,
)
from hub.store.records import ConversationSummary


class Assignments:
    """Dispatch's writes, committed in the order they were asked for."""

    def __init__(self, database: Database) -> None:
        self._db = database
        self._token: int | None = None

    def fence(self, token: int) -> None:
        """Carry ``token`` (the dispatch lease's, from this process's term; 0 on a standby,
        always refused) on every write from now on. Never unset: after the term ends, writes
        still carry the old token and are refused, which is the point."""
        self._token = token

    def assign(self, conversation_id: str, agent: str) -> asyncio.Future[None]:
        """Give a queued conversation to ``agent`` (InvalidState if it is not queued any more:
        this conditional update is what keeps a conversation from being assigned twice)."""
        return _checked(
            self._write(DispatchWrite(ASSIGN, conversation_id, agent)),
            lambda done: (
                None if done else InvalidState(f"conversation {conversation_id} is not waiting")
            ),
        )

    def requeue(
        self, conversation_id: str, *, reason: str, agent: str | None
    ) -> asyncio.Future[ConversationSummary | None]:
        """Put an assigned conversation back in its queue, keeping its age and priority.

        Resolves to what dispatch needs to queue it again, or None if it was closed in the
        meantime (then nothing changed).
        """
        return self._write(DispatchWrite(REQUEUE, conversation_id, agent, {"reason": reason}))

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
        return self._write(DispatchWrite(MOVE, conversation_id, None, data))

    def close(self, conversation_id: str, *, agent: str, disposition: str) -> asyncio.Future[None]:
        """Close a conversation ``agent`` holds (Forbidden if they do not hold it)."""
        return _checked(
            self._write(DispatchWrite(CLOSE, conversation_id, agent, {"disposition": disposition})),
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
        return self._write(
            DispatchWrite(EVENT, conversation_id, agent, {"kind": kind, "data": data})
        )

    def _write(self, write: DispatchWrite) -> asyncio.Future[Any]:
        if self._token is not None:
            write = replace(write, token=self._token)
        return self._db.writer.enqueue(self._batch, write)

    async def _batch(self, connection: AsyncConnection, writes: list[DispatchWrite]) -> list[Any]:
        return await apply_writes(connection, writes, self._db.clock())


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
