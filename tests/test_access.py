"""Sessions, roles and network defaults, through the real HTTP and websocket endpoints.

Each test reproduces a finding of the hostile audit (issue 14, items 12 to 14): sessions that
outlived logout, expiry and password changes; agents reading and merging any customer; login
guesses spread over addresses; unsafe defaults on a network.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr
from sqlalchemy import delete, select
from websockets.asyncio.client import connect

from connectors.webchat.parse import customer_signature
from hub.auth import hash_password
from hub.customers import csvimport
from hub.keys import CUSTOMERS
from hub.store.schema import events, sessions
from tests.conftest import AGENT_PASSWORD, make_settings
from tests.helpers import Frames, agent_client, chat_client, http_json, login, running_hub
from tests.test_customers import CUSTOMERS_CSV, ORDERS_CSV

ROOT = Path(__file__).resolve().parent.parent
_HASH = hash_password(AGENT_PASSWORD)


class Clock:
    """A wall clock the test moves forward."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _agent(agent_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": agent_id, "name": agent_id.title(), "password_hash": _HASH, **extra}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _ended(console: Frames, reason: str, timeout: float = 5.0) -> None:
    """The console is told its session ended, then the socket closes with 4401."""
    error = await console.expect("error", timeout=timeout, code="session_ended")
    assert error["reason"] == reason
    await console.socket.wait_closed()
    assert console.socket.close_code == 4401


async def _refused_on_the_socket(hub: Any, token: str, reason: str) -> None:
    async with connect(f"{hub.ws_url}/ws/agent") as socket:
        await socket.send(json.dumps({"type": "auth", "token": token}))
        error = json.loads(await socket.recv())
        assert (error["code"], error["reason"]) == ("auth_failed", reason)
        await socket.wait_closed()
        assert socket.close_code == 4401


# -- item 12: sessions end everywhere, at once --------------------------------------------------


async def test_logout_closes_the_open_console_and_kills_the_token(
    store_url: str, tmp_path: Path
) -> None:
    async with running_hub(make_settings(store_url, tmp_path)) as hub:
        token = await login(hub, "alice", AGENT_PASSWORD)
        other = await login(hub, "alice", AGENT_PASSWORD)  # another browser stays logged in
        async with agent_client(hub, token) as (console, _), agent_client(hub, other) as (kept, _):
            status, _ = await http_json("POST", f"{hub.url}/api/logout", headers=_bearer(token))
            assert status == 200
            await _ended(console, "logged_out")
            async with chat_client(hub) as (customer, _):
                await customer.send(type="message", client_id="1", text="anyone there?")
                await customer.expect("ack")
                await kept.expect("offer")
        assert (await http_json("GET", f"{hub.url}/api/me", headers=_bearer(token)))[0] == 401
        await _refused_on_the_socket(hub, token, "logged_out")


async def test_a_command_after_the_session_is_gone_is_refused(
    store_url: str, tmp_path: Path
) -> None:
    """Another hub process logged the session out: a frame within session_check_interval of
    the last confirmation still runs (no store read per frame), the first one after it is not
    applied, and the periodic re-check closes a silent console as well."""
    clock = Clock()
    settings = make_settings(store_url, tmp_path)
    async with running_hub(settings, clock=clock) as hub:
        token = await login(hub, "alice", AGENT_PASSWORD)
        silent = await login(hub, "alice", AGENT_PASSWORD)
        async with (
            agent_client(hub, token) as (console, _),
            agent_client(hub, silent) as (quiet, _),
        ):
            async with hub.store.engine.begin() as connection:
                await connection.execute(delete(sessions))
            await console.send(type="presence", status="busy")
            await console.expect("presence", status="busy")  # inside the bound: cached
            clock.now += settings.server.session_check_interval
            await console.send(type="presence", status="away")
            await _ended(console, "logged_out")
            assert not [f for f in console.backlog if f.get("status") == "away"]
            await _ended(quiet, "logged_out", timeout=15.0)


