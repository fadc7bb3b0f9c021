"""An external CRM over HTTP, against a loopback server: mapping, cache, timeouts, outages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from hub.customers.providers import HttpProvider, extract
from hub.envelope import Identity
from tests.conftest import AGENT_PASSWORD, make_settings
from tests.helpers import agent_client, chat_client, login, running_hub


class FakeCrm:
    """A CRM lookup endpoint whose behaviour each test sets."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.requests: list[tuple[str, str | None]] = []
        self.customers: dict[str, dict[str, Any]] = {}
        self.answer = asyncio.Event()  # a "slow" CRM answers once this is set

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(
            (request.query.get("address", ""), request.headers.get("Authorization"))
        )
        if self.mode == "slow":
            await self.answer.wait()
        if self.mode == "down":
            return web.Response(status=503)
        customer = self.customers.get(request.query.get("address", ""))
        if customer is None:
            return web.json_response({"error": "not found"}, status=404)
        return web.json_response(customer)


@pytest.fixture
async def crm() -> AsyncIterator[tuple[FakeCrm, str]]:
    fake = FakeCrm()
    app = web.Application()
    app.router.add_get("/lookup", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield fake, f"http://127.0.0.1:{port}/lookup?kind={{kind}}&address={{address}}"
    finally:
        await runner.cleanup()


FIELDS = {
    "tier": "segment",
    "lifetime_value": "revenue.total",
    "tags": "labels",
    "attributes": "extra",
    "overdue_invoices": "open_items",
}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_extract_maps_and_drops_wrong_types() -> None:
    document = {
        "segment": "A",
        "revenue": {"total": 1234.5},
        "labels": ["vip"],
        "extra": {"branch": "Nord"},
        "open_items": "three",
    }
    assert extract(document, FIELDS) == {
        "tier": "A",
        "lifetime_value": 1234.5,
        "tags": ["vip"],
        "attributes": {"branch": "Nord"},
    }
    assert extract([], FIELDS) == {}
    assert extract({"segment": True}, {"tier": "segment"}) == {}


async def test_lookup_caches_and_refreshes(crm: tuple[FakeCrm, str]) -> None:
    fake, url = crm
    fake.customers["ann@example.com"] = {"segment": "A", "revenue": {"total": 10}}
    clock = Clock()
    async with aiohttp.ClientSession() as session:
        provider = HttpProvider(
            url=url,
            headers={"Authorization": "Bearer s3cret"},
            fields=FIELDS,
            session=session,
            ttl=60,
            clock=clock,
        )
        ann = Identity(kind="email", address="ann@example.com")
        first = await provider.lookup(ann)
        assert first.values == {"tier": "A", "lifetime_value": 10} and not first.stale
        await provider.lookup(ann)
        assert provider.calls == 1  # cached
        clock.now += 61
        await provider.lookup(ann)
        assert provider.calls == 2
        nobody = await provider.lookup(Identity(kind="email", address="x@example.com"))
        assert nobody.values is None and not nobody.stale
        assert fake.requests[0] == ("ann@example.com", "Bearer s3cret")
        await provider.close()


async def test_slow_provider_never_blocks_and_fills_the_cache(crm: tuple[FakeCrm, str]) -> None:
    fake, url = crm
    fake.mode = "slow"
    fake.customers["ann@example.com"] = {"segment": "B"}
    async with aiohttp.ClientSession() as session:
        provider = HttpProvider(
            url=url, headers={}, fields=FIELDS, session=session, wait=0.05, timeout=2
        )
        ann = Identity(kind="email", address="ann@example.com")
        assert (await provider.lookup(ann)).stale  # the CRM has not answered within 50 ms
        [fetch] = provider._inflight.values()
        fake.answer.set()
        await fetch  # the fetch goes on in the background after the lookup gave up
        later = await provider.lookup(ann)
        assert later.values == {"tier": "B"} and not later.stale
        assert provider.calls == 1
        await provider.close()


async def test_outage_opens_the_circuit(crm: tuple[FakeCrm, str]) -> None:
    fake, url = crm
    fake.mode = "down"
    clock = Clock()
    async with aiohttp.ClientSession() as session:
        provider = HttpProvider(
            url=url,
            headers={},
            fields=FIELDS,
            session=session,
            failures_to_open=3,
            open_for=30,
            clock=clock,
        )
        ann = Identity(kind="email", address="ann@example.com")
        for _ in range(5):
            assert (await provider.lookup(ann)).stale
        assert provider.calls == 3  # open after three failures: nobody waits on it
        fake.mode = "ok"
        fake.customers["ann@example.com"] = {"segment": "C"}
        clock.now += 31
        assert (await provider.lookup(ann)).values == {"tier": "C"}
        await provider.close()


def _provider_settings(url: str) -> dict[str, Any]:
    return {
        "provider": {
            "url": url,
            "fields": FIELDS,
            "wait": "200ms",
            "timeout": "1s",
            "headers": {"Authorization": "Bearer ${CRM_TOKEN:-x}"},
        }
    }


async def test_rules_use_provider_data_and_route_when_it_is_down(
    crm: tuple[FakeCrm, str], sqlite_url: str, tmp_path: Path
) -> None:
    fake, url = crm
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "version: 1\nrules:\n"
        "  - name: vip\n    when: customer.tier == 'A'\n    route: {queue: billing}\n"
        "  - name: stale\n    when: customer.stale\n    instructions: [CRM unreachable]\n"
    )
    settings = make_settings(
        sqlite_url, tmp_path, rules={"path": str(rules)}, customers=_provider_settings(url)
    )
    async with running_hub(settings) as hub:
        token = await login(hub, "alice", AGENT_PASSWORD)
        async with agent_client(hub, token) as (agent, _), chat_client(hub) as (c1, hello):
            fake.customers[hello["visitor"]] = {"segment": "A"}
            await c1.send(type="message", client_id="1", text="hi")
            await c1.expect("ack")
            offer = await agent.expect("offer")
            assert offer["queue"] == "billing" and offer["instructions"] == []
        fake.mode = "down"
        async with agent_client(hub, token) as (agent, _), chat_client(hub) as (c2, _h):
            await c2.send(type="message", client_id="1", text="hi")
            await c2.expect("ack")  # stored although the CRM is down
            offer = await agent.expect("offer", where=lambda f: f["queue"] == "general")
            assert offer["instructions"] == ["CRM unreachable"]


async def test_console_context_keeps_what_the_crm_said(
    crm: tuple[FakeCrm, str], sqlite_url: str, tmp_path: Path
) -> None:
    fake, url = crm
    settings = make_settings(sqlite_url, tmp_path, customers=_provider_settings(url))
    async with running_hub(settings) as hub:
        token = await login(hub, "alice", AGENT_PASSWORD)
        async with agent_client(hub, token) as (agent, _), chat_client(hub) as (c1, hello):
            fake.customers[hello["visitor"]] = {"segment": "B", "extra": {"branch": "Nord"}}
            await c1.send(type="message", client_id="1", text="hi")
            await c1.expect("ack")
            offer = await agent.expect("offer")
        customer = offer["customer"]
        assert (customer["tier"], customer["tier_source"], customer["known"]) == ("B", "crm", True)
        assert customer["attributes"]["branch"] == "Nord"
        assert customer["crm_fetched_at"] is not None
