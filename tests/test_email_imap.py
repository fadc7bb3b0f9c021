"""The email connector against a real Dovecot: IDLE push, restarts, UIDVALIDITY, reconnects."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import aioimaplib
import pytest
from aiohttp import web

from connectors.base import MemoryState
from connectors.email import EmailConnector
from connectors.email.settings import EmailSettings
from connectors.testing import CollectingSink, check_connector_class, connector_context
from tests.dovecot import USER, Dovecot, running_dovecot

pytestmark = pytest.mark.integration


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    with running_dovecot() as server:
        yield server


def mail(number: int, **headers: str) -> bytes:
    fields = {
        "From": f"Customer {number} <customer{number}@example.org>",
        "To": "support@example.com",
        "Subject": f"Order {number}",
        "Message-ID": f"<order-{number}@example.org>",
        "Date": "Mon, 30 Nov 2026 10:00:00 +0100",
        **headers,
    }
    head = "".join(f"{key}: {value}\r\n" for key, value in fields.items())
    return f"{head}\r\nWhere is order {number}?\r\n".encode()


def settings(server: Dovecot, **imap: Any) -> EmailSettings:
    return EmailSettings.model_validate(
        {
            "address": "support@example.com",
            "parse_workers": 0,
            "imap": {
                "host": server.host,
                "port": server.port,
                "security": "none",
                "username": server.user,
                "password": server.password,
                "backfill": "all",
                "timeout": 5,
                "reconnect_max": 2,
                **imap,
            },
        }
    )


@asynccontextmanager
async def imap_client(server: Dovecot) -> AsyncIterator[aioimaplib.IMAP4]:
    client = aioimaplib.IMAP4(server.host, server.port, timeout=5)
    await client.wait_hello_from_server()
    assert (await client.login(server.user, server.password)).result == "OK"
    try:
        yield client
    finally:
        await client.logout()


async def deliver(server: Dovecot, *raws: bytes, mailbox: str = "INBOX") -> None:
    async with imap_client(server) as client:
        for raw in raws:
            assert (await client.append(raw, mailbox=mailbox)).result == "OK"


async def flags(server: Dovecot, mailbox: str = "INBOX") -> list[str]:
    async with imap_client(server) as client:
        await client.select(mailbox)
        response = await client.uid("fetch", "1:*", "(FLAGS)")
        return [
            line.decode() for line in response.lines if isinstance(line, bytes) and b"FETCH" in line
        ]


async def wait_for(condition: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


@asynccontextmanager
async def running(
    options: EmailSettings, sink: CollectingSink, state: MemoryState
) -> AsyncIterator[EmailConnector]:
    connector = EmailConnector("support", options)
    async with connector_context("support", sink=sink, state=state) as ctx:
        await connector.start(ctx)
        try:
            yield connector
        finally:
            await connector.stop()


def test_conformance() -> None:
    check_connector_class(EmailConnector, type_name="email")


async def test_idle_push_stores_then_marks_seen(dovecot: Dovecot) -> None:
    sink, state = CollectingSink(), MemoryState()
    async with running(settings(dovecot), sink, state) as connector:
        assert connector.follower is not None
        await asyncio.wait_for(connector.follower.synced.wait(), 5)
        assert connector.health() is None
        started = asyncio.get_running_loop().time()
        await deliver(dovecot, mail(1))
        await wait_for(lambda: len(sink.envelopes) == 1, 3.0)  # IDLE push: ~0.5 s in Dovecot
        assert asyncio.get_running_loop().time() - started < 3.0
        [envelope] = sink.envelopes
        assert envelope.sender.address == "customer1@example.org"
        assert envelope.text.strip() == "Where is order 1?"
        assert envelope.provider_id == "order-1@example.org"
        await wait_for(lambda: "last_uid" in next(iter(state.values.values()), ""))
    assert all("\\Seen" in line for line in await flags(dovecot))


async def test_backfill_none_takes_only_new_mail(dovecot: Dovecot) -> None:
    await deliver(dovecot, mail(1))
    sink, state = CollectingSink(), MemoryState()
    async with running(settings(dovecot, backfill="none"), sink, state) as connector:
        assert connector.follower is not None
        await asyncio.wait_for(connector.follower.synced.wait(), 5)
        await deliver(dovecot, mail(2))
        await wait_for(lambda: len(sink.envelopes) == 1, 3.0)
    assert [e.subject for e in sink.envelopes] == ["Order 2"]


async def test_killed_after_fetch_before_store_ingests_exactly_once(dovecot: Dovecot) -> None:
    await deliver(dovecot, mail(1), mail(2))
    state = MemoryState()

    class Hanging(CollectingSink):
        """Storing never finishes: the hub died between FETCH and the store's commit."""

        def __init__(self) -> None:
            super().__init__()
            self.reached = asyncio.Event()

        async def ingest(self, envelope: Any) -> Any:
            self.reached.set()
            await asyncio.Event().wait()

    hanging = Hanging()
    async with running(settings(dovecot), hanging, state):
        await asyncio.wait_for(hanging.reached.wait(), 5)
    assert all("\\Seen" not in line for line in await flags(dovecot))  # nothing acknowledged

    # the restart finds both again; a second restart after storing finds nothing new
    sink = CollectingSink()
    async with running(settings(dovecot), sink, state):
        await wait_for(lambda: len(sink.envelopes) == 2)
    assert all("\\Seen" in line for line in await flags(dovecot))
    async with running(settings(dovecot), sink, state) as connector:
        assert connector.follower is not None
        await asyncio.wait_for(connector.follower.synced.wait(), 5)
    assert len(sink.envelopes) == 2 and sink.duplicates == 0


