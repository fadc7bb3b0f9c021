"""The conformance kit itself: a correct probe connector passes every check, and each defect a
connector can have is caught by the check meant for it, with a message that names it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from typing import Literal

import msgspec
import pytest
from aiohttp import web

from connectors.base import (
    Connector,
    ConnectorContext,
    ConnectorSettings,
    Route,
    SendError,
)
from connectors.testing import (
    ConformanceError,
    ConnectorConformance,
    Harness,
    Hostile,
    check_connector_class,
)
from hub.envelope import Delivery, DeliveryStatus, Direction, Envelope, Identity, Outbound

Defect = Literal[
    "none",
    "ack_unstored",
    "key_per_delivery",
    "stores_forgeries",
    "silent_send_failure",
    "stop_needs_start",
    "health_bool",
]


class ProbeSettings(ConnectorSettings):
    defect: Defect = "none"


class ProbeConnector(Connector):
    """A webhook connector whose ``defect`` setting breaks one rule of the contract."""

    channel = "probe"
    settings_model = ProbeSettings
    settings: ProbeSettings

    def __init__(self, name: str, settings: ProbeSettings) -> None:
        super().__init__(name, settings)
        self.ctx: ConnectorContext | None = None
        self.provider_down = False
        self.deliveries = 0

    def routes(self) -> Sequence[Route]:
        return (Route("POST", "/inbound", self._inbound),)

    async def start(self, ctx: ConnectorContext) -> None:
        self.ctx = ctx

    async def stop(self) -> None:
        if self.settings.defect == "stop_needs_start" and self.ctx is None:
            raise RuntimeError("not started")
        self.ctx = None

    def health(self) -> str | None:
        return False if self.settings.defect == "health_bool" else None  # type: ignore[return-value]

    async def _inbound(self, request: web.Request) -> web.StreamResponse:
        if self.ctx is None:
            raise web.HTTPServiceUnavailable()
        document = msgspec.json.decode(await request.read())
        genuine = request.headers.get("X-Signature") == "good"
        if not genuine and self.settings.defect != "stores_forgeries":
            raise web.HTTPForbidden(text="bad signature")
        self.deliveries += 1
        key = document["id"]
        if self.settings.defect == "key_per_delivery":
            key = f"{key}:{self.deliveries}"
        envelope = Envelope(
            channel="probe",
            inbox=self.name,
            direction=Direction.INBOUND,
            idempotency_key=key,
            sender=Identity(kind="probe", address="someone"),
            received_at=self.ctx.clock(),
            text=document["text"],
        )
        try:
            await self.ctx.sink.ingest(envelope)
        except Exception:
            if self.settings.defect != "ack_unstored":
                raise web.HTTPServiceUnavailable(text="not stored") from None
        if not genuine:
            raise web.HTTPForbidden(text="bad signature")
        return web.json_response({"ok": True})

    async def send(self, outbound: Outbound) -> Delivery:
        if self.provider_down:
            if self.settings.defect == "silent_send_failure":
                return Delivery(status=DeliveryStatus.FAILED)
            raise SendError("the provider answered 500", code="http_500")
        return Delivery(status=DeliveryStatus.SENT, provider_id=outbound.message_id)


async def _post(harness: Harness, key: str, signature: str) -> int:
    url = f"{harness.url}/channels/probe/inbound"
    body = {"id": key, "text": f"sample {key}"}
    async with harness.http.post(url, json=body, headers={"X-Signature": signature}) as answer:
        return answer.status


class TestProbeConformance(ConnectorConformance):
    """The probe without defects: every check passes."""

    connector_class = ProbeConnector
    instance = "probe"
    defect: Defect = "none"
    settle_timeout = 1.0  # the probe stores at once or never: no need to wait long

    def settings(self) -> ConnectorSettings:
        return ProbeSettings(defect=self.defect)

    async def deliver(self, harness: Harness, key: str) -> bool:
        return await _post(harness, key, "good") == 200

    def hostile(self) -> list[Hostile]:
        return [Hostile("a forged signature", lambda h: _post(h, "forged", "bad"))]

    def recipient(self) -> Identity:
        return Identity(kind="probe", address="someone")

    async def fail_next_send(self, harness: Harness, outbound: Outbound) -> Outbound:
        assert isinstance(harness.connector, ProbeConnector)
        harness.connector.provider_down = True
        return outbound


def _probe(defect: Defect) -> TestProbeConformance:
    kind = type(f"Probe_{defect}", (TestProbeConformance,), {"__test__": False, "defect": defect})
    check = kind()
    assert isinstance(check, TestProbeConformance)
    return check


@pytest.mark.parametrize(
    ("defect", "check", "says"),
    [
        ("ack_unstored", "test_acknowledged_only_when_stored", "acknowledged a message the sink"),
        ("key_per_delivery", "test_redelivery_creates_nothing", "after the redelivery"),
        ("stores_forgeries", "test_hostile_requests_store_nothing", "a forged signature: stored"),
        ("silent_send_failure", "test_send_raises_on_provider_failure", "raise SendError"),
        ("stop_needs_start", "test_stop_is_idempotent", r"stop\(\) without start\(\) raised"),
        ("health_bool", "test_health_reports", "must be None or a reason"),
    ],
)
def test_each_defect_is_caught(defect: Defect, check: str, says: str) -> None:
    with pytest.raises(ConformanceError, match=says):
        getattr(_probe(defect), check)()


def test_a_test_class_without_its_hooks_is_refused_when_defined() -> None:
    """pytest would pass over an abstract class in silence and run no check at all; the kit
    names the hooks that are missing instead. An intermediate base (``__test__ = False``) may
    leave them to its subclasses."""
    with pytest.raises(TypeError, match="must define fail_next_send, hostile"):
        type(
            "TestHalfDone",
            (ConnectorConformance,),
            {
                "connector_class": ProbeConnector,
                "settings": TestProbeConformance.settings,
                "deliver": TestProbeConformance.deliver,
                "recipient": TestProbeConformance.recipient,
            },
        )
    base = type("SharedBase", (ConnectorConformance,), {"__test__": False})
    with pytest.raises(TypeError, match="abstract"):
        base()


def test_base_class_is_not_collected_but_subclasses_are() -> None:
    assert ConnectorConformance.__test__ is False
    assert TestProbeConformance.__test__ is True
    assert _probe("none").__test__ is False  # an explicit __test__ = False is kept


def test_shape_checks_survive_python_dash_O() -> None:
    """``python -O`` strips assert statements; the shape checks raise explicitly."""
    program = (
        "from connectors.testing import ConformanceError, check_connector_class\n"
        "try:\n"
        "    check_connector_class(object)\n"
        "except ConformanceError as exc:\n"
        "    print('refused:', exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-O", "-c", program], capture_output=True, text=True, check=True
    )
    assert result.stdout.startswith("refused: <class 'object'> must subclass Connector")


def test_shape_check_names_what_is_missing() -> None:
    class Half(Connector):
        channel = "half"

        async def send(self, outbound: Outbound) -> Delivery:
            raise SendError("no")

    with pytest.raises(ConformanceError, match="Half must implement start, stop"):
        check_connector_class(Half)
    with pytest.raises(ConformanceError, match="no entry point 'nonesuch'"):
        check_connector_class(ProbeConnector, type_name="nonesuch")
