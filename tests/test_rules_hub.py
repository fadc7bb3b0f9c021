"""Rules inside the running hub: routing, instructions, auto-reply, hot reload, the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import select

from hub.cli import serve
from hub.keys import PIPELINE, RULES_WATCHER
from hub.store.schema import conversations, messages, rule_revisions
from tests.conftest import AGENT_PASSWORD, make_settings
from tests.helpers import Clock, agent_client, chat_client, login, running_hub

ROOT = Path(__file__).resolve().parent.parent

RULES = """version: 1
defaults: {queue: general}
templates:
  closed: "We are closed right now and answer tomorrow from 8:00."
rules:
  - name: complaint
    when: contains_any(message.text, ["reklamation", "beschwerde"])
    route: {queue: billing, priority: high}
    instructions: ["Apologize first."]
    tags: [complaint]
  - name: closed
    when: not business_hours("never-open")
    auto_reply: closed
"""


def rules_settings(url: str, tmp_path: Path, text: str = RULES, **extra: object):
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    return make_settings(
        url,
        tmp_path,
        rules={"path": str(path), "poll_interval": "100ms"},
        business_hours={"never-open": {"weekly": {}}},
        **extra,
    ), path


async def _conversation(hub, conversation_id: str) -> dict:
    async with hub.store.engine.connect() as connection:
        row = (
            await connection.execute(
                select(conversations).where(conversations.c.id == conversation_id)
            )
        ).one()
    return dict(row._mapping)


async def test_rules_route_instruct_and_auto_reply_once(store_url: str, tmp_path: Path) -> None:
    settings, _ = rules_settings(store_url, tmp_path)
    async with running_hub(settings) as hub:
        token = await login(hub, "alice", AGENT_PASSWORD)
        async with agent_client(hub, token) as (agent, _), chat_client(hub) as (customer, _w):
            await customer.send(type="message", client_id="1", text="Das ist eine Reklamation!")
            await customer.expect("ack")
            auto = await customer.expect("message")
            assert auto["text"] == "We are closed right now and answer tomorrow from 8:00."
            offer = await agent.expect("offer")
            assert offer["queue"] == "billing" and offer["priority"] == "high"
            assert offer["instructions"] == ["Apologize first."]
            await agent.send(type="accept", conversation_id=offer["conversation_id"])
            conversation = (await agent.expect("conversation"))["conversation"]
            assert conversation["rules"] == ["complaint", "closed"]
            assert conversation["tags"] == ["complaint"]
            inbound, reply = conversation["messages"]
            assert inbound["text"].startswith("Das ist") and reply["direction"] == "outbound"
            # a second message in the same conversation gets no second auto-reply
            await customer.send(type="message", client_id="2", text="Hallo?")
            await customer.expect("ack", client_id="2")
            await customer.nothing("message", within=0.5)
        stored = await _conversation(hub, offer["conversation_id"])
        assert stored["queue"] == "billing"
        async with hub.store.engine.connect() as connection:
            fired = (
                (
                    await connection.execute(
                        select(messages.c.rules)
                        .where(messages.c.direction == "inbound")
                        .order_by(messages.c.created_at)
                    )
                )
                .scalars()
                .all()
            )
            revisions = (await connection.execute(select(rule_revisions.c.digest))).all()
        assert fired[0] == ["complaint", "closed"]
        assert stored["rules_digest"] == revisions[0].digest


async def test_hot_reload_swaps_valid_rules_and_keeps_old_on_error(
    sqlite_url: str, tmp_path: Path
) -> None:
    first = (
        "version: 1\ndefaults: {queue: general}\nrules:\n  - name: r\n    route: {queue: billing}\n"
    )
    settings, path = rules_settings(sqlite_url, tmp_path, first)

    async def route_of_new_visitor(hub) -> str:
        async with chat_client(hub) as (customer, _):
            await customer.send(type="message", client_id="x", text="hi")
            ack = await customer.expect("ack")
        async with hub.store.engine.connect() as connection:
            return (
                await connection.execute(
                    select(conversations.c.queue)
                    .join(messages, messages.c.conversation_id == conversations.c.id)
                    .where(messages.c.id == ack["id"])
                )
            ).scalar_one()

    async with running_hub(settings) as hub:
        watcher = hub.app[RULES_WATCHER]

        async def reloaded(text: str) -> None:
            attempts = watcher.attempts
            path.write_text(text)
            for _ in range(200):  # the watcher polls every 100 ms; give it up to 10 s
                await asyncio.sleep(0.05)
                if watcher.attempts > attempts:
                    return
            raise AssertionError("the rules file was not reloaded")

        assert await route_of_new_visitor(hub) == "billing"
        await reloaded(first.replace("billing", "general") + "    tags: [v2]\n")
        assert watcher.last_problems == []
        assert await route_of_new_visitor(hub) == "general"
        await reloaded(first.replace("route: {queue: billing}", "when: channel ==\n"))
        assert watcher.last_problems[0].startswith(f"{path}:5:")
        assert await route_of_new_visitor(hub) == "general"  # the broken file was rejected
        await reloaded(first.replace("billing", "nowhere"))  # unknown queue: also rejected
        assert "unknown queue 'nowhere'" in watcher.last_problems[0]
        assert await route_of_new_visitor(hub) == "general"
        token = await login(hub, "alice", AGENT_PASSWORD)
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"{hub.url}/api/rules", headers={"Authorization": f"Bearer {token}"}
            ) as response,
        ):
            status = await response.json()
        assert status["problems"] == watcher.last_problems and status["rules"] == 1
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"{hub.url}/api/rules/revisions/{status['revision']}",
                headers={"Authorization": f"Bearer {token}"},
            ) as response,
        ):
            revision = await response.json()
        assert "tags: [v2]" in revision["text"]
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"{hub.url}/api/rules/revisions/{'0' * 64}",
                headers={"Authorization": f"Bearer {token}"},
            ) as response,
        ):
            assert response.status == 404
        async with hub.store.engine.connect() as connection:
            count = len((await connection.execute(select(rule_revisions.c.digest))).all())
        assert count == 2


def _cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_rules_check_cli(tmp_path: Path) -> None:
    good = _cli("rules", "check", "--config", "config/hub.yaml")
    assert good.returncode == 0 and "rules ok" in good.stdout
    broken = tmp_path / "rules.yaml"
    broken.write_text(
        RULES.replace('"beschwerde"])', '"beschwerde"]) and nope.x').replace("billing", "nowhere")
    )
    result = _cli("rules", "check", str(broken), "--config", "config/hub.yaml")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert f"{broken}:8:20: rules.0.route.queue: unknown queue 'nowhere'" in lines
    assert any(
        line.startswith(f"{broken}:7:") and "unknown name 'nope.x'" in line for line in lines
    ), lines
    assert any("unknown business hours 'never-open'" in line for line in lines), lines


def test_rules_test_cli_with_json_and_eml(tmp_path: Path) -> None:
    sample = {
        "channel": "email",
        "message": {"text": "Ich habe eine Reklamation"},
        "customer": {"known": True, "tier": "A"},
    }
    result = _cli(
        "rules",
        "test",
        "--config",
        "config/hub.yaml",
        "--message",
        "-",
        "--now",
        "2026-11-26T10:00:00+01:00",
        stdin=json.dumps(sample),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["decision"]["queue"] == "premium"
    assert report["decision"]["rules"] == ["vip-desk", "complaint"]
    assert [entry["result"] for entry in report["trace"]] == [
        "matched",
        "not matched",
        "matched",
        "not matched",
    ]
    eml = tmp_path / "mail.eml"
    eml.write_bytes(
        b"From: Ann <ann@example.com>\r\nTo: support@shop.example\r\n"
        b"Subject: Beschwerde\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        b"Die Ware ist kaputt, das ist eine Reklamation.\r\n"
    )
    result = _cli(
        "rules",
        "test",
        "--config",
        "config/hub.yaml",
        "--eml",
        str(eml),
        "--now",
        "2026-11-28T10:00:00+01:00",
    )  # a Saturday: after hours
    report = json.loads(result.stdout)
    assert report["decision"]["queue"] == "complaints"
    assert report["decision"]["auto_reply"].startswith("Thanks for your message")
    bad = _cli("rules", "test", "--message", "-", stdin='{"channel": "x", "evil": 1}')
    assert bad.returncode == 1 and "evil" in bad.stderr


@pytest.mark.parametrize("config", ["config/hub.yaml"])
def test_config_check_also_checks_rules(tmp_path: Path, config: str) -> None:
    text = (ROOT / config).read_text().replace("config/rules.yaml", str(tmp_path / "r.yaml"))
    (tmp_path / "r.yaml").write_text("version: 2\n")
    (tmp_path / "hub.yaml").write_text(text)
    result = _cli("config", "check", str(tmp_path / "hub.yaml"))
    assert result.returncode == 1
    assert result.stderr.startswith(f"{tmp_path / 'r.yaml'}:1:10: version: Input should be 1")


async def test_serve_freezes_what_startup_built_once_the_rules_are_loaded(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``gc.freeze`` belongs to the serving process, after the app started (rules loaded), not
    to importing or loading the rules."""
    settings, _ = rules_settings(sqlite_url, tmp_path)
    app = serve.serving_app(settings)
    started_when_frozen: list[bool] = []

    class Collector:
        @staticmethod
        def freeze() -> None:
            started_when_frozen.append(PIPELINE in app)

    monkeypatch.setattr(serve, "gc", Collector)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        assert started_when_frozen == [True]
    finally:
        await runner.cleanup()


