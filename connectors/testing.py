"""Public helpers for testing a connector, the built-in ones and yours alike.

Typical use in a plugin's test suite::

    from connectors.testing import CollectingSink, check_connector_class, connector_context

    def test_conformance():
        check_connector_class(MyConnector, type_name="mychannel")

    async def test_inbound():
        sink = CollectingSink()
        async with connector_context("my-inbox", sink=sink) as ctx, served(connector) as url:
            await connector.start(ctx)
            ...  # POST a recorded payload to f"{url}/channels/my-inbox/inbound"
            assert sink.envelopes[0].text == "hello"

Nothing here imports the hub's runtime; the fakes behave like the hub where it matters: ingest is
idempotent per key, history is per thread, blobs are content-addressed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from connectors.base import (
    ENTRY_POINT_GROUP,
    Accepted,
    Capabilities,
    Connector,
    ConnectorContext,
    ConnectorSettings,
    HistoryItem,
    MemoryState,
    Route,
    StateStore,
)
from hub.envelope import Attachment, Delivery, Envelope, Identity, Outbound


class CollectingSink:
    """A :class:`~connectors.base.Sink` and history source that keeps envelopes in memory."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self._by_key: dict[str, Accepted] = {}
        self._threads: dict[tuple[str, str], list[HistoryItem]] = {}
        self.fail_next: Exception | None = None
        self.duplicates = 0  # redeliveries answered with duplicate=True
        self.redeliveries: list[tuple[str, str, str]] = []  # (channel, inbox, key) answered by
        # the connector itself
        self.presence: list[tuple[str, str, bool]] = []
        self.deliveries: list[tuple[str, str, Delivery]] = []
        self.opt_outs: dict[tuple[str, str, str], str] = {}  # (inbox, kind, address) -> keyword

    async def ingest(self, envelope: Envelope) -> Accepted:
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error
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
) -> AsyncIterator[ConnectorContext]:
    """A :class:`ConnectorContext` like the hub's, with a real shared HTTP session.

    Pass one ``state`` to two contexts to play a restart of a connector that keeps state."""
    sink = sink or CollectingSink()
    async with aiohttp.ClientSession() as session:
        yield ConnectorContext(
            instance=instance,
            sink=sink,
            history=sink,
            blobs=MemoryBlobs(),
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
    assert server is not None
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


def check_connector_class(cls: type[Connector], *, type_name: str | None = None) -> None:
    """Assert that a connector class follows the plugin contract (see docs/connectors.md).

    With ``type_name``, also check that it is registered under that entry-point name.
    """
    assert isinstance(cls, type) and issubclass(cls, Connector), "must subclass Connector"
    assert isinstance(getattr(cls, "channel", None), str) and cls.channel, "needs a channel name"
    assert issubclass(cls.settings_model, ConnectorSettings), (
        "settings_model must derive from ConnectorSettings (unknown keys are errors)"
    )
    assert isinstance(cls.capabilities, Capabilities), "capabilities must be a Capabilities"
    assert not getattr(cls.send, "__isabstractmethod__", False), "send() must be implemented"
    if type_name is not None:
        found = [e for e in entry_points(group=ENTRY_POINT_GROUP) if e.name == type_name]
        assert found, f"no entry point {type_name!r} in group {ENTRY_POINT_GROUP}"
        assert found[0].load() is cls, f"entry point {type_name!r} loads another class"


def check_routes(connector: Connector) -> list[Route]:
    """Assert that a connector instance's routes are well formed; return them."""
    routes = list(connector.routes())
    for route in routes:
        assert isinstance(route, Route), "routes() must return Route objects"
        assert route.path.startswith("/"), f"route path {route.path!r} must start with /"
        assert route.method in {"GET", "POST", "PUT", "DELETE", "PATCH"}, route.method
        assert route.alias is None or route.alias.startswith("/"), route.alias
    return routes
