"""Nothing acknowledged is lost when Redis or PostgreSQL fails (issue 17, item 3).

Real servers on loopback: a private ``redis-server`` killed (``SIGKILL``) and restarted in the
middle of web chat traffic; the shared PostgreSQL cut off from the hub by a TCP proxy this test
controls (``tests/tcp_proxy.py``: the server itself never stops); a hub process that died
between committing messages and publishing their events. Every operation is recorded and the
checks run over the whole history, Jepsen-style: every acknowledged message stored exactly
once and shown to an agent, a redelivery never a second message, no reply sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import aiohttp
import aiosmtplib
import pytest
import redis.asyncio
from sqlalchemy import select
from websockets.asyncio.client import connect

from hub.bus import MemoryBus
from hub.keys import METRICS
from hub.metrics import Metrics
from hub.pipeline import PassthroughDecider, Pipeline
from hub.relay import EventRelay
from hub.store.schema import event_outbox, messages, outbox
from hub.store.store import Store
from tests.conftest import _HASH, AGENT_PASSWORD, make_settings
from tests.dovecot import free_port, running_dovecot
from tests.fake_twilio import AUTH_TOKEN, fake_twilio, inbound_fields, signature
from tests.helpers import Frames, RunningHub, agent_client, login, running_hub
from tests.helpers import chat_envelope as envelope
from tests.redis_server import RedisServer, require_redis_server
from tests.smtp_sink import running_relay
from tests.tcp_proxy import TcpProxy
from tests.test_email import connector, hub_settings, smtp
from tests.test_email_imap import deliver, flags, mail
from tests.test_sms import INBOUND, PUBLIC, sms_settings

pytestmark = pytest.mark.integration

VISITORS = 5
LINES = 12  # per visitor
AGENTS = [
    {"id": "alice", "name": "Alice", "password_hash": _HASH, "max_conversations": 50},
    {"id": "bob", "name": "Bob", "password_hash": _HASH, "max_conversations": 1},
]


@dataclass
class History:
    """Everything clients saw, for the checks at the end."""

    acked: dict[str, str] = field(default_factory=dict)  # client id -> message id
    acked_during_outage: int = 0
    refused: int = 0  # "unavailable" answers (each retried with the same client id)
    redelivered: list[tuple[str, str, bool]] = field(default_factory=list)  # cid, id, dup
    seen_by_agent: set[str] = field(default_factory=set)  # inbound message ids in frames
    offers: list[str] = field(default_factory=list)
    replies: dict[str, str] = field(default_factory=dict)  # reply client id -> message id
    outage: bool = False


def _message_ids(value: Any, found: set[str]) -> None:
    """Ids of the inbound messages anywhere in an agent frame."""
    if isinstance(value, dict):
        if value.get("direction") == "inbound" and isinstance(value.get("id"), str):
            found.add(value["id"])
        for item in value.values():
            _message_ids(item, found)
    elif isinstance(value, list):
        for item in value:
            _message_ids(item, found)


async def _answer(frames: Frames, cid: str, timeout: float = 15.0) -> dict[str, Any]:
    """The ack or error frame for ``cid`` (other frames are kept)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        for index, frame in enumerate(frames.backlog):
            if frame.get("client_id") == cid and frame["type"] in ("ack", "error"):
                return frames.backlog.pop(index)
        remaining = deadline - loop.time()
        assert remaining > 0, f"no answer for {cid}"
        raw = await asyncio.wait_for(frames.socket.recv(), remaining)
        frames.backlog.append(json.loads(raw))


async def _visitor(hub: RunningHub, number: int, history: History) -> None:
    """A widget: each line until it is acknowledged (an ``unavailable`` error: again, with the
    same client id, as the widget does), every third line sent once more after its ack."""
    async with connect(f"{hub.ws_url}/ws/chat") as socket:
        frames = Frames(socket)
        await frames.send(type="hello", name=f"Visitor {number}")
        await frames.expect("welcome", timeout=15)
        for line in range(LINES):
            cid = f"v{number}-{line}"
            while True:
                await frames.send(type="message", client_id=cid, text=f"line {line}")
                answer = await _answer(frames, cid)
                if answer["type"] == "ack":
                    break
                assert answer["code"] == "unavailable", answer
                history.refused += 1
                await asyncio.sleep(0.2)
            assert not answer["duplicate"], answer
            history.acked[cid] = answer["id"]
            if history.outage:
                history.acked_during_outage += 1
            if line % 3 == 2:  # the widget did not see the ack and sends it again
                await frames.send(type="message", client_id=cid, text=f"line {line}")
                again = await _answer(frames, cid)
                if again["type"] == "ack":
                    history.redelivered.append((cid, again["id"], again["duplicate"]))
            await asyncio.sleep(0.03)