async def test_stored_but_not_acknowledged_is_a_harmless_duplicate(dovecot: Dovecot) -> None:
    await deliver(dovecot, mail(1))
    sink = CollectingSink()
    # the first run stored the mail, then died before \Seen and before saving its position
    async with running(settings(dovecot), sink, MemoryState()):
        await wait_for(lambda: len(sink.envelopes) == 1)
    async with imap_client(dovecot) as client:
        await client.select("INBOX")
        await client.uid("store", "1:*", "-FLAGS", r"(\Seen)")
    async with running(settings(dovecot), sink, MemoryState()):
        await wait_for(lambda: sink.duplicates == 1)
    assert len(sink.envelopes) == 1


async def test_uidvalidity_change_resyncs_without_duplicates(dovecot: Dovecot) -> None:
    async with imap_client(dovecot) as client:
        assert (await client.create("Support")).result == "OK"
    await deliver(dovecot, mail(1), mail(2), mailbox="Support")
    sink, state = CollectingSink(), MemoryState()
    async with running(settings(dovecot, mailbox="Support"), sink, state):
        await wait_for(lambda: len(sink.envelopes) == 2)
    before = dict(state.values)

    # the mailbox is rebuilt: same mail, new UIDVALIDITY, and one more mail
    async with imap_client(dovecot) as client:
        assert (await client.rename("Support", "Old")).result == "OK"
        assert (await client.create("Support")).result == "OK"
        await client.select("Old")
        assert (await client.uid("copy", "1:*", "Support")).result == "OK"
    await deliver(dovecot, mail(3), mailbox="Support")
    async with running(settings(dovecot, mailbox="Support"), sink, state):
        await wait_for(lambda: len(sink.envelopes) == 3 and sink.duplicates == 2)
        await wait_for(lambda: state.values != before)
    assert [e.subject for e in sink.envelopes] == ["Order 1", "Order 2", "Order 3"]


def _imap_children(master: int) -> list[int]:
    found = subprocess.run(
        ["pgrep", "-P", str(master), "-x", "imap"], capture_output=True, text=True, check=False
    )
    return [int(pid) for pid in found.stdout.split()]


async def test_connection_drop_reconnects_and_catches_up(dovecot: Dovecot) -> None:
    sink, state = CollectingSink(), MemoryState()
    async with running(settings(dovecot), sink, state) as connector:
        follower = connector.follower
        assert follower is not None
        await asyncio.wait_for(follower.synced.wait(), 5)
        for pid in _imap_children(dovecot.process.pid):  # the server side of our session dies
            os.kill(pid, signal.SIGKILL)
        await wait_for(lambda: connector.health() is not None, 5)
        assert "IMAP" in (connector.health() or "")
        follower.synced.clear()
        await deliver(dovecot, mail(7))  # arrives while we are away
        await wait_for(lambda: len(sink.envelopes) == 1, 10)
        await wait_for(lambda: connector.health() is None, 5)
    assert sink.envelopes[0].subject == "Order 7"


async def test_wrong_password_is_reported_not_raised(dovecot: Dovecot) -> None:
    options = settings(dovecot, password="wrong")
    async with running(options, CollectingSink(), MemoryState()) as connector:
        await wait_for(lambda: "login refused" in (connector.health() or ""), 10)


async def test_move_to_folder_after_storing(dovecot: Dovecot) -> None:
    async with imap_client(dovecot) as client:
        assert (await client.create("Done")).result == "OK"
    await deliver(dovecot, mail(1))
    sink = CollectingSink()
    async with running(settings(dovecot, move_to="Done"), sink, MemoryState()):
        await wait_for(lambda: len(sink.envelopes) == 1)
        for _ in range(100):  # moved once stored: a real server, polled
            if len(await flags(dovecot, "Done")) == 1:
                break
            await asyncio.sleep(0.05)
    assert await flags(dovecot) == []
    assert len(await flags(dovecot, "Done")) == 1


@pytest.mark.parametrize("security", ["tls", "starttls"])
async def test_tls_and_starttls(dovecot: Dovecot, security: str) -> None:
    port = dovecot.tls_port if security == "tls" else dovecot.port
    options = settings(dovecot, security=security, port=port, ca_file=str(dovecot.cert))
    sink = CollectingSink()
    await deliver(dovecot, mail(1))
    async with running(options, sink, MemoryState()) as connector:
        await wait_for(lambda: len(sink.envelopes) == 1, 10)
        assert connector.health() is None
    assert "TLS" in dovecot.log()


async def test_xoauth2_login_against_dovecots_oauth2_passdb() -> None:
    """XOAUTH2 as Gmail/Microsoft 365 use it, against Dovecot checking tokens with a loopback
    RFC 7662 introspection endpoint."""
    asked: list[str] = []

    async def introspect(request: web.Request) -> web.Response:
        token = (await request.post()).get("token", "")
        asked.append(str(token))
        if token == "valid-access-token":
            return web.json_response({"active": "true", "username": USER})
        return web.json_response({"active": "false"})

    app = web.Application()
    app.router.add_post("/introspect", introspect)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        with running_dovecot(f"http://127.0.0.1:{port}/introspect") as server:
            await deliver(server, mail(1))
            good = settings(server, password=None, oauth2_token="valid-access-token")
            sink = CollectingSink()
            async with running(good, sink, MemoryState()) as connector:
                await wait_for(lambda: len(sink.envelopes) == 1, 10)
                assert connector.health() is None
            assert "valid-access-token" in asked
            expired = settings(server, password=None, oauth2_token="expired-token")
            async with running(expired, CollectingSink(), MemoryState()) as connector:
                await wait_for(lambda: "login refused" in (connector.health() or ""), 10)
    finally:
        await runner.cleanup()
