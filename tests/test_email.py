"""Email through the whole hub: Dovecot in, agent console, aiosmtpd relay out, and back."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import aiosmtplib
import pytest
from sqlalchemy import select

from connectors.email import EmailConnector
from connectors.shared.mail.settings import ImapSettings
from hub.envelope import decode_envelope
from hub.keys import CONNECTORS
from hub.store.schema import conversations, events, messages
from tests.conftest import AGENT_PASSWORD, make_settings
from tests.dovecot import Dovecot, running_dovecot
from tests.helpers import agent_client, client_id, login, running_hub
from tests.smtp_sink import Relay, running_relay
from tests.test_email_imap import deliver, flags, mail

pytestmark = pytest.mark.integration


@pytest.fixture
def dovecot() -> Any:
    with running_dovecot() as server:
        yield server


def hub_settings(
    store_url: str, root: Path, relay: Relay, server: Dovecot | None, **extra: Any
) -> Any:
    email: dict[str, Any] = {
        "address": "support@example.com",
        "display_name": "Example Support",
        "parse_workers": 1,
        "smtp": {"host": "127.0.0.1", "port": relay.port, "security": "none"},
        "smtp_in": {"host": "127.0.0.1", "port": 0, "recipients": ["support@example.com"]},
        **extra,
    }
    if server is not None:
        email["imap"] = {
            "host": server.host,
            "port": server.port,
            "security": "none",
            "username": server.user,
            "password": server.password,
            "backfill": "all",
            "reconnect_max": 2,
        }
    return make_settings(
        store_url, root, channels=[{"name": "support", "type": "email", "settings": email}]
    )


def connector(hub: Any) -> EmailConnector:
    found = hub.app[CONNECTORS]["support"]
    assert isinstance(found, EmailConnector)
    return found


async def accept(agent: Any) -> dict[str, Any]:
    offer = await agent.expect("offer")
    await agent.send(type="accept", conversation_id=offer["conversation_id"])
    return dict((await agent.expect("conversation"))["conversation"])


async def reply(agent: Any, conversation_id: str, text: str) -> str:
    key = client_id()
    await agent.send(type="reply", conversation_id=conversation_id, client_id=key, text=text)
    ack = await agent.expect("reply_ack", client_id=key)
    return str(ack["message"]["id"])


async def test_imap_to_agent_reply_threads_back(
    store_url: str, tmp_path: Path, dovecot: Dovecot
) -> None:
    async with running_relay() as relay:
        settings = hub_settings(store_url, tmp_path, relay, dovecot)
        async with running_hub(settings) as hub:
            token = await login(hub, "alice", AGENT_PASSWORD)
            async with agent_client(hub, token) as (agent, _):
                await deliver(dovecot, mail(1))
                conversation = await accept(agent)
                assert conversation["channel"] == "email"
                [first] = conversation["messages"]
                assert first["text"].strip() == "Where is order 1?"
                assert all("\\Seen" in line for line in await flags(dovecot))

                message_id = await reply(agent, conversation["id"], "It ships today.\nBye")
                [sent] = await relay.wait(1)
                assert (await agent.expect("delivery", message_id=message_id))["status"] in {
                    "queued",
                    "sent",
                }
                assert sent["To"] == "Customer 1 <customer1@example.org>"
                assert sent["From"] == "Example Support <support@example.com>"
                assert sent["Subject"] == "Re: Order 1"
                assert sent["In-Reply-To"] == "<order-1@example.org>"
                assert "<order-1@example.org>" in sent["References"]
                ours = str(sent["Message-ID"]).strip().strip("<>")
                assert ours.startswith("ch.") and ours.endswith("@example.com")
                assert sent.get_body(("plain",)).get_content().split() == [
                    "It",
                    "ships",
                    "today.",
                    "Bye",
                ]
                assert "Auto-Submitted" not in sent

                # the customer answers our mail: it lands in the same conversation
                await deliver(
                    dovecot,
                    mail(
                        2,
                        **{
                            "From": "Customer 1 <customer1@example.org>",
                            "Subject": "Re: Order 1",
                            "In-Reply-To": f"<{ours}>",
                            "References": f"<order-1@example.org> <{ours}>",
                        },
                    ),
                )
                follow_up = await agent.expect(
                    "message",
                    where=lambda frame: frame["message"]["direction"] == "inbound",
                    conversation_id=conversation["id"],
                )
                assert "order 2" in follow_up["message"]["text"]
            async with hub.store.engine.connect() as connection:
                count = len((await connection.execute(select(conversations.c.id))).all())
            assert count == 1


async def test_forged_reference_does_not_join_a_conversation(
    store_url: str, tmp_path: Path
) -> None:
    async with running_relay() as relay:
        settings = hub_settings(store_url, tmp_path, relay, None)
        async with running_hub(settings) as hub:
            port = connector(hub).receiver.port  # type: ignore[union-attr]
            await smtp(port, mail(1), "customer1@example.org", "support@example.com")
            async with hub.store.engine.connect() as connection:
                [victim] = (await connection.execute(select(conversations.c.id))).all()
            forged = f"ch.aaaaaaaaaaaaaaaa.{victim.id}.aaaaaaaaaaaaaaaa@example.com"
            await smtp(
                port,
                mail(66, **{"In-Reply-To": f"<{forged}>", "From": "attacker@evil.test"}),
                "attacker@evil.test",
                "support@example.com",
            )
            async with hub.store.engine.connect() as connection:
                rows = (await connection.execute(select(conversations.c.id))).all()
            assert len(rows) == 2  # the forged id opened its own conversation


async def test_a_stranger_quoting_a_customers_ids_gets_a_conversation_of_their_own(
    store_url: str, tmp_path: Path
) -> None:
    """Issue 14 item 7: knowing a customer's Message-ID (or holding our signed reply, say
    forwarded to them) must not let anyone else into that customer's conversation, nor make
    the agent's next answer go to them."""
    async with running_relay() as relay:
        settings = hub_settings(store_url, tmp_path, relay, None)
        async with running_hub(settings) as hub:
            port = connector(hub).receiver.port  # type: ignore[union-attr]
            token = await login(hub, "alice", AGENT_PASSWORD)
            async with agent_client(hub, token) as (agent, _):
                await smtp(port, mail(1), "customer1@example.org", "support@example.com")
                conversation = await accept(agent)
                await reply(agent, conversation["id"], "It ships today")
                [first] = await relay.wait(1)
                ours = str(first["Message-ID"]).strip().strip("<>")

                hijack = mail(
                    66,
                    **{
                        "From": "Customer 1 <attacker@evil.test>",
                        "Subject": "Re: Order 1",
                        "In-Reply-To": f"<{ours}>",
                        "References": f"<order-1@example.org> <{ours}>",
                    },
                )
                await smtp(port, hijack, "attacker@evil.test", "support@example.com")
                async with hub.store.engine.connect() as connection:
                    rows = (
                        await connection.execute(
                            select(messages.c.conversation_id, messages.c.text).where(
                                messages.c.direction == "inbound"
                            )
                        )
                    ).all()
                    refused = (
                        await connection.execute(
                            select(events.c.conversation_id, events.c.data).where(
                                events.c.kind == "thread.refused"
                            )
                        )
                    ).all()
                [stranger] = [row for row in rows if "order 66" in row.text]
                assert stranger.conversation_id != conversation["id"]
                assert [row.conversation_id for row in refused] == [conversation["id"]]
                assert refused[0].data["address"] == "attacker@evil.test"
                own = await hub.store.conversation(stranger.conversation_id)
                [note] = own.messages[0].notes
                assert f"claims to continue conversation {conversation['id']}" in note
                assert own.recipient is not None
                assert own.recipient.address == "attacker@evil.test"

                # the agent answers the customer again: it goes to the customer, not the stranger
                await reply(agent, conversation["id"], "Tracking number 123")
                second = (await relay.wait(2))[1]
                assert second["To"] == "Customer 1 <customer1@example.org>"
                assert all(
                    "evil.test" not in rcpt for _, rcpts, _ in relay.received for rcpt in rcpts
                )

                # the customer's own answer to our mail still joins the conversation
                await smtp(
                    port,
                    mail(
                        2,
                        **{
                            "From": "Customer 1 <customer1@example.org>",
                            "In-Reply-To": f"<{ours}>",
                            "References": f"<order-1@example.org> <{ours}>",
                        },
                    ),
                    "customer1@example.org",
                    "support@example.com",
                )
                async with hub.store.engine.connect() as connection:
                    joined = (
                        await connection.execute(
                            select(messages.c.conversation_id).where(
                                messages.c.text.like("%order 2%")
                            )
                        )
                    ).scalar_one()
                assert joined == conversation["id"]


