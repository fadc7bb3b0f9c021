"""Each agent's notices in decision order, however long each one takes to prepare.

A notice often waits for its write to commit and for what it shows to load; those waits run
side by side, and each notice goes out only after the agent's earlier ones, so an
``offer_revoked`` never overtakes its ``offer``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from hub.dispatch.notices import Audience, Notice
from hub.errors import HubError

log = logging.getLogger(__name__)

Prepare = Coroutine[Any, Any, Notice | None]
Track = Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]]


class AgentLines:
    """One line of notices per agent, told to ``audience`` in the order they were queued."""

    def __init__(self, audience: Audience, track: Track) -> None:
        """``track`` runs each notice's task as dispatch work (stopped with the service)."""
        self.audience = audience
        self.track = track
        self._last: dict[str, asyncio.Task[None]] = {}  # each agent's last notice in line

    def send(self, agent: str, prepare: Prepare) -> asyncio.Task[None]:
        """Tell the agent the notice ``prepare`` makes (None: nothing) after their earlier
        notices; preparing runs alongside theirs."""
        previous = self._last.get(agent)
        task = self.track(self._in_turn(agent, prepare, previous))
        self._last[agent] = task

        def sent(done: asyncio.Task[None]) -> None:
            if self._last.get(agent) is done:
                del self._last[agent]
            prepare.close()  # a task cancelled before it ran never awaited it (stop)

        task.add_done_callback(sent)
        return task

    async def _in_turn(
        self, agent: str, prepare: Prepare, previous: asyncio.Task[None] | None
    ) -> None:
        notice: Notice | None = None
        try:
            notice = await prepare
        except HubError as exc:
            log.warning("dispatch could not prepare a frame for %s: %s", agent, exc)
        except Exception:
            log.exception("dispatch could not prepare a frame for %s", agent)
        if previous is not None and not previous.done():
            await asyncio.wait([previous])
        if notice is None:
            return
        try:
            await self.audience.tell(agent, notice)
        except Exception:  # rendering it failed: logged like a failed preparation
            log.exception("dispatch could not tell %s %s", agent, type(notice).__name__)
