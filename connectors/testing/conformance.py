"""The conformance kit: a test base class that checks a connector's behaviour, not its shape.

See :class:`ConnectorConformance`, docs/connectors.md and ``examples/echo_connector``.
"""

from __future__ import annotations

import abc
import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import Any, ClassVar, TypeVar

from connectors.base import (
    Connector,
    ConnectorSettings,
    MemoryState,
    SendError,
    StateStore,
)
from connectors.testing.fakes import CollectingSink, MemoryBlobs, connector_context, served
from connectors.testing.harness import Harness, Hostile, where_tasks_wait
from connectors.testing.shape import ConformanceError, check_connector_class, check_routes, require
from hub.envelope import Delivery, Identity, Outbound

T = TypeVar("T")


class ConnectorConformance(abc.ABC):
    """Checks a connector's behaviour against the plugin contract; subclass it in your tests.

    pytest collects every subclass (whatever its name) and runs each ``test_*`` method; this base
    class itself is not collected (set ``__test__ = False`` on an intermediate base of yours).
    Each check runs its own event loop, so no asyncio plugin is needed; start the fakes your
    connector talks to in :meth:`environment`, which runs in that loop.

    Required: :attr:`connector_class`, :meth:`settings`, :meth:`deliver`, :meth:`hostile`,
    :meth:`recipient` and :meth:`fail_next_send`. A failed check raises
    :class:`ConformanceError` naming what the connector did.
    """

    __test__: ClassVar[bool] = False

    #: the connector class under test
    connector_class: ClassVar[type[Connector]]
    #: with a name, the class must be registered under it (group ``channelhub.connectors``)
    entry_point: ClassVar[str | None] = None
    #: the instance name (hub.yaml ``name``): routes are mounted at ``/channels/{instance}``
    instance: ClassVar[str] = "conformance"
    #: the ``public_url`` of the context, where a provider would reach the hub
    public_url: ClassVar[str] = "http://127.0.0.1:8080"
    #: seconds any one step (a delivery, a send, ``start``) may take before the check fails
    step_timeout: ClassVar[float] = 30.0
    #: seconds a connector that stores after acknowledging (a fax read after the webhook is
    #: answered) may take to hand an acknowledged message to the sink
    settle_timeout: ClassVar[float] = 30.0
    #: seconds one whole check may take, environment and cleanup included
    check_timeout: ClassVar[float] = 180.0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__test__" not in cls.__dict__:
            cls.__test__ = True
        # pytest passes over an abstract class without a word: a test class that lacks a hook
        # would run no check at all, so it is refused when it is defined
        missing = sorted(
            name
            for name in ConnectorConformance.__abstractmethods__
            if getattr(getattr(cls, name, None), "__isabstractmethod__", False)
        )
        if missing and cls.__test__:
            raise TypeError(
                f"{cls.__name__} must define {', '.join(missing)} (or set __test__ = False on "
                "an intermediate base class of yours)"
            )

    # -- hooks a subclass provides ---------------------------------------------------------------

    @asynccontextmanager
    async def environment(self) -> AsyncIterator[None]:
        """Run whatever the connector talks to (a fake provider API on loopback) around one
        check; :meth:`settings` is called inside it. Nothing by default."""
        yield

    @abc.abstractmethod
    def settings(self) -> ConnectorSettings:
        """Settings for one instance, pointing at the fakes started in :meth:`environment`."""

    def make_connector(self) -> Connector:
        """A fresh, unstarted instance; by default ``connector_class(instance, settings())``."""
        return self.connector_class(self.instance, self.settings())

    async def started(self, harness: Harness) -> None:  # noqa: B027 - optional: nothing by default
        """Called once an instance is started and served, before the check uses it: tell a
        fake provider where the instance really listens. Nothing by default."""

    def clock(self) -> float:
        """The context's clock; real time by default."""
        return time.time()

    @abc.abstractmethod
    async def deliver(self, harness: Harness, key: str) -> bool:
        """Make the provider (or customer) send inbound sample ``key`` to the started instance,
        as it would on the wire, and return whether it was acknowledged (HTTP 2xx, SMTP 250, an
        ack frame). The same ``key`` again is a redelivery of the same message; another key is
        another message."""

    @abc.abstractmethod
    def hostile(self) -> Sequence[Hostile]:
        """Requests the connector must refuse without storing anything: a bad signature, an
        oversized body, a wrong content type, whatever your transport can be sent."""

    @abc.abstractmethod
    def recipient(self) -> Identity:
        """An address the connector can send a reply to."""

    def outbound(self, key: str) -> Outbound:
        """The reply :meth:`test_send_raises_on_provider_failure` sends; override for channels
        that need more than a recipient and text."""
        return Outbound(
            message_id=f"m-{key}",
            conversation_id="c-conformance",
            inbox=self.instance,
            idempotency_key=f"reply-{key}",
            recipient=self.recipient(),
            text="A reply from the conformance kit.",
            subject="Conformance",
            created_at=self.clock(),
        )

    @abc.abstractmethod
    async def fail_next_send(self, harness: Harness, outbound: Outbound) -> Outbound:
        """Arrange that the provider fails the next send (script the fake API to answer 500,
        stop it) and return the reply to send, usually ``outbound`` itself. A channel without a
        provider returns a reply it cannot deliver."""

    # -- the checks ------------------------------------------------------------------------------

    def test_class_shape(self) -> None:
        """The class follows the plugin contract and its routes are well formed."""
        check_connector_class(self.connector_class, type_name=self.entry_point)
        self._run(self._class_shape())

    def test_acknowledged_only_when_stored(self) -> None:
        """While the store is down nothing is acknowledged and nothing stored; the provider's
        redelivery afterwards is stored once and acknowledged."""
        self._run(self._acknowledged_only_when_stored())

    def test_redelivery_creates_nothing(self) -> None:
        """A redelivery, to the same instance or to a restarted one, stores nothing new."""
        self._run(self._redelivery_creates_nothing())

    def test_hostile_requests_store_nothing(self) -> None:
        """Every hostile request is refused and stores nothing."""
        self._run(self._hostile_requests_store_nothing())

    def test_send_raises_on_provider_failure(self) -> None:
        """A send returns a Delivery; a failed send raises SendError, never a silent result."""
        self._run(self._send_raises_on_provider_failure())

    def test_stop_is_idempotent(self) -> None:
        """``stop()`` works without ``start()`` and twice after it (the hub calls it at shutdown
        and again at cleanup)."""
        self._run(self._stop_is_idempotent())

    def test_health_reports(self) -> None:
        """``health()`` returns None or a reason, before start and while running."""
        self._run(self._health_reports())

    # -- how the checks run ----------------------------------------------------------------------

    def _run(self, check: Coroutine[Any, Any, None]) -> None:
        async def inside() -> None:
            async with self.environment():
                await check

        async def bounded() -> None:
            # a stop() or cleanup that never returns fails the check instead of hanging the run
            task = asyncio.ensure_future(inside())
            done, _ = await asyncio.wait({task}, timeout=self.check_timeout)
            if task in done:
                task.result()
                return
            stuck = where_tasks_wait()
            task.cancel()
            await asyncio.wait({task}, timeout=self.step_timeout)
            raise ConformanceError(
                f"{self._name}: the check did not finish within {self.check_timeout:g} s; "
                f"waiting: {stuck}"
            )

        asyncio.run(bounded())

    async def _within(self, what: str, step: Awaitable[T]) -> T:
        try:
            return await asyncio.wait_for(step, self.step_timeout)
        except TimeoutError:
            raise ConformanceError(
                f"{self._name}: {what} did not finish within {self.step_timeout:g} s"
            ) from None

    @property
    def _name(self) -> str:
        return self.connector_class.__qualname__

    @asynccontextmanager
    async def _running(
        self,
        sink: CollectingSink,
        state: StateStore | None = None,
        blobs: MemoryBlobs | None = None,
    ) -> AsyncIterator[Harness]:
        connector = self.make_connector()
        async with (
            connector_context(
                self.instance,
                sink=sink,
                clock=self.clock,
                public_url=self.public_url,
                state=state,
                blobs=blobs,
            ) as ctx,
            served(connector) as url,
        ):
            await self._within("start()", connector.start(ctx))
            harness = Harness(connector=connector, sink=sink, ctx=ctx, url=url)
            await self._within("started()", self.started(harness))
            yield harness

    async def _deliver(self, harness: Harness, key: str) -> bool:
        acknowledged = await self._within(f"delivering sample {key!r}", self.deliver(harness, key))
        require(
            isinstance(acknowledged, bool),
            f"{type(self).__name__}.deliver() must return True or False, not {acknowledged!r}",
        )
        return acknowledged

    def _stored(self, harness: Harness, expected: int, after: str) -> None:
        count = len(harness.sink.envelopes)
        require(
            count == expected,
            f"{self._name}: {after}, {count} message(s) are stored; expected {expected}",
        )

    async def _settled(self, harness: Harness, expected: int, after: str) -> None:
        """Like :meth:`_stored`, for a connector that stores after it acknowledges: wait up
        to ``settle_timeout`` for ``expected`` messages, then require exactly that many."""
        deadline = asyncio.get_running_loop().time() + self.settle_timeout
        while len(harness.sink.envelopes) < expected:
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.02)
        self._stored(harness, expected, after)

    async def _class_shape(self) -> None:
        connector = self.make_connector()
        require(
            connector.name == self.instance,
            f"{self._name}(name, settings) must keep the instance name as `name`",
        )
        check_routes(connector)

    async def _acknowledged_only_when_stored(self) -> None:
        sink = CollectingSink()
        state, blobs = MemoryState(), MemoryBlobs()
        async with self._running(sink, state, blobs) as harness:
            sink.down = RuntimeError("conformance: the store is down")
            acknowledged = False
            try:
                acknowledged = await self._deliver(harness, "unstored")
                self._stored(harness, 0, "after a delivery the sink refused")
            finally:
                if not acknowledged:
                    sink.down = None
            if not acknowledged:
                require(
                    await self._deliver(harness, "unstored"),
                    f"{self._name} did not acknowledge the redelivery once the store was back",
                )
                await self._settled(harness, 1, "after the redelivery")
                return
        # acknowledged while the sink was down: allowed only for a connector that kept the
        # message durably itself (its state and blobs) and hands it over later, also after a
        # restart that happens while the store is still down
        sink.down = None
        async with self._running(sink, state, blobs) as harness:
            await self._settled(
                harness,
                1,
                "after a restart: it acknowledged a message the sink failed to store and never "
                "handed it over, so it is lost (acknowledge only after ingest returns, or keep "
                "it durably and hand it over later)",
            )

    async def _redelivery_creates_nothing(self) -> None:
        sink = CollectingSink()
        state, blobs = MemoryState(), MemoryBlobs()
        async with self._running(sink, state, blobs) as harness:
            for attempt in ("delivery", "redelivery"):
                require(
                    await self._deliver(harness, "once"),
                    f"{self._name} did not acknowledge the {attempt} of sample 'once'",
                )
                await self._settled(harness, 1, f"after the {attempt} of one message")
        async with self._running(sink, state, blobs) as harness:
            require(
                await self._deliver(harness, "once"),
                f"{self._name} did not acknowledge a redelivery after a restart",
            )
            await self._settled(harness, 1, "after a redelivery to a restarted instance")
            require(
                await self._deliver(harness, "another"),
                f"{self._name} did not acknowledge sample 'another'",
            )
            await self._settled(harness, 2, "after a second, different message")
        keys = {envelope.idempotency_key for envelope in sink.envelopes}
        require(
            len(keys) == 2,
            f"{self._name} gave two different messages the same idempotency_key {keys}",
        )

    async def _hostile_requests_store_nothing(self) -> None:
        cases = list(self.hostile())
        require(
            bool(cases),
            f"{type(self).__name__}.hostile() lists no request: name at least the bad "
            "signature, oversized and wrong-type requests your transport can be sent",
        )
        sink = CollectingSink()
        failures: list[str] = []
        async with self._running(sink) as harness:
            for case in cases:
                status = await self._within(f"hostile request {case.name!r}", case.send(harness))
                if status not in case.refused:
                    failures.append(f"{case.name}: answered {status}")
                if sink.envelopes:
                    failures.append(f"{case.name}: stored {len(sink.envelopes)} message(s)")
                    sink.envelopes.clear()
        require(
            not failures,
            f"{self._name} did not refuse hostile requests: " + "; ".join(failures),
        )

    async def _send_raises_on_provider_failure(self) -> None:
        async with self._running(CollectingSink()) as harness:
            connector = harness.connector
            delivery = await self._within("send()", connector.send(self.outbound("sent")))
            require(
                isinstance(delivery, Delivery),
                f"{self._name}.send() must return a Delivery, not {delivery!r}",
            )
            failing = await self.fail_next_send(harness, self.outbound("failing"))
            try:
                result = await self._within("a failing send()", connector.send(failing))
            except SendError as exc:
                require(
                    isinstance(exc.retryable, bool) and bool(str(exc)),
                    f"{self._name}: a SendError needs a message and a bool `retryable`",
                )
                return
            raise ConformanceError(
                f"{self._name}.send() returned {result!r} although the provider failed: raise "
                "SendError(message, retryable=...) so the outbox retries or tells the agent"
            )

    async def _stop(self, connector: Connector, attempt: str) -> None:
        try:
            await self._within(attempt, connector.stop())
        except ConformanceError:
            raise
        except Exception as exc:
            raise ConformanceError(
                f"{self._name}: {attempt} raised {exc!r}; the hub calls stop() at shutdown and "
                "again at cleanup, also for an instance whose start() failed"
            ) from exc

    async def _stop_is_idempotent(self) -> None:
        unstarted = self.make_connector()
        for attempt in ("stop() without start()", "a second stop() without start()"):
            await self._stop(unstarted, attempt)
        async with self._running(CollectingSink()) as harness:
            for attempt in ("stop()", "a second stop()"):
                await self._stop(harness.connector, attempt)
        # served() has stopped it a third time on the way out

    async def _health_reports(self) -> None:
        def check(connector: Connector, when: str) -> None:
            health = connector.health()
            require(
                health is None or (isinstance(health, str) and bool(health)),
                f"{self._name}.health() {when} must be None or a reason, not {health!r}",
            )

        check(self.make_connector(), "before start()")
        async with self._running(CollectingSink()) as harness:
            check(harness.connector, "while running")
