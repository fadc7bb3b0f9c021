"""What the conformance checks run against: one started instance (:class:`Harness`), the
hostile requests a connector declares (:class:`Hostile`), and where a stuck check waits."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Container
from dataclasses import dataclass
from typing import Any

import aiohttp

from connectors.base import Connector, ConnectorContext
from connectors.testing.fakes import CollectingSink


@dataclass(frozen=True, slots=True)
class Harness:
    """One started instance under test, as the hooks of :class:`ConnectorConformance` see it.

    ``url`` is where :func:`served` serves its routes (``{url}/channels/{instance}{path}``);
    ``http`` is the context's shared client session, for your hooks' requests.
    """

    connector: Connector
    sink: CollectingSink
    ctx: ConnectorContext
    url: str

    @property
    def http(self) -> aiohttp.ClientSession:
        return self.ctx.http


@dataclass(frozen=True, slots=True)
class Hostile:
    """One hostile request: ``send`` performs it against a started instance and returns the
    status the transport answered with (an HTTP status, an SMTP reply code, a websocket close
    code). The check passes when that status is in ``refused`` and nothing was stored.

    The default, 4xx, is the HTTP contract: the caller is told what is wrong and a genuine
    provider does not retry it. SMTP refuses with 5xx; a websocket closes with 1009 (too big)
    or 44xx (the application's own 4xx).
    """

    name: str
    send: Callable[[Harness], Awaitable[int]]
    refused: Container[int] = range(400, 500)


def where_tasks_wait() -> str:
    """Where every other task of the loop is suspended (coroutine and line), to say what a
    check that never finished was waiting for."""
    places = []
    for task in asyncio.all_tasks():
        if task is asyncio.current_task():
            continue
        chain: list[str] = []
        awaited: Any = task.get_coro()
        while awaited is not None:  # follow the awaits inward, through async generators too
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "ag_frame", None)
            if frame is not None:
                chain.append(f"{frame.f_code.co_qualname}:{frame.f_lineno}")
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "ag_await", None)
        if chain:
            places.append(" > ".join(chain))
    return "; ".join(sorted(places)) or "no other task"