async def test_two_unreadable_mails_with_the_same_body_are_both_kept(
    store_url: str, tmp_path: Path
) -> None:
    """Issue 14 item 8: an unparsed mail was keyed by its body only, so a second customer's
    mail with the same text collapsed into the first one and was lost after SMTP said 250."""
    async with running_relay() as relay:
        settings = hub_settings(store_url, tmp_path, relay, None, max_message_bytes=1024)
        async with running_hub(settings) as hub:
            port = connector(hub).receiver.port  # type: ignore[union-attr]
            body = "Please send my invoice.\r\n" * 60  # over the parser's 1 KB: not parsed
            for sender in ("anna@example.org", "ben@example.net"):
                await smtp(
                    port,
                    mail(7, **{"From": sender, "Message-ID": f"<{sender}>"}).replace(
                        b"Where is order 7?", body.encode()
                    ),
                    sender,
                    "support@example.com",
                )
            async with hub.store.engine.connect() as connection:
                rows = (
                    await connection.execute(
                        select(messages.c.text).where(messages.c.direction == "inbound")
                    )
                ).all()
            assert len(rows) == 2
            assert all("could not be read" in row.text for row in rows)


async def test_smtp_door_reads_a_mail_of_many_lines_without_per_line_work(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 14 item 8: aiosmtpd awaited every line of DATA on the event loop (3 million short
    lines: 20 s, /healthz stalled 2.4 s, ~890 MB). DATA is now read in chunks; counted here
    as line reads on the hub's stream readers, which no longer grow with the mail."""
    line_reads = 0
    readuntil = asyncio.StreamReader.readuntil

    async def counted(self: asyncio.StreamReader, separator: bytes = b"\n") -> bytes:
        nonlocal line_reads
        line_reads += 1
        return await readuntil(self, separator)

    async with running_relay() as relay:
        settings = hub_settings(store_url, tmp_path, relay, None)
        async with running_hub(settings) as hub:
            port = connector(hub).receiver.port  # type: ignore[union-attr]
            lines = "".join(f"{n}\r\n" for n in range(100_000)) + ".hidden dot\r\n"
            raw = mail(8).replace(b"Where is order 8?\r\n", lines.encode())
            monkeypatch.setattr(asyncio.StreamReader, "readuntil", counted)
            await smtp(port, raw, "customer8@example.org", "support@example.com")
            monkeypatch.undo()
            async with hub.store.engine.connect() as connection:
                text = (
                    await connection.execute(
                        select(messages.c.text).where(messages.c.direction == "inbound")
                    )
                ).scalar_one()
    assert line_reads < 20  # the SMTP commands, not the mail's 100,001 lines
    stored = text.split("\n")
    assert stored[:3] == ["0", "1", "2"] and stored[99_999] == "99999"
    assert stored[100_000] == ".hidden dot"  # dot-stuffed by the client, unstuffed by us


async def test_without_trusted_authentication_results_the_sender_is_unverified(
    store_url: str, tmp_path: Path
) -> None:
    """Issue 14 item 10: with trusted_authserv_ids set, a mail carrying no result from those
    servers was believed: here, a forged From with our genuine reply id joined the customer's
    conversation. It is unverified now, and an unverified sender never joins one."""
    checked = "mx.example.com; spf=pass smtp.mailfrom=example.org; dkim=pass; dmarc=pass"
    async with running_relay() as relay:
        settings = hub_settings(
            store_url, tmp_path, relay, None, trusted_authserv_ids=["mx.example.com"]
        )
        async with running_hub(settings) as hub:
            port = connector(hub).receiver.port  # type: ignore[union-attr]
            token = await login(hub, "alice", AGENT_PASSWORD)
            async with agent_client(hub, token) as (agent, _):
                first = mail(1, **{"Authentication-Results": checked})
                await smtp(port, first, "customer1@example.org", "support@example.com")
                conversation = await accept(agent)
                await reply(agent, conversation["id"], "It ships today")
                [sent] = await relay.wait(1)
                ours = str(sent["Message-ID"]).strip().strip("<>")
                unchecked = mail(2, **{"In-Reply-To": f"<{ours}>", "From": "customer1@example.org"})
                await smtp(port, unchecked, "customer1@example.org", "support@example.com")
                async with hub.store.engine.connect() as connection:
                    where = (
                        await connection.execute(
                            select(messages.c.conversation_id, messages.c.envelope).where(
                                messages.c.text.like("%order 2%")
                            )
                        )
                    ).one()
            assert where.conversation_id != conversation["id"]
            stored = decode_envelope(where.envelope)
            assert not stored.sender_verified
            assert stored.metadata["authentication"]["problem"].startswith("no Authentication")


async def test_smtp_in_allow_list_size_and_bounce_marks_reply_failed(
    store_url: str, tmp_path: Path
) -> None:
    async with running_relay() as relay:
        settings = hub_settings(
            store_url,
            tmp_path,
            relay,
            None,
            smtp_in={
                "host": "127.0.0.1",
                "port": 0,
                "recipients": ["@example.com"],
                "max_message_bytes": 64 * 1024,
            },
        )
        async with running_hub(settings) as hub:
            port = connector(hub).receiver.port  # type: ignore[union-attr]
            with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
                await smtp(port, mail(1), "x@example.org", "someone@elsewhere.test")
            with pytest.raises(aiosmtplib.SMTPResponseException) as too_big:
                await smtp(
                    port, mail(1) + b"x" * (70 * 1024), "x@example.org", "support@example.com"
                )
            assert too_big.value.code == 552

            token = await login(hub, "alice", AGENT_PASSWORD)
            async with agent_client(hub, token) as (agent, _):
                await smtp(port, mail(1), "customer1@example.org", "support@example.com")
                conversation = await accept(agent)
                message_id = await reply(agent, conversation["id"], "Here you go")
                [sent] = await relay.wait(1)
                ours = str(sent["Message-ID"]).strip().strip("<>")
                bounce = dsn(ours, "customer1@example.org")
                await smtp(port, bounce, "mailer-daemon@mx.example.org", "support@example.com")
                while True:
                    update = await agent.expect("delivery", message_id=message_id)
                    if update["status"] == "failed":
                        break
                assert "5.1.1" in (update.get("error") or "")
                notice = await agent.expect(
                    "message",
                    where=lambda frame: frame["message"]["direction"] == "inbound",
                    conversation_id=conversation["id"],
                )
                assert "could not be delivered" in notice["message"]["text"]
            async with hub.store.engine.connect() as connection:
                stored = (
                    await connection.execute(
                        select(messages.c.delivery_status).where(messages.c.id == message_id)
                    )
                ).scalar_one()
            assert stored == "failed"
            assert len(relay.received) == 1  # no auto-reply to the bounce, nothing twice


async def test_relay_refusal_is_shown_to_the_agent(store_url: str, tmp_path: Path) -> None:
    async with running_relay() as relay:
        settings = hub_settings(store_url, tmp_path, relay, None)
        async with running_hub(settings) as hub:
            port = connector(hub).receiver.port  # type: ignore[union-attr]
            token = await login(hub, "alice", AGENT_PASSWORD)
            async with agent_client(hub, token) as (agent, _):
                await smtp(port, mail(1), "customer1@example.org", "support@example.com")
                conversation = await accept(agent)
                relay.answer = ["550 5.1.1 mailbox unknown"]
                message_id = await reply(agent, conversation["id"], "Hello")
                while True:
                    update = await agent.expect("delivery", message_id=message_id)
                    if update["status"] == "failed":
                        break
                assert "smtp_550" in update["error"] and "mailbox unknown" in update["error"]
            assert relay.received == []


async def test_readyz_reports_an_unreachable_mailbox(store_url: str, tmp_path: Path) -> None:
    async with running_relay() as relay:
        settings = hub_settings(store_url, tmp_path, relay, None)
        email = settings.channels[0].settings
        broken = email.model_copy(
            update={
                "imap": email.smtp_in
                and ImapSettings(
                    host="127.0.0.1",
                    port=1,
                    security="none",
                    username="u",
                    password="p",
                    reconnect_max=1,
                )
            }
        )
        settings = settings.model_copy(
            update={"channels": [settings.channels[0].model_copy(update={"settings": broken})]}
        )
        async with running_hub(settings) as hub, aiohttp.ClientSession() as session:
            for _ in range(50):
                async with session.get(f"{hub.url}/readyz") as response:
                    body = await response.json()
                if body["status"] == "degraded":
                    break
                await asyncio.sleep(0.1)
            assert response.status == 200
            assert body["status"] == "degraded"
            assert "IMAP" in body["channels"]["support"]


async def smtp(port: int, raw: bytes, sender: str, recipient: str) -> None:
    """Hand ``raw`` to the hub's SMTP server as a mail client would."""
    await aiosmtplib.send(
        raw, sender=sender, recipients=[recipient], hostname="127.0.0.1", port=port
    )


def dsn(original_id: str, recipient: str) -> bytes:
    """A delivery status notification as Postfix writes it (RFC 3464)."""
    return (
        "From: MAILER-DAEMON@mx.example.org (Mail Delivery System)\r\n"
        "To: support@example.com\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Message-ID: <bounce-1@mx.example.org>\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n'
        "\r\n--B\r\nContent-Type: text/plain\r\n\r\n"
        "This is the mail system. Your message could not be delivered.\r\n"
        "\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.org\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\n"
        "Action: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n"
        "\r\n--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: support@example.com\r\nTo: {recipient}\r\nSubject: Re: Order 1\r\n"
        f"Message-ID: <{original_id}>\r\n"
        "\r\n--B--\r\n"
    ).encode()