async def test_first_response_sla_is_measured(sqlite_url: str, tmp_path: Path) -> None:
    text = "version: 1\nrules:\n  - name: fast\n    route: {queue: billing, sla: 1s}\n"
    settings, _ = rules_settings(sqlite_url, tmp_path, text)
    clock = Clock()
    async with running_hub(settings, clock=clock) as hub:
        token = await login(hub, "alice", AGENT_PASSWORD)
        async with agent_client(hub, token) as (agent, _), chat_client(hub) as (c1, _w):
            await c1.send(type="message", client_id="1", text="quick please")
            await c1.expect("ack")
            conversation_id = (await agent.expect("offer"))["conversation_id"]
            await agent.send(type="accept", conversation_id=conversation_id)
            await agent.expect("conversation")
            clock.advance(1.2)  # too slow for the 1 s SLA
            for client_id in ("r1", "r2"):  # only the first reply counts
                await agent.send(
                    type="reply", conversation_id=conversation_id, client_id=client_id, text="here"
                )
                await agent.expect("reply_ack", client_id=client_id)
        async with aiohttp.ClientSession() as session, session.get(f"{hub.url}/metrics") as r:
            metrics = await r.text()
        assert 'channelhub_sla_breaches_total{queue="billing"} 1.0' in metrics
        assert 'channelhub_first_response_seconds_count{queue="billing"} 1.0' in metrics
        assert 'channelhub_queue_wait_seconds_count{queue="billing"} 1.0' in metrics


