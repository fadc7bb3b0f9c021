"""Agents' and visitors' sockets on any node (issue 17): the owner's presence table (pure,
table-driven), then hubs on PostgreSQL and a private redis-server: an agent on a standby is
offered work, accepts and replies, and the visitor on the other node gets the reply; an agent
moves to another node and resumes from its snapshot; a node killed with ``kill -9`` loses its
agents' offers to the others."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from hub.bus.node_events import CALLS, AgentCall, CallAnswer, node_topic
from hub.cli.config import load_config
from hub.cluster.desk import OwnerDesk
from hub.cluster.presence import Change, LocalPresence, PresenceTable
from hub.cluster.role import Role
from hub.keys import BUS, DISPATCH, RELAY, ROLE, RULES_HOLDER, TERM
from hub.lifecycle import _revalue
from tests.conftest import _HASH, AGENT_PASSWORD, make_settings
from tests.dovecot import free_port
from tests.helpers import RunningHub, agent_client, chat_client, client_id, login, running_hub
from tests.redis_server import RedisServer, require_redis_server

ROOT = Path(__file__).resolve().parent.parent

# -- the presence table ------------------------------------------------------------------------


def test_a_node_counts_once_and_an_older_view_changes_nothing() -> None:
    table = PresenceTable("a")
    assert table.apply("b", "alice", True, 1, 0.0) == [Change("alice", joined=True)]
    assert table.apply("b", "alice", True, 1, 0.0) == []  # the same call again
    assert table.apply("c", "alice", True, 1, 0.0) == [Change("alice", joined=True)]
    assert table.holders("alice") == {"b", "c"}
    # a beat taken before the socket opened arrives after the call: ignored
    assert table.beat("b", set(), {"alice": 0}, 0.5) == []
    assert table.holders("alice") == {"b", "c"}
    # the socket closed, the call was lost; the next beat says so
    assert table.beat("b", set(), {"alice": 2}, 1.0) == [Change("alice", joined=False)]
    assert table.holders("alice") == {"c"}


@pytest.mark.parametrize(
    ("now", "dead", "changes"),
    [
        (2.9, [], []),
        (3.0, ["c"], [Change("bob", joined=False)]),
    ],
)
def test_a_silent_node_expires_but_never_the_owners_own(
    now: float, dead: list[str], changes: list[Change]
) -> None:
    table = PresenceTable("a")
    table.apply("a", "alice", True, 1, 0.0)
    table.apply("c", "bob", True, 1, 0.0)
    assert table.expire(now, 3.0) == (dead, changes)
    assert table.holders("alice") == {"a"}


def test_local_presence_numbers_every_change() -> None:
    local = LocalPresence()
    assert local.opened("alice") == (True, 1)
    assert local.opened("alice") == (True, 2)
    assert local.closed("alice") == (True, 3)
    assert local.closed("alice") == (False, 4)
    assert local.present() == set()


# -- hubs on PostgreSQL and Redis ------------------------------------------------------------

CLUSTER = {  # a long lease: no test here is about a takeover, and a loaded machine stalls
    "lease_ttl": "9s",
    "lease_margin": "1s",
    "lease_poll": "0.2s",
    "node_beat": "200ms",
    "node_timeout": "1s",
    "call_timeout": "3s",
}


async def _until(condition: Any, what: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never: {what}")


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server on a free port."""
    require_redis_server()
    root = tmp_path / "redis"
    root.mkdir()
    server = RedisServer(root)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _no_self_restart(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hub whose term ends restarts its process: here that would be pytest's."""

    def refuse() -> None:
        raise AssertionError("an in-process hub lost its dispatch term")

    monkeypatch.setattr("hub.lifecycle.restart_process", refuse)


def _owner(hub: RunningHub) -> bool:
    return hub.app[ROLE].owner and hub.app[DISPATCH].backlog_loaded.is_set()


@pytest.mark.integration
async def test_agent_on_a_standby_serves_a_visitor_on_the_owner_and_moves_node(
    pg_url: str, redis: RedisServer, tmp_path: Path
) -> None:
    settings = make_settings(pg_url, tmp_path, bus={"url": redis.url}, cluster=CLUSTER)
    async with running_hub(settings) as owner:
        await _until(lambda: _owner(owner), "the first hub dispatches")
        async with running_hub(settings) as standby:
            assert standby.app[ROLE].name == "standby"
            token = await login(standby, "alice", AGENT_PASSWORD)
            async with agent_client(standby, token) as (agent, snapshot):
                assert snapshot["offers"] == [] and snapshot["presence"] == "available"
                async with chat_client(owner, name="Carla") as (customer, _welcome):
                    await customer.send(type="message", client_id="m1", text="Hello there")
                    await customer.expect("ack", client_id="m1")
                    offer = await agent.expect("offer")
                    assert offer["preview"] == "Hello there"
                    conversation_id = offer["conversation_id"]
                    await agent.send(type="accept", conversation_id=conversation_id)
                    opened = await agent.expect("conversation")
                    assert opened["conversation"]["assignee"] == "alice"
                    reply = client_id()
                    await agent.send(
                        type="reply", conversation_id=conversation_id, client_id=reply, text="Hi!"
                    )
                    ack = await agent.expect("reply_ack", client_id=reply)
                    assert ack["duplicate"] is False
                    live = await customer.expect("message")
                    assert live["text"] == "Hi!" and live["from"] == "agent"
                    await agent.expect("delivery", message_id=ack["message"]["id"])
                    # the customer writes again: the agent on the standby sees it live
                    await customer.send(type="message", client_id="m2", text="Thanks")
                    pushed = await agent.expect(
                        "message", where=lambda f: f["message"]["direction"] == "inbound"
                    )
                    assert pushed["message"]["text"] == "Thanks"
                    # the visitor opens a second window on the standby: a reply reaches both
                    # windows, whichever node's outbox sends it
                    async with chat_client(standby, token=_welcome["token"]) as (window, _):
                        await agent.send(
                            type="reply",
                            conversation_id=conversation_id,
                            client_id="r2",
                            text="Bye",
                        )
                        await agent.expect("reply_ack", client_id="r2")
                        assert (await window.expect("message"))["text"] == "Bye"
                        assert (await customer.expect("message"))["text"] == "Bye"
                    # a frame the owner cannot parse is answered as on one process
                    await agent.send(type="accept")
                    error = await agent.expect("error")
                    assert error["code"] == "bad_frame"

                    # the agent moves to the owner's node (a balancer without stickiness)
                    async with agent_client(owner, token) as (_moved, resumed):
                        assert [c["id"] for c in resumed["conversations"]] == [conversation_id]
                    # and back to the standby: the same state, no offer lost
                    async with agent_client(standby, token) as (_back, again):
                        assert [c["id"] for c in again["conversations"]] == [conversation_id]

            relay = standby.app[RELAY]
            sent = relay.metrics.cluster_messages.labels("call", "sent")._value.get()
            assert sent >= 5  # attach, accept, reply, the bad frame, attach again…


def _hub_yaml(pg_url: str, redis_url: str, root: Path, offer_timeout: str) -> Path:
    data = {
        "server": {"secret_key": "test-secret-key-0123456789abcdef"},
        "storage": {"url": pg_url, "blobs": str(root / "blobs")},
        "bus": {"url": redis_url},
        "cluster": CLUSTER,
        "channels": [
            {"name": "webchat", "type": "webchat", "settings": {"rate_per_second": 50}},
        ],
        "queues": [{"name": "general"}],
        "dispatch": {"offer_timeout": offer_timeout, "disconnect_grace": "60s"},
        "agents": [
            {"id": "alice", "name": "Alice", "password_hash": _HASH},
            {"id": "bob", "name": "Bob", "password_hash": _HASH},
        ],
    }
    path = root / "hub.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


async def _serve(config: Path, port: int) -> subprocess.Popen[bytes]:
    """A hub process on ``port``, once it answers as a standby (the loop keeps running: the
    in-process hub renews its lease meanwhile)."""
    log = open(config.parent / f"hub-{port}.log", "wb")  # noqa: SIM115 (the process keeps it)
    process = subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "serve", "--config", str(config), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    log.close()
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError((config.parent / f"hub-{port}.log").read_text())
            try:
                async with session.get(f"http://127.0.0.1:{port}/readyz") as answer:
                    if (await answer.json()).get("role") == "standby":
                        return process
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    process.kill()
    raise AssertionError("the hub did not become ready")


@pytest.mark.integration
async def test_a_killed_nodes_agents_lose_their_offers_to_the_others(
    pg_url: str, redis: RedisServer, tmp_path: Path
) -> None:
    # offers never time out here: only the dead node's expiry can move one on
    config = _hub_yaml(pg_url, redis.url, tmp_path, offer_timeout="600s")
    settings = load_config(str(config))  # the same file for both
    async with running_hub(settings) as owner:
        await _until(lambda: _owner(owner), "the in-process hub dispatches")
        port = free_port()
        node = await _serve(config, port)
        try:
            # only its addresses are used (login, sockets)
            doomed = RunningHub(
                owner.app, owner.runner, f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"
            )
            alice_token = await login(doomed, "alice", AGENT_PASSWORD)
            bob_token = await login(owner, "bob", AGENT_PASSWORD)
            async with (
                agent_client(owner, bob_token) as (bob, _),
                agent_client(doomed, alice_token) as (alice, _),
            ):
                await bob.send(type="presence", status="away")
                await bob.expect("presence")
                async with chat_client(owner) as (customer, _):
                    await customer.send(type="message", client_id="m1", text="Anyone?")
                    offer = await alice.expect("offer")
                    os.kill(node.pid, signal.SIGKILL)
                    await asyncio.to_thread(node.wait, 10)
                    await bob.send(type="presence", status="available")
                    await bob.expect("presence")
                    # a generous bound on a loaded machine: offers never time out here, so
                    # the move itself proves the dead node's expiry (as the metric says)
                    moved = await bob.expect("offer", timeout=30)
                    assert moved["conversation_id"] == offer["conversation_id"]
                    assert owner.app[RELAY].metrics.cluster_nodes_expired._value.get() == 1
        finally:
            if node.poll() is None:
                node.kill()
                node.wait(10)


@pytest.mark.integration
async def test_a_new_owner_learns_every_nodes_agents_and_offers_to_them(
    pg_url: str, redis: RedisServer, tmp_path: Path
) -> None:
    settings = make_settings(pg_url, tmp_path, bus={"url": redis.url}, cluster=CLUSTER)
    async with running_hub(settings) as first:
        await _until(lambda: _owner(first), "the first hub dispatches")
        async with running_hub(settings) as second, running_hub(settings) as third:
            alice = await login(second, "alice", AGENT_PASSWORD)
            bob = await login(third, "bob", AGENT_PASSWORD)
            async with (
                agent_client(second, alice) as (on_second, _),
                agent_client(third, bob) as (on_third, _),
            ):
                await first.runner.cleanup()  # a graceful stop gives the lease up
                await _until(lambda: _owner(second) or _owner(third), "a standby takes over")
                owner = second if _owner(second) else third
                desk = owner.app[TERM].desk
                assert isinstance(desk, OwnerDesk)
                await _until(
                    lambda: desk.table.holders("alice") and desk.table.holders("bob"),
                    "the new owner knows both agents",
                )
                readiness = await _readyz(owner)
                assert readiness["role"] == "dispatch owner"
                assert isinstance(readiness["bus_lag"], dict)  # per topic/group, once measured
                assert (await _readyz(third if owner is second else second))["role"] == "standby"
                async with chat_client(owner) as (customer, _):
                    await customer.send(type="message", client_id="m1", text="After the takeover")
                    await customer.expect("ack", client_id="m1")
                    offered = await _first_offer(on_second, on_third)
                    assert offered["preview"] == "After the takeover"


async def _readyz(hub: RunningHub) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(f"{hub.url}/readyz") as answer:
        assert answer.status == 200
        return dict(await answer.json())


async def _first_offer(*agents: Any) -> dict[str, Any]:
    waits = [asyncio.create_task(agent.expect("offer", timeout=10)) for agent in agents]
    done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    return dict(next(iter(done)).result())


RULES = "version: 1\ndefaults: {queue: general}\nrules:\n  - name: r\n    route: {queue: %s}\n"


@pytest.mark.integration
async def test_a_rules_revision_accepted_on_one_node_routes_on_every_node(
    pg_url: str, redis: RedisServer, tmp_path: Path
) -> None:
    watched, other = tmp_path / "watched.yaml", tmp_path / "other.yaml"
    watched.write_text(RULES % "general")
    other.write_text(RULES % "general")  # another machine's copy, not edited
    common = {"bus": {"url": redis.url}, "cluster": CLUSTER}
    first = make_settings(
        pg_url, tmp_path, rules={"path": str(watched), "poll_interval": "100ms"}, **common
    )
    second = make_settings(pg_url, tmp_path, rules={"path": str(other), "watch": False}, **common)
    async with running_hub(first) as one, running_hub(second) as two:
        before = two.app[RULES_HOLDER].current.digest
        assert (await _readyz(two))["rules"] == before
        watched.write_text(RULES % "billing")
        await _until(lambda: one.app[RULES_HOLDER].current.digest != before, "node one reloads")
        digest = one.app[RULES_HOLDER].current.digest
        await _until(lambda: two.app[RULES_HOLDER].current.digest == digest, "node two follows")
        assert (await _readyz(two))["rules"] == digest


class _Lease:
    def __init__(self, token: int | None) -> None:
        self.token = token


class _Customers:
    def __init__(self) -> None:
        self.recomputed = 0

    async def recompute(self) -> int:
        self.recomputed += 1
        return 0


@pytest.mark.parametrize(("token", "runs"), [(None, False), (7, True)])
async def test_scheduled_jobs_run_on_the_dispatch_owner_only(token: int | None, runs: bool) -> None:
    role = Role(_Lease(token))
    assert role.name == ("dispatch owner" if runs else "standby")
    customers = _Customers()
    task = asyncio.create_task(_revalue(customers, 0.01, role))  # type: ignore[arg-type]
    await asyncio.sleep(0.1)
    task.cancel()
    assert (customers.recomputed > 0) is runs
    assert Role().owner and Role().name == "single"


@pytest.mark.integration
async def test_calls_the_owner_cannot_act_on_are_refused_or_dropped(
    pg_url: str, redis: RedisServer, tmp_path: Path
) -> None:
    settings = make_settings(pg_url, tmp_path, bus={"url": redis.url}, cluster=CLUSTER)
    async with running_hub(settings) as owner:
        await _until(lambda: _owner(owner), "the hub dispatches")
        bus = owner.app[BUS]
        answers = bus.subscribe(node_topic("probe"))
        await answers.ready()
        later = time.time() + 30
        calls = [
            AgentCall(call_id="1", node="probe", agent="mallory", op="attach", deadline=later),
            AgentCall(call_id="2", node="probe", agent="alice", op="explode", deadline=later),
            AgentCall(call_id="3", node="probe", agent="alice", op="attach", deadline=1.0),
            AgentCall(
                call_id="4", node="probe", agent="alice", op="command", text="{", deadline=later
            ),
        ]
        for call in calls:
            await bus.publish(CALLS, call)
        got: dict[str, CallAnswer] = {}
        async with asyncio.timeout(10):
            async for received in answers:
                if isinstance(received.event, CallAnswer):
                    got[received.event.call_id] = received.event
                if "4" in got:
                    break
        answers.close()
        assert got["1"].failed and got["2"].failed
        assert "3" not in got  # its caller gave up long ago: not acted on
        assert not got["4"].failed and json.loads(got["4"].frames[0])["code"] == "bad_frame"
        dispatch = owner.app[DISPATCH]
        assert "mallory" not in dispatch.core.agents
        assert dispatch.core.agents["alice"].connections == 0  # the stale attach did nothing