async def test_an_expired_session_refuses_the_next_frame_at_once(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Expiry is judged from the clock on every frame, not only by the periodic re-check."""
    clock = Clock()
    settings = make_settings(sqlite_url, tmp_path, server={"session_ttl": "1m"})
    async with running_hub(settings, clock=clock) as hub:
        token = await login(hub, "alice", AGENT_PASSWORD)
        async with agent_client(hub, token) as (console, _):
            await console.send(type="presence", status="busy")
            await console.expect("presence", status="busy")
            clock.now += 60
            await console.send(type="presence", status="away")
            await _ended(console, "expired", timeout=2.0)
            assert not [f for f in console.backlog if f.get("status") == "away"]


async def test_a_session_the_store_cannot_confirm_runs_nothing(
    sqlite_url: str, tmp_path: Path
) -> None:
    """With the database gone a frame is answered `unavailable` and not applied; a new socket
    is told so and closed with 1013 (try again later); all works again once it is back."""
    clock = Clock()
    settings = make_settings(sqlite_url, tmp_path)
    async with running_hub(settings, clock=clock) as hub:
        token = await login(hub, "alice", AGENT_PASSWORD)
        async with agent_client(hub, token) as (console, _):
            # past the last confirmation: the next frame must read the store
            clock.now += settings.server.session_check_interval
            await hub.store.engine.dispose()
            database = Path(sqlite_url.removeprefix("sqlite+aiosqlite:///"))
            database.rename(database.with_suffix(".gone"))
            database.mkdir()  # a directory where the database file was: unusable
            try:
                await console.send(type="presence", status="away")
                assert (await console.expect("error"))["code"] == "unavailable"
                async with connect(f"{hub.ws_url}/ws/agent") as socket:
                    await socket.send(json.dumps({"type": "auth", "token": token}))
                    assert json.loads(await socket.recv())["code"] == "unavailable"
                    await socket.wait_closed()
                    assert socket.close_code == 1013
            finally:
                database.rmdir()
                database.with_suffix(".gone").rename(database)
            assert not [f for f in console.backlog if f["type"] == "presence"]
            await console.send(type="presence", status="away")
            await console.expect("presence", status="away")


async def test_an_expired_session_closes_the_console(sqlite_url: str, tmp_path: Path) -> None:
    clock = Clock()
    settings = make_settings(sqlite_url, tmp_path, server={"session_ttl": "1m"})
    async with running_hub(settings, clock=clock) as hub:
        token = await login(hub, "alice", AGENT_PASSWORD)
        async with agent_client(hub, token) as (console, _):
            clock.now += 61
            await _ended(console, "expired", timeout=15.0)
        assert (await http_json("GET", f"{hub.url}/api/me", headers=_bearer(token)))[0] == 401


async def test_a_password_change_ends_older_sessions(store_url: str, tmp_path: Path) -> None:
    async with running_hub(make_settings(store_url, tmp_path)) as hub:
        token = await login(hub, "alice", AGENT_PASSWORD)
    changed = [_agent("alice", password_hash=hash_password("a brand new password"))]
    async with running_hub(make_settings(store_url, tmp_path, agents=changed)) as hub:
        assert (await http_json("GET", f"{hub.url}/api/me", headers=_bearer(token)))[0] == 401
        await _refused_on_the_socket(hub, token, "credentials_changed")
        fresh = await login(hub, "alice", "a brand new password")
        assert (await http_json("GET", f"{hub.url}/api/me", headers=_bearer(fresh)))[0] == 200


async def test_agents_log_themselves_out_everywhere_and_admins_anyone(
    sqlite_url: str, tmp_path: Path
) -> None:
    agents = [_agent("alice"), _agent("bob"), _agent("root", role="admin")]
    async with running_hub(make_settings(sqlite_url, tmp_path, agents=agents)) as hub:
        url = f"{hub.url}/api/sessions/revoke"
        alice, bob, root = [await login(hub, name, AGENT_PASSWORD) for name in agents_ids(agents)]
        async with agent_client(hub, bob) as (console, _):
            status, body = await http_json(
                "POST", url, headers=_bearer(alice), json={"agent": "bob"}
            )
            assert status == 403 and body["error"] == "forbidden"
            status, body = await http_json(
                "POST", url, headers=_bearer(root), json={"agent": "bob"}
            )
            assert (status, body) == (200, {"agent": "bob", "revoked": 1})
            await _ended(console, "revoked")
        status, body = await http_json("POST", url, headers=_bearer(alice), json={})
        assert (status, body) == (200, {"agent": "alice", "revoked": 1})
        assert (await http_json("GET", f"{hub.url}/api/me", headers=_bearer(alice)))[0] == 401
        status, _ = await http_json("POST", url, headers=_bearer(root), json={"agent": "nobody"})
        assert status == 404


def agents_ids(agents: list[dict[str, Any]]) -> list[str]:
    return [agent["id"] for agent in agents]


# -- item 13: roles ---------------------------------------------------------------------------


async def _audit(hub: Any, *kinds: str) -> list[tuple[str, str, str | None, str]]:
    async with hub.store.engine.connect() as connection:
        rows = (
            await connection.execute(
                select(events.c.kind, events.c.agent, events.c.data)
                .where(events.c.kind.in_(kinds))
                .order_by(events.c.seq)
            )
        ).all()
    return [(row.kind, row.agent, row.data["customer_id"], row.data["endpoint"]) for row in rows]


async def test_agents_read_only_the_customers_of_their_work_and_every_view_is_audited(
    store_url: str, tmp_path: Path
) -> None:
    agents = [
        _agent("alice", queues=["general"]),
        _agent("bob", queues=["billing"]),
        _agent("carol", role="supervisor"),
    ]
    channels = [
        {"name": "webchat", "type": "webchat", "settings": {"identity_secret": "website-key-123"}}
    ]
    settings = make_settings(store_url, tmp_path, agents=agents, channels=channels)
    async with running_hub(settings) as hub:
        service = hub.app[CUSTOMERS]
        for text in (CUSTOMERS_CSV, ORDERS_CSV):
            await service.import_file(csvimport.parse(text.encode(), "x.csv"))
        anna, bert = await service.find("K1"), await service.find("K2")
        alice, bob, carol = [await login(hub, a, AGENT_PASSWORD) for a in agents_ids(agents)]

        def read(token: str, key: str) -> Any:
            return http_json("GET", f"{hub.url}/api/customers/{key}", headers=_bearer(token))

        expires = int(time.time()) + 600
        signature = customer_signature(b"website-key-123", "K1", expires)
        async with connect(f"{hub.ws_url}/ws/chat") as chat:  # Anna waits in "general"
            hello = {"type": "hello", "customer": "K1", "expires": expires, "signature": signature}
            await chat.send(json.dumps(hello))
            await chat.recv()
            await chat.send(json.dumps({"type": "message", "client_id": "1", "text": "Hallo"}))
            assert json.loads(await chat.recv())["type"] == "ack"

            status, body = await read(alice, "K1")  # waits in a queue alice serves
            assert status == 200 and body["customer_number"] == "K1"
            for key in ("K1", "anna@example.com", "nobody@example.com"):
                status, body = await read(bob, key)  # no work of bob's; absent looks the same
                assert status == 403 and body["error"] == "forbidden", key
            assert (await read(alice, "K2"))[0] == 403
            status, body = await read(carol, "K2")  # supervisors read everyone
            assert status == 200 and body["customer_number"] == "K2"

            # what counts follows the work: alice takes Anna, then moves her to billing
            async with agent_client(hub, alice) as (a, _), agent_client(hub, bob) as (b, _):
                offer = await a.expect("offer")
                await a.send(type="accept", conversation_id=offer["conversation_id"])
                await a.expect("conversation")
                assert (await read(alice, "K1"))[0] == 200  # she holds it
                await a.send(
                    type="transfer", conversation_id=offer["conversation_id"], queue="billing"
                )
                await b.expect("offer")
                assert (await read(bob, "K1"))[0] == 200  # offered to him
                assert (await read(alice, "K1"))[0] == 403  # hers no more

        merge = f"{hub.url}/api/customers/merge"
        body = {"json": {"source": "K2", "target": "K3"}}
        status, answer = await http_json("POST", merge, headers=_bearer(alice), **body)
        assert status == 403 and answer["error"] == "forbidden"
        status, answer = await http_json("POST", merge, headers=_bearer(carol), **body)
        assert status == 200
        unmerge = {"json": {"merge_id": answer["merge_id"]}}
        url = f"{hub.url}/api/customers/unmerge"
        assert (await http_json("POST", url, headers=_bearer(alice), **unmerge))[0] == 403
        assert (await http_json("POST", url, headers=_bearer(carol), **unmerge))[0] == 200

        endpoint = "GET /api/customers/{key}"
        assert await _audit(hub, "customer.viewed", "customer.view_refused") == [
            ("customer.viewed", "alice", anna, endpoint),
            ("customer.view_refused", "bob", anna, endpoint),
            ("customer.view_refused", "bob", anna, endpoint),
            ("customer.view_refused", "bob", None, endpoint),
            ("customer.view_refused", "alice", bert, endpoint),
            ("customer.viewed", "carol", bert, endpoint),
            ("customer.viewed", "alice", anna, endpoint),
            ("customer.viewed", "bob", anna, endpoint),
            ("customer.view_refused", "alice", anna, endpoint),
        ]


async def test_a_plain_agent_neither_reads_strangers_nor_merges(
    store_url: str, tmp_path: Path
) -> None:
    """The audit's finding with the default agents (no roles written): bob had no work with
    Anna, yet read her whole context and merged customers."""
    async with running_hub(make_settings(store_url, tmp_path)) as hub:
        service = hub.app[CUSTOMERS]
        for text in (CUSTOMERS_CSV, ORDERS_CSV):
            await service.import_file(csvimport.parse(text.encode(), "x.csv"))
        bob = _bearer(await login(hub, "bob", AGENT_PASSWORD))
        status, body = await http_json("GET", f"{hub.url}/api/customers/K1", headers=bob)
        assert status == 403 and "customer_number" not in body
        merge = {"source": "K2", "target": "K3"}
        status, _ = await http_json(
            "POST", f"{hub.url}/api/customers/merge", headers=bob, json=merge
        )
        assert status == 403
        assert await service.find("K2") != await service.find("K3")


async def test_the_websocket_applies_the_same_roles(sqlite_url: str, tmp_path: Path) -> None:
    agents = [_agent("alice"), _agent("bob"), _agent("carol", role="supervisor")]
    async with running_hub(make_settings(sqlite_url, tmp_path, agents=agents)) as hub:
        alice, carol = (
            await login(hub, "alice", AGENT_PASSWORD),
            await login(hub, "carol", AGENT_PASSWORD),
        )
        async with connect(f"{hub.ws_url}/ws/agent") as socket:
            await socket.send(json.dumps({"type": "auth", "token": alice}))
            hello = json.loads(await socket.recv())
            assert hello["agent"]["role"] == "agent" and hello["agent"]["supervisor"] is False
        async with agent_client(hub, alice) as (a, _), agent_client(hub, carol) as (c, _):
            await c.expect("queue_state")
            await a.send(type="reassign", conversation_id="x", agent="bob")
            error = await a.expect("error")
            assert error["code"] == "not_allowed"
            await a.nothing("queue_state", within=1.5)


def test_docs_state_the_policy_the_code_enforces() -> None:
    """docs/api.md's "Who may read and do what" table is POLICY, row for row."""
    from hub.permissions import POLICY, Action, Role, may

    text = (ROOT / "docs" / "api.md").read_text()
    section = text.split("## Who may read and do what", 1)[1].split("\n## ", 1)[0]
    documented: dict[str, tuple[str, ...]] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 5 and (match := re.fullmatch(r"`([a-z_.]+)`", cells[1])):
            documented[match.group(1)] = tuple(cells[2:])
    assert set(documented) == {action.value for action in Action}
    for action in Action:
        for role, cell in zip(Role, documented[action.value], strict=True):
            if may(role, action):
                assert cell == "yes", (action, role, cell)
            elif role in POLICY[action].related:
                assert cell.startswith("only "), (action, role, cell)
            else:
                assert cell == "no", (action, role, cell)


# -- item 13: login backoff per account ---------------------------------------------------------


async def test_guesses_spread_over_addresses_are_slowed_per_account(
    sqlite_url: str, tmp_path: Path
) -> None:
    clock = Clock()
    settings = make_settings(sqlite_url, tmp_path, server={"trusted_proxies": ["127.0.0.1/32"]})
    jar = aiohttp.CookieJar(unsafe=True)  # keep cookies of 127.0.0.1 like a browser would
    async with (
        running_hub(settings, clock=clock) as hub,
        aiohttp.ClientSession(cookie_jar=jar) as browser,
    ):
        url = f"{hub.url}/api/login"
        # alice's own browser logged in before: it holds a device cookie
        async with browser.post(
            url, json={"username": "alice", "password": AGENT_PASSWORD}
        ) as response:
            assert response.status == 200

        async def attempt(username: str, password: str, address: int) -> tuple[int, Any]:
            forwarded = {"X-Forwarded-For": f"198.51.100.{address}"}
            return await http_json(
                "POST", url, json={"username": username, "password": password}, headers=forwarded
            )

        for username in ("alice", "nobody"):  # made-up names are slowed the same way
            for address in range(6):
                assert (await attempt(username, f"guess {address}", address))[0] == 401
            status, body = await attempt(username, AGENT_PASSWORD, 99)
            assert status == 429 and body["error"] == "too_many_attempts", body
        # the owner's known browser is not locked out by the attacker
        async with browser.post(
            url,
            json={"username": "alice", "password": AGENT_PASSWORD},
            headers={"X-Forwarded-For": "203.0.113.7"},
        ) as response:
            assert response.status == 200
        clock.now += 2.5  # the first wait is 2 seconds
        assert (await attempt("alice", AGENT_PASSWORD, 100))[0] == 200


async def test_forwarded_addresses_count_only_from_trusted_proxies(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Ten failures from one address (the proxy's word for it) lock that address only."""
    settings = make_settings(sqlite_url, tmp_path, server={"trusted_proxies": ["127.0.0.1/32"]})
    async with running_hub(settings) as hub:
        url = f"{hub.url}/api/login"
        users = [f"user{i}" for i in range(10)]  # ten accounts: no account reaches its limit
        for user in users:
            forwarded = {"X-Forwarded-For": "192.0.2.1, 198.51.100.1"}
            body = {"username": user, "password": "x"}
            assert (await http_json("POST", url, json=body, headers=forwarded))[0] == 401
        body = {"username": "alice", "password": AGENT_PASSWORD}
        status, answer = await http_json(
            "POST", url, json=body, headers={"X-Forwarded-For": "198.51.100.1"}
        )
        assert status == 429 and "address" in answer["message"]
        status, _ = await http_json(
            "POST", url, json=body, headers={"X-Forwarded-For": "198.51.100.2"}
        )
        assert status == 200


# -- item 14: cookies, metrics, Origin --------------------------------------------------------


def _cookie_attributes(response: aiohttp.ClientResponse, name: str) -> str:
    for header in response.headers.getall("Set-Cookie", []):
        if header.startswith(f"{name}=") and not header.startswith(f'{name}=""'):
            return header
    raise AssertionError(f"no {name} cookie in {response.headers.getall('Set-Cookie', [])}")


@pytest.mark.parametrize(
    ("server", "headers", "secure"),
    [
        ({}, {}, False),
        ({"public_url": "https://hub.example.com"}, {}, True),
        ({"trusted_proxies": ["127.0.0.0/8"]}, {"X-Forwarded-Proto": "https"}, True),
        ({"trusted_proxies": ["10.0.0.0/8"]}, {"X-Forwarded-Proto": "https"}, False),
    ],
)
async def test_the_session_cookie_is_secure_behind_https(
    sqlite_url: str,
    tmp_path: Path,
    server: dict[str, Any],
    headers: dict[str, str],
    secure: bool,
) -> None:
    async with (
        running_hub(make_settings(sqlite_url, tmp_path, server=server)) as hub,
        aiohttp.ClientSession() as session,
        session.post(
            f"{hub.url}/api/login",
            json={"username": "alice", "password": AGENT_PASSWORD},
            headers=headers,
        ) as response,
    ):
        assert response.status == 200
        token = (await response.json())["token"]
        name = "__Host-channelhub_session" if secure else "channelhub_session"
        cookie = _cookie_attributes(response, name)
        attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
        assert {"httponly", "path"} <= attributes
        assert ("secure" in attributes) is secure
        assert "domain" not in attributes
        assert "samesite=strict" in cookie.lower()
        # the API and the websocket take the cookie under either name
        cookies = {"Cookie": f"{name}={token}"}
        assert (await http_json("GET", f"{hub.url}/api/me", headers=cookies))[0] == 200
        async with connect(f"{hub.ws_url}/ws/agent", additional_headers=cookies) as socket:
            assert json.loads(await socket.recv())["type"] == "hello"


async def test_metrics_behind_a_token(sqlite_url: str, tmp_path: Path) -> None:
    settings = make_settings(sqlite_url, tmp_path, server={"metrics_token": "scrape-me-0123"})
    async with running_hub(settings) as hub:
        status, _ = await http_json("GET", f"{hub.url}/metrics")
        assert status == 401
        assert (await http_json("GET", f"{hub.url}/metrics", headers=_bearer("wrong")))[0] == 401
        status, text = await http_json(
            "GET", f"{hub.url}/metrics", headers=_bearer("scrape-me-0123")
        )
        assert status == 200 and "channelhub_agents_connected" in text


async def test_metrics_on_their_own_port(sqlite_url: str, tmp_path: Path) -> None:
    from tests.helpers import free_port

    port = free_port()
    settings = make_settings(sqlite_url, tmp_path, server={"metrics_port": port})
    async with running_hub(settings) as hub:
        assert (await http_json("GET", f"{hub.url}/metrics"))[0] == 404
        status, text = await http_json("GET", f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and "channelhub_agents_connected" in text


async def test_every_state_changing_api_endpoint_checks_origin(
    sqlite_url: str, tmp_path: Path
) -> None:
    async with running_hub(make_settings(sqlite_url, tmp_path)) as hub:
        token = await login(hub, "alice", AGENT_PASSWORD)
        writes = sorted(
            {
                (route.method, route.resource.canonical)
                for route in hub.app.router.routes()
                if route.resource is not None
                and route.resource.canonical.startswith("/api/")
                and route.method not in {"GET", "HEAD", "OPTIONS"}
            }
        )
        assert ("POST", "/api/customers/merge") in writes and ("POST", "/api/logout") in writes
        evil = {**_bearer(token), "Origin": "https://evil.example"}
        for method, path in writes:
            status, body = await http_json(method, f"{hub.url}{path}", headers=evil, json={})
            assert (status, body["error"]) == (403, "forbidden_origin"), path
        # nothing happened: the session lives, and the hub's own origin may log out
        assert (await http_json("GET", f"{hub.url}/api/me", headers=_bearer(token)))[0] == 200
        own = {**_bearer(token), "Origin": hub.url}
        assert (await http_json("POST", f"{hub.url}/api/logout", headers=own))[0] == 200
        assert (await http_json("GET", f"{hub.url}/api/me", headers=_bearer(token)))[0] == 401


# -- item 14: unsafe defaults on a network ------------------------------------------------------


def _serve(tmp_path: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    shutil.copytree(ROOT / "config", tmp_path / "config", dirs_exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", "serve", "--config", "config/hub.yaml", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
    )


def test_the_shipped_config_refuses_a_network_address(tmp_path: Path) -> None:
    """The Docker image sets CHANNELHUB_HOST=0.0.0.0: the demo config stops with the fix named,
    before anything listens."""
    result = _serve(tmp_path, env={"CHANNELHUB_HOST": "0.0.0.0"})
    assert result.returncode == 2, result.stderr
    assert "refusing to listen on 0.0.0.0:8080" in result.stderr
    assert "agent 'demo' still has the demo password" in result.stderr
    assert "CHANNELHUB_SECRET_KEY" in result.stderr
    assert "allow_insecure_defaults" in result.stderr
    assert "CHANNELHUB_ALLOW_INSECURE_DEFAULTS=1" in result.stderr
    assert not (tmp_path / "data").exists()  # nothing started, not even the store


def test_allowed_insecure_defaults_start_with_a_loud_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from aiohttp import web

    from hub import logs
    from hub.cli.main import main

    started: list[dict[str, Any]] = []
    monkeypatch.setattr(web, "run_app", lambda app, **kwargs: started.append(kwargs))
    monkeypatch.setattr(logs, "configure", lambda *args: None)  # keep pytest's log capture
    monkeypatch.setenv("CHANNELHUB_ALLOW_INSECURE_DEFAULTS", "1")
    monkeypatch.chdir(ROOT)
    caplog.set_level(logging.WARNING)
    assert main(["serve", "--config", "config/hub.yaml", "--host", "0.0.0.0"]) == 0
    assert started and started[0]["host"] == "0.0.0.0"
    warning = "\n".join(record.getMessage() for record in caplog.records)
    assert "WITH INSECURE DEFAULTS" in warning
    assert "demo password" in warning and "/metrics is open" in warning


@pytest.mark.parametrize(
    ("host", "server", "refusals", "warnings"),
    [
        ("127.0.0.1", {}, 0, 0),
        ("localhost", {}, 0, 0),
        ("::1", {}, 0, 0),
        ("0.0.0.0", {}, 1, 2),
        ("", {}, 1, 2),
        ("hub.example.com", {}, 1, 2),
        ("0.0.0.0", {"secret_key": "x" * 32}, 0, 2),
        (
            "0.0.0.0",
            {
                "secret_key": "x" * 32,
                "metrics_port": 9100,
                "public_url": "https://hub.example.com",
            },
            0,
            0,
        ),
        ("0.0.0.0", {"secret_key": "x" * 32, "metrics_token": "t" * 16}, 0, 1),
        (
            "0.0.0.0",
            {"secret_key": "x" * 32, "metrics_port": 9100, "metrics_host": "0.0.0.0"},
            0,
            2,
        ),
    ],
)
def test_exposure_findings(
    tmp_path: Path, host: str, server: dict[str, Any], refusals: int, warnings: int
) -> None:
    from hub import exposure

    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path}/x.db", tmp_path, server=server)
    found = exposure.findings(settings, host, demo_agents=[])
    assert sum(item.refuse for item in found) == refusals
    assert sum(not item.refuse for item in found) == warnings


def test_the_demo_password_is_recognised() -> None:
    from hub import exposure
    from hub.auth import verify_password
    from hub.plugins import ConnectorRegistry
    from hub.settings import load_settings

    shipped = load_settings("config/hub.yaml", ConnectorRegistry.discover().settings_model, {})
    assert exposure.demo_password_agents(shipped.agents) == ["demo"]
    rehashed = make_settings(
        "sqlite+aiosqlite:///x.db",
        ROOT,
        agents=[_agent("demo", password_hash=hash_password("demo")), _agent("alice")],
    )
    assert exposure.demo_password_agents(rehashed.agents, verify_password) == ["demo"]


# -- the pure parts -------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap_and_forgets() -> None:
    from hub.auth import Backoff

    backoff = Backoff(free=2, base=2.0, cap=10.0, forget_after=100.0, max_keys=2)
    for _ in range(2):
        backoff.failed("ann", 0.0)
    assert backoff.wait("ann", 0.0) == 0.0  # free failures
    waits = []
    for _ in range(4):
        backoff.failed("ann", 0.0)
        waits.append(backoff.wait("ann", 0.0))
    assert waits == [2.0, 4.0, 8.0, 10.0]
    assert backoff.wait("ann", 100.0) == 0.0  # forgotten after an hour-like quiet spell
    backoff.failed("ann", 100.0)
    assert backoff.wait("ann", 100.0) == 0.0  # counting starts again
    for key in ("b", "c"):  # at most max_keys are kept: the oldest goes
        backoff.failed(key, 101.0)
    assert "ann" not in backoff._keys
    backoff.succeeded("b")
    assert backoff.wait("b", 101.0) == 0.0


def test_device_tokens_are_per_agent_and_expire() -> None:
    from hub.auth import DeviceTokens

    tokens = DeviceTokens(b"k" * 32, ttl=1000.0)
    token = tokens.issue("ann", 5000.0)
    assert tokens.check(token, "ann", 5500.0)
    assert tokens.check(token, "bob", 5500.0) is None
    assert tokens.check(token, "ann", 6001.0) is None
    assert tokens.check(token.replace(".", ".0", 1), "ann", 5500.0) is None
    assert DeviceTokens(b"x" * 32).check(token, "ann", 5500.0) is None
    for junk in ("", "abc", "1.2.3", "x" * 100):
        assert tokens.check(junk, "ann", 5500.0) is None


def test_a_session_counts_only_with_the_credential_it_was_made_with() -> None:
    from hub.sessions import Ended, Principal, credential_fingerprint, judge
    from hub.settings import AgentSettings
    from hub.store.records import StoredSession

    ann = AgentSettings(id="ann", name="Ann", password_hash="first")  # type: ignore[arg-type]
    agents = {"ann": ann}
    row = StoredSession(
        token_hash="h", agent="ann", credential=credential_fingerprint(ann), expires_at=100.0
    )
    assert isinstance(judge(row, agents, 99.0), Principal)
    assert judge(row, agents, 100.0) is Ended.EXPIRED
    assert judge(None, agents, 0.0) is Ended.LOGGED_OUT
    assert judge(row, {}, 0.0) is Ended.AGENT_REMOVED
    changed = {"ann": ann.model_copy(update={"password_hash": SecretStr("second")})}
    assert judge(row, changed, 0.0) is Ended.CREDENTIALS_CHANGED


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("203.0.113.9", "198.51.100.1", "203.0.113.9"),  # not a proxy of ours: header ignored
        ("10.0.0.2", "198.51.100.1", "198.51.100.1"),
        ("10.0.0.2", "6.6.6.6, 198.51.100.1, 10.0.0.1", "198.51.100.1"),  # left is hearsay
        ("10.0.0.2", "", "10.0.0.2"),
        ("10.0.0.2", "garbage", "10.0.0.2"),
    ],
)
def test_client_address_behind_trusted_proxies(peer: str, forwarded: str, client: str) -> None:
    import ipaddress
    from unittest import mock

    from aiohttp.test_utils import make_mocked_request

    from hub.websec import client_address

    request = make_mocked_request("POST", "/api/login", headers={"X-Forwarded-For": forwarded})
    with mock.patch.object(type(request), "remote", new_callable=mock.PropertyMock) as remote:
        remote.return_value = peer
        assert client_address(request, [ipaddress.ip_network("10.0.0.0/8")]) == client