async def _agent(frames: Frames, history: History) -> None:
    """Accepts every offer and answers each conversation once (again on ``unavailable``)."""
    pending_replies: dict[str, str] = {}  # reply client id -> conversation
    while True:
        raw = await frames.socket.recv()
        frame = json.loads(raw)
        _message_ids(frame, history.seen_by_agent)
        kind = frame["type"]
        if kind == "offer":
            history.offers.append(frame["conversation_id"])
            await frames.send(type="accept", conversation_id=frame["conversation_id"])
        elif kind == "conversation":
            conversation_id = frame["conversation"]["id"]
            cid = f"reply-{conversation_id}"
            if cid not in pending_replies and cid not in history.replies:
                pending_replies[cid] = conversation_id
                await frames.send(
                    type="reply", conversation_id=conversation_id, client_id=cid, text="hi"
                )
        elif kind == "reply_ack":
            history.replies[frame["client_id"]] = frame["message"]["id"]
            pending_replies.pop(frame["client_id"], None)
        elif kind == "error" and frame.get("ref") in pending_replies:
            cid = frame["ref"]
            await asyncio.sleep(0.3)
            await frames.send(
                type="reply", conversation_id=pending_replies[cid], client_id=cid, text="hi"
            )


async def _until(condition: Any, what: str, timeout: float = 45.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, f"never: {what}"
        await asyncio.sleep(0.05)


async def _rows(store: Store, statement: Any) -> list[Any]:
    async with store.read() as connection:
        return list(await connection.execute(statement))


async def _check(hub: RunningHub, history: History) -> None:
    """The invariants over the whole history, once the hub had time to catch up."""
    acked = set(history.acked.values())
    assert len(acked) == len(history.acked) == VISITORS * LINES
    try:
        await _until(lambda: acked <= history.seen_by_agent, "every acked message reached alice")
    except AssertionError:
        missing = acked - history.seen_by_agent
        where = await _rows(
            hub.store,
            select(messages.c.id, messages.c.conversation_id).where(messages.c.id.in_(missing)),
        )
        raise AssertionError(f"not shown to alice: {where}; offers {history.offers}") from None
    store = hub.store
    stored = await _rows(
        store,
        select(messages.c.id, messages.c.idempotency_key).where(messages.c.direction == "inbound"),
    )
    assert sorted(row.id for row in stored) == sorted(acked)  # exactly once, nothing extra
    for cid, message_id, duplicate in history.redelivered:  # a redelivery is the same message
        assert duplicate and message_id == history.acked[cid], (cid, message_id, duplicate)
    assert len(set(history.offers)) == VISITORS  # one conversation per visitor
    await _until(lambda: len(history.replies) == VISITORS, "alice answered every conversation")

    async def sent() -> list[Any]:
        return await _rows(store, select(outbox.c.message_id, outbox.c.status, outbox.c.attempts))

    for _ in range(400):
        rows = await sent()
        if len(rows) == VISITORS and all(row.status == "sent" for row in rows):
            break
        await asyncio.sleep(0.05)
    assert sorted(row.message_id for row in rows) == sorted(history.replies.values())
    assert all(row.status == "sent" and row.attempts == 1 for row in rows), rows  # once each
    for _ in range(400):  # and the event outbox drains
        if not await _rows(store, select(event_outbox.c.id)):
            break
        await asyncio.sleep(0.05)
    assert await _rows(store, select(event_outbox.c.id)) == []


def _sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


@contextlib.asynccontextmanager
async def _traffic(hub: RunningHub, history: History) -> AsyncIterator[asyncio.Task[Any]]:
    """Alice online, then every visitor writing; yields the visitors' task."""
    token = await login(hub, "alice", AGENT_PASSWORD)
    async with agent_client(hub, token) as (agent, _):
        follower = asyncio.create_task(_agent(agent, history))
        visitors = asyncio.ensure_future(
            asyncio.gather(*(_visitor(hub, number, history) for number in range(VISITORS)))
        )
        try:
            yield visitors
        finally:
            follower.cancel()
            visitors.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await follower
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await visitors


# -- Redis --------------------------------------------------------------------------------


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server that fsyncs every write (AOF ``always``, as docs/scaling.md
    asks for production): a kill loses nothing it acknowledged."""
    require_redis_server()
    root = tmp_path / "redis"
    root.mkdir()
    server = RedisServer(root, None, "--appendonly", "yes", "--appendfsync", "always")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _distributed(pg_url: str, redis_url: str, tmp_path: Path) -> Any:
    return make_settings(
        pg_url,
        tmp_path,
        bus={
            "url": redis_url,
            "relay_after": "1s",
            "relay_poll": "200ms",
            "reconnect_initial": "50ms",
            "reconnect_max": "500ms",
            "timeout": "2s",
            "block": "500ms",
        },
        cluster={"lease_ttl": "3s", "lease_margin": "0.5s", "lease_poll": "0.2s"},
        agents=AGENTS,
    )


async def test_redis_killed_and_restarted_mid_traffic_loses_nothing(
    pg_url: str, durable_redis: RedisServer, tmp_path: Path
) -> None:
    """Ingest goes on while Redis is gone (the events wait in PostgreSQL, the messages are
    acknowledged), and once Redis is back the relay publishes them: every message reaches
    the agent, none twice, every reply sent once."""
    history = History()
    async with running_hub(_distributed(pg_url, durable_redis.url, tmp_path)) as hub:
        async with _traffic(hub, history) as visitors:
            await _until(lambda: len(history.acked) >= VISITORS * LINES // 3, "traffic")
            durable_redis.kill()
            history.outage = True
            await _until(lambda: history.acked_during_outage >= 5, "acks while Redis is gone")
            await asyncio.sleep(0.5)
            history.outage = False
            durable_redis.start()  # same port, its AOF read back
            await asyncio.wait_for(visitors, 60)
            await _check(hub, history)
        metrics = hub.app[METRICS]
        deferred = _sample(metrics, "channelhub_event_outbox_deferred_total", topic="messages")
        relayed = _sample(metrics, "channelhub_event_outbox_relayed_total", topic="messages")
        assert deferred > 0 and relayed >= deferred, (deferred, relayed)
        assert history.refused == 0  # a Redis outage refuses no message


async def test_events_committed_by_a_process_that_died_before_publishing_are_relayed(
    pg_url: str, durable_redis: RedisServer, tmp_path: Path
) -> None:
    """Another hub process stored two messages (committed with their event rows) and died
    before publishing: the running hub's relay publishes them once that process's claim
    lapses, and its dispatch offers the conversations."""
    settings = _distributed(pg_url, durable_redis.url, tmp_path)
    async with running_hub(settings) as hub:
        token = await login(hub, "alice", AGENT_PASSWORD)
        async with agent_client(hub, token) as (agent, _):
            # the other process, up to its commit: its ingest writes the message and the
            # events it would publish next, claimed by it for relay_after (1 s)
            other = Store(pg_url)
            await other.start(run_migrations=False)
            try:
                unused = MemoryBus()  # it dies before publishing anything
                dead = Pipeline(
                    other,
                    unused,
                    PassthroughDecider("general"),
                    Metrics(),
                    relay=EventRelay(other, unused, Metrics(), holder="dead", hold=1.0),
                )
                stored = [
                    await dead.inbound.ingest(envelope(f"orphan-{n}", sender=f"orphan{n}"))
                    for n in range(2)
                ]
            finally:
                await other.close()  # gone: nothing of it publishes
            rows = await _rows(hub.store, select(event_outbox.c.claimed_by))
            assert [row.claimed_by for row in rows] == ["dead", "dead"]
            offered = {(await agent.expect("offer", timeout=15))["conversation_id"] for _ in stored}
            assert offered == {item.conversation_id for item in stored}
            await _until_empty(hub.store)
        assert (
            _sample(hub.app[METRICS], "channelhub_event_outbox_relayed_total", topic="messages")
            == 2
        )


async def _until_empty(store: Store) -> None:
    for _ in range(200):
        if not await _rows(store, select(event_outbox.c.id)):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the event outbox never drained")


# -- PostgreSQL -----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _proxied(pg_url: str) -> AsyncIterator[tuple[TcpProxy, str]]:
    """A proxy to the database's server and the database URL through it."""
    parts = urlsplit(pg_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    netloc = parts.netloc.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{proxy.port}")
    try:
        yield proxy, urlunsplit(parts._replace(netloc=netloc))
    finally:
        await proxy.stop()


async def test_postgresql_cut_off_mid_traffic_refuses_then_resumes(
    pg_url: str, tmp_path: Path
) -> None:
    """While PostgreSQL is unreachable, chat messages are refused (``unavailable``: the widget
    sends them again) and /readyz says 503; when it is back, the hub resumes by itself and
    every acknowledged message is stored once and reaches the agent."""
    history = History()
    async with _proxied(pg_url) as (proxy, url):
        settings = make_settings(url, tmp_path, agents=AGENTS)
        async with running_hub(settings) as hub, aiohttp.ClientSession() as session:
            async with _traffic(hub, history) as visitors:
                await _until(lambda: len(history.acked) >= VISITORS * LINES // 3, "traffic")
                proxy.cut()
                await _until(lambda: history.refused >= 3, "refusals while PostgreSQL is cut")
                async with session.get(f"{hub.url}/readyz") as response:
                    assert response.status == 503, await response.text()
                proxy.restore()
                await asyncio.wait_for(visitors, 90)
                await _check(hub, history)
            async with session.get(f"{hub.url}/readyz") as response:
                assert response.status == 200, await response.text()


async def test_webhooks_answer_503_with_retry_after_while_postgresql_is_cut(
    pg_url: str, tmp_path: Path
) -> None:
    """An SMS webhook during the cut: 503, a reason, Retry-After; Twilio's retry after it is
    stored once."""
    async with _proxied(pg_url) as (proxy, url), fake_twilio() as fake:
        settings = sms_settings(url, tmp_path, fake)
        async with running_hub(settings) as hub, aiohttp.ClientSession() as session:
            fields = inbound_fields(body="are you there?")

            async def post() -> tuple[int, str, str | None]:
                signed = signature(PUBLIC + INBOUND, fields, AUTH_TOKEN)
                async with session.post(
                    hub.url + INBOUND,
                    data=urlencode(fields),
                    headers={
                        "Content-Type": "application/x-www-form-urlencoded",
                        "X-Twilio-Signature": signed,
                    },
                ) as response:
                    return (
                        response.status,
                        await response.text(),
                        response.headers.get("Retry-After"),
                    )

            proxy.cut()
            status, text, retry_after = await post()
            assert (status, retry_after) == (503, "10"), text
            assert "storage is unavailable" in text, text
            proxy.restore()
            for _ in range(100):  # Twilio retries until the hub takes it
                status, text, _ = await post()
                if status == 200:
                    break
                await asyncio.sleep(0.1)
            assert status == 200, text
            status, _, _ = await post()  # and once more: a duplicate
            assert status == 200
            rows = await _rows(hub.store, select(messages.c.id).where(messages.c.inbox == "sms"))
            assert len(rows) == 1


async def test_mail_is_refused_or_left_unseen_while_postgresql_is_cut(
    pg_url: str, tmp_path: Path
) -> None:
    """SMTP-in answers 451 and an IMAP mail stays unseen while the database is cut off; once
    it is back, the sender's retry and the follower's next sync store each mail once."""
    with running_dovecot() as dovecot:
        async with running_relay() as relay, _proxied(pg_url) as (proxy, url):
            settings = hub_settings(url, tmp_path, relay, dovecot)
            async with running_hub(settings) as hub:
                email = connector(hub)
                assert email.follower is not None and email.receiver is not None
                await asyncio.wait_for(email.follower.synced.wait(), 15)
                port = email.receiver.port
                proxy.cut()
                with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
                    await smtp(port, mail(1), "customer1@example.org", "support@example.com")
                assert refused.value.code == 451, refused.value
                await deliver(dovecot, mail(2))
                follower = email.follower
                await _until(
                    lambda: "unavailable" in (follower.problem or ""), "the follower tried"
                )
                assert all("\\Seen" not in line for line in await flags(dovecot))
                proxy.restore()
                await smtp(port, mail(1), "customer1@example.org", "support@example.com")

                async def seen() -> bool:
                    return all("\\Seen" in line for line in await flags(dovecot))

                for _ in range(600):
                    if await seen():
                        break
                    await asyncio.sleep(0.05)
                assert await seen()
                rows = await _rows(
                    hub.store, select(messages.c.subject).where(messages.c.inbox == "support")
                )
                assert sorted(row.subject for row in rows) == ["Order 1", "Order 2"]


# -- kill -9 between commit and publish -------------------------------------------------------


def _serve_config(directory: Path, port: int, pg_url: str, redis_url: str) -> Path:
    """hub.yaml for a ``channelhub serve`` subprocess: the same database, its bus through
    ``redis_url``, publishes waiting up to 30 s (so the test can kill it while one waits)."""
    config = directory / "hub.yaml"
    config.write_text(
        f"""server: {{port: {port}, secret_key: test-secret-key-0123456789abcdef}}
storage: {{url: "{pg_url}", blobs: "{directory}/blobs"}}
bus: {{url: "{redis_url}", timeout: 30s, block: 500ms, relay_after: 1s}}
cluster: {{lease_ttl: 3s, lease_margin: 0.5s, lease_poll: 0.2s}}
channels:
  - {{name: webchat, type: webchat, settings: {{rate_per_second: 50, burst: 50}}}}
queues: [{{name: general}}, {{name: billing}}]
agents:
  - {{id: alice, name: Alice, password_hash: '{_HASH}', max_conversations: 50}}
  - {{id: bob, name: Bob, password_hash: '{_HASH}', max_conversations: 1}}
"""
    )
    return config


async def test_a_process_killed_between_commit_and_publish_loses_nothing(
    pg_url: str, durable_redis: RedisServer, tmp_path: Path
) -> None:
    """A second hub process (``channelhub serve``) stores a chat message and is ``kill -9``ed
    while its publish waits for Redis (a proxy holds every byte): the visitor got no ack, the
    message is in the store with its event row, and the other process's relay publishes it
    once the dead process's claim lapses, so alice is offered it; the widget's retry through
    the other process is a duplicate of the same message."""
    root = tmp_path / "other"
    root.mkdir()
    port = free_port()
    async with running_hub(_distributed(pg_url, durable_redis.url, tmp_path)) as hub:
        token = await login(hub, "alice", AGENT_PASSWORD)
        async with agent_client(hub, token) as (agent, _):
            proxy = TcpProxy("127.0.0.1", durable_redis.port)
            await proxy.start()
            config = _serve_config(root, port, pg_url, f"redis://127.0.0.1:{proxy.port}/0")
            with open(root / "hub.log", "wb") as log:
                other = subprocess.Popen(
                    [sys.executable, "-m", "hub.cli", "serve", "--config", str(config)],
                    cwd=root,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            try:
                await _until_up(f"http://127.0.0.1:{port}/healthz", other)
                async with connect(f"ws://127.0.0.1:{port}/ws/chat") as socket:
                    visitor = Frames(socket)
                    await visitor.send(type="hello", name="Vera")
                    welcome = await visitor.expect("welcome", timeout=15)
                    await _until_published(durable_redis)  # the visitor's presence went out
                    proxy.hang()  # Redis looks alive and never answers
                    await visitor.send(type="message", client_id="c1", text="hello?")
                    stored = await _until_stored(hub.store, "c1")
                    rows = await _rows(hub.store, select(event_outbox.c.claimed_by))
                    assert rows and all(f":{other.pid}:" in row.claimed_by for row in rows)
                    other.kill()  # SIGKILL: between its commit and its publish
                    other.wait(10)
                    assert not [f for f in visitor.backlog if f.get("type") == "ack"]
                offer = await agent.expect("offer", timeout=20)
                assert offer["conversation_id"] == stored.conversation_id
                async with connect(f"{hub.ws_url}/ws/chat") as socket:  # the widget again
                    visitor = Frames(socket)
                    await visitor.send(type="hello", token=welcome["token"])
                    await visitor.expect("welcome", timeout=15)
                    await visitor.send(type="message", client_id="c1", text="hello?")
                    ack = await _answer(visitor, "c1")
                assert (ack["type"], ack["duplicate"], ack["id"]) == ("ack", True, stored.id)
                await _until_empty(hub.store)
            finally:
                if other.poll() is None:
                    other.kill()
                    other.wait(10)
                await proxy.stop()


async def _until_published(server: RedisServer) -> None:
    client = redis.asyncio.Redis.from_url(server.url)
    try:
        for _ in range(400):
            if await client.xlen("channelhub:messages"):
                return
            await asyncio.sleep(0.05)
    finally:
        await client.aclose()
    raise AssertionError("nothing was published")


async def _until_up(url: str, process: subprocess.Popen[bytes]) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(600):
            assert process.poll() is None, "the hub subprocess exited"
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.05)
    raise AssertionError(f"{url} never answered")


async def _until_stored(store: Store, cid: str) -> Any:
    for _ in range(400):
        rows = await _rows(
            store,
            select(messages.c.id, messages.c.conversation_id).where(
                messages.c.idempotency_key.like(f"%:{cid}")
            ),
        )
        if rows:
            [row] = rows
            return row
        await asyncio.sleep(0.05)
    raise AssertionError(f"{cid} was never stored")