async def test_rules_can_ask_for_a_specific_agent(sqlite_url: str, tmp_path: Path) -> None:
    text = (
        "version: 1\nrules:\n  - name: key-account\n"
        "    when: contains_any(message.text, ['vertrag'])\n    route: {agent: bob}\n"
    )
    settings, _ = rules_settings(sqlite_url, tmp_path, text)
    async with running_hub(settings) as hub:
        alice = await login(hub, "alice", AGENT_PASSWORD)
        bob = await login(hub, "bob", AGENT_PASSWORD)
        async with (
            agent_client(hub, alice) as (a, _),
            agent_client(hub, bob) as (b, _),
            chat_client(hub) as (customer, _w),
        ):
            await customer.send(type="message", client_id="1", text="Frage zum Vertrag")
            await customer.expect("ack")
            offer = await b.expect("offer")  # alice has been idle longer, but the rule says bob
            await a.nothing("offer", within=0.3)
            assert offer["preview"] == "Frage zum Vertrag"


async def test_a_closed_queue_answers_with_its_closed_reply(
    sqlite_url: str, tmp_path: Path
) -> None:
    settings = make_settings(
        sqlite_url,
        tmp_path,
        business_hours={"never-open": {"weekly": {}}},
        queues=[
            {
                "name": "general",
                "business_hours": "never-open",
                "closed_reply": "We are closed; we answer tomorrow.",
            },
            {"name": "billing"},
        ],
    )
    async with running_hub(settings) as hub, chat_client(hub) as (customer, _w):
        await customer.send(type="message", client_id="1", text="hello")
        await customer.expect("ack")
        reply = await customer.expect("message")
        assert reply["text"] == "We are closed; we answer tomorrow."
        await customer.send(type="message", client_id="2", text="still there?")
        await customer.expect("ack", client_id="2")
        await customer.nothing("message", within=0.5)  # once per conversation
