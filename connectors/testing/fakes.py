"""Fakes that behave like the hub where it matters to a connector: ingest is idempotent per key,
history is per thread, blobs are content-addressed; and a loopback server for its routes."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from connectors.base import (
    Accepted,
    Connector,
    ConnectorContext,
    HistoryItem,
    MemoryState,
    StateStore,
)
from hub.envelope import Attachment, CallEvent, Delivery, Envelope, Identity, Outbound


class CollectingSink:
    """A :class:`~connectors.base.Sink` and history source that keeps envelopes in memory.

    ``fail_next`` makes the next ``ingest`` raise that error; ``down`` makes every ``ingest``
    raise it until cleared (a store that is down, for connectors that retry by themselves).
    """

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self._by_key: dict[str, Accepted] = {}
        self._threads: dict[tuple[str, str], list[HistoryItem]] = {}
        self.fail_next: Exception | None = None
        self.down: Exception | None = None
        self.duplicates = 0  # redeliveries answered with duplicate=True
        self.redeliveries: list[tuple[str, str, str]] = []  # (channel, inbox, key) answered by
        # the connector itself
        self.presence: list[tuple[str, str, bool]] = []
        self.deliveries: list[tuple[str, str, Delivery]] = []
        self.opt_outs: dict[tuple[str, str, str], str] = {}  # (inbox, kind, address) -> keyword
        self.calls: list[tuple[str, str, CallEvent]] = []  # (inbox, session, event), once each

    async def ingest(self, envelope: Envelope) -> Accepted:
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error
        if self.down is not None:
            raise self.down
        known = self._by_key.get(envelope.idempotency_key)
        if known is not None:
            self.duplicates += 1
            return Accepted(
                message_id=known.message_id,
                conversation_id=known.conversation_id,
                duplicate=True,
            )
        self.envelopes.append(envelope)
        thread = envelope.thread.session or envelope.idempotency_key
        accepted = Accepted(
            message_id=f"m{len(self.envelopes)}", conversation_id=f"c:{envelope.inbox}:{thread}"
        )
        self._by_key[envelope.idempotency_key] = accepted
        self._threads.setdefault((envelope.inbox, thread), []).append(
            HistoryItem(
                message_id=accepted.message_id,
                direction="inbound",
                text=envelope.text,
                created_at=envelope.received_at,
            )
        )
        return accepted

    async def redelivered(self, channel: str, inbox: str, idempotency_key: str) -> None:
        self.redeliveries.append((channel, inbox, idempotency_key))

    async def customer_presence(self, inbox: str, session: str, present: bool) -> None:
        self.presence.append((inbox, session, present))

    async def delivery_update(self, inbox: str, provider_id: str, delivery: Delivery) -> bool:
        self.deliveries.append((inbox, provider_id, delivery))
        return True

    async def call_event(self, inbox: str, session: str, event: CallEvent) -> bool:
        if (inbox, session) not in self._threads:
            return False
        seen = {(i, s, e.call_sid, e.state, e.agent) for i, s, e in self.calls}
        if (inbox, session, event.call_sid, event.state, event.agent) not in seen:
            self.calls.append((inbox, session, event))
        return True

    async def opt_out(self, inbox: str, identity: Identity, opted_out: bool, keyword: str) -> None:
        key = (inbox, identity.kind, identity.address)
        if opted_out:
            self.opt_outs[key] = keyword
        else:
            self.opt_outs.pop(key, None)

    def record_reply(self, outbound: Outbound) -> None:
        """Add a reply to the thread history, as the hub does when an agent answers."""
        thread = outbound.thread.session or outbound.conversation_id
        self._threads.setdefault((outbound.inbox, thread), []).append(
            HistoryItem(
                message_id=outbound.message_id,
                direction="outbound",
                text=outbound.text,
                created_at=outbound.created_at,
                author=outbound.author,
            )
        )

    async def history(self, inbox: str, session: str, limit: int = 200) -> list[HistoryItem]:
        return self._threads.get((inbox, session), [])[-limit:] if limit else []


class MemoryBlobs:
    """Content-addressed blobs in a dict."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    async def put(self, data: bytes, *, name: str, content_type: str) -> Attachment:
        digest = hashlib.sha256(data).hexdigest()
        self.blobs[f"sha256:{digest}"] = data
        return Attachment(
            name=name,
            content_type=content_type,
            size=len(data),
            sha256=digest,
            blob_ref=f"sha256:{digest}",
        )

    async def get(self, ref: str) -> bytes:
        try:
            return self.blobs[ref]
        except KeyError:
            raise FileNotFoundError(ref) from None


@asynccontextmanager
async def connector_context(
    instance: str,
    *,
    sink: CollectingSink | None = None,
    secret: bytes = b"connector-test-secret-0123456789",
    clock: Callable[[], float] = time.time,
    public_url: str = "http://127.0.0.1:8080",
    state: StateStore | None = None,
    blobs: MemoryBlobs | None = None,
) -> AsyncIterator[ConnectorContext]:
    """A :class:`ConnectorContext` like the hub's, with a real shared HTTP session.

    Pass one ``state`` (and one ``blobs``) to two contexts to play a restart of a connector
    that keeps state."""
    sink = sink or CollectingSink()
    async with aiohttp.ClientSession() as session:
        yield ConnectorContext(
            instance=instance,
            sink=sink,
            history=sink,
            blobs=blobs if blobs is not None else MemoryBlobs(),
            http=session,
            secret=secret,
            clock=clock,
            logger=logging.getLogger(f"connectors.{instance}"),
            public_url=public_url,
            state=state if state is not None else MemoryState(),
        )


@asynccontextmanager
async def served(connector: Connector, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Serve the connector's routes on a free loopback port, mounted as the hub mounts them.

    Yields the base URL; routes are at ``{url}/channels/{connector.name}{route.path}`` and at
    their aliases.
    """
    app = web.Application()
    for route in connector.routes():
        app.router.add_route(route.method, f"/channels/{connector.name}{route.path}", route.handler)
        if route.alias:
            app.router.add_route(route.method, route.alias, route.handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    server = site._server
    if server is None:  # not an assert: python -O must not turn this into an AttributeError
        raise RuntimeError("the test server did not start")
    port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    try:
        yield f"http://{host}:{port}"
    finally:
        await connector.stop()
        await runner.cleanup()


def load_payload(anchor: str | Path, name: str) -> Any:
    """Read a recorded payload next to ``anchor`` (pass ``__file__``): JSON parsed, else bytes."""
    path = Path(anchor).parent / "payloads" / name
    data = path.read_bytes()
    if path.suffix == ".json":
        return json.loads(data)
    return data
