"""SMS/WhatsApp end to end: the real hub, a loopback Twilio (REST API, media, signed webhooks).

Every test runs on SQLite and PostgreSQL. Webhooks are signed with the Twilio SDK's
RequestValidator over the public URL the hub is configured with, as Twilio signs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from email.utils import formatdate
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select, update

from hub.keys import OUTBOX
from hub.store.schema import messages, opt_outs, outbox
from tests.conftest import AGENT_PASSWORD, make_settings
from tests.fake_twilio import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    FROM_NUMBER,
    FakeTwilio,
    fake_twilio,
    inbound_fields,
    post_signed,
)
from tests.helpers import Clock, agent_client, client_id, hub_store, login, running_hub

pytestmark = pytest.mark.integration

PUBLIC = "https://hub.example.com"
INBOUND = "/channels/sms/inbound"
STATUS = "/channels/sms/status"
TEMPLATE_SID = "HX" + "5" * 32


def sms_settings(store_url: str, root: Path, fake: FakeTwilio, **extra: Any) -> Any:
    settings: dict[str, Any] = {
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "from": FROM_NUMBER,
        "public_url": PUBLIC,
        "api_base_url": fake.url,
        "media_hosts": ["127.0.0.1"],
        "media_allow_private": True,
        "send_timeout": 2,
        "whatsapp_templates": {
            "order_update": {
                "content_sid": TEMPLATE_SID,
                "body": "Hello {{1}}, about your order {{2}}: please reply to continue.",
                "variables": ["name", "order"],
            }
        },
    }
    settings.update(extra)
    return make_settings(
        store_url,
        root,
        channels=[{"name": "sms", "type": "sms", "settings": settings}],
    )


async def _count(hub: Any, table: Any, *where: Any) -> int:
    async with hub.store.engine.connect() as connection:
        query = select(func.count()).select_from(table)
        for clause in where:
            query = query.where(clause)
        return int((await connection.execute(query)).scalar_one())


async def _inbound(session: aiohttp.ClientSession, hub: Any, fields: dict[str, str]) -> None:
    status, text = await post_signed(session, hub.url, PUBLIC, INBOUND, fields)
    assert status == 200, text
    assert text == '<?xml version="1.0" encoding="UTF-8"?><Response/>'


async def _status(
    session: aiohttp.ClientSession, hub: Any, sid: str, status: str, **extra: str
) -> None:
    fields = {
        "AccountSid": ACCOUNT_SID,
        "MessageSid": sid,
        "SmsSid": sid,
        "MessageStatus": status,
        "SmsStatus": status,
        "From": FROM_NUMBER,
        "To": "+4915112345678",
        "ApiVersion": "2010-04-01",
        **extra,
    }
    code, text = await post_signed(session, hub.url, PUBLIC, STATUS, fields)
    assert code == 200, text


async def _accept(agent: Any) -> dict[str, Any]:
    offer = await agent.expect("offer")
    await agent.send(type="accept", conversation_id=offer["conversation_id"])
    return dict((await agent.expect("conversation"))["conversation"])


async def test_sms_round_trip_with_media_and_delivery_reports(
    store_url: str, tmp_path: Path
) -> None:
    async with fake_twilio() as fake:
        settings = sms_settings(store_url, tmp_path, fake)
        async with running_hub(settings) as hub, aiohttp.ClientSession() as session:
            token = await login(hub, "alice", AGENT_PASSWORD)
            async with agent_client(hub, token) as (agent, _):
                fields = inbound_fields(media=[fake.media_url()])
                await _inbound(session, hub, fields)
                conversation = await _accept(agent)
                assert conversation["channel"] == "sms"
                [message] = conversation["messages"]
                assert message["text"] == "Hello, where is my order?"
                [attachment] = message["attachments"]
                assert attachment["content_type"] == "image/png" and attachment["size"] > 0
                assert conversation["compose"]["mode"] == "text"
                assert fake.media_hits == 1

                # the agent sees what the draft costs before sending
                draft = "Ihre Bestellung ist unterwegs \u2013 Lieferung morgen. 😀"
                await agent.send(type="preview", conversation_id=conversation["id"], text=draft)
                preview = await agent.expect("preview")
                assert preview["encoding"] == "UCS-2" and preview["segments"] == 1
                assert "😀" in preview["unicode_characters"]

                reply = client_id()
                await agent.send(
                    type="reply",
                    conversation_id=conversation["id"],
                    client_id=reply,
                    text="It ships today.",
                )
                ack = await agent.expect("reply_ack", client_id=reply)
                message_id = ack["message"]["id"]
                queued = await agent.expect("delivery", message_id=message_id)
                assert queued["status"] == "queued"
                [sent] = fake.created
                assert sent["To"] == "+4915112345678" and sent["From"] == FROM_NUMBER
                assert sent["Body"] == "It ships today."
                assert sent["StatusCallback"] == f"{PUBLIC}{STATUS}"
                sid = fake.resources[0]["sid"]

                await _status(session, hub, sid, "sent")
                assert (await agent.expect("delivery", message_id=message_id))["status"] == "sent"
                await _status(session, hub, sid, "delivered")
                delivered = await agent.expect("delivery", message_id=message_id)
                assert delivered["status"] == "delivered"
                # a late "sent" never moves it backwards
                await _status(session, hub, sid, "sent")
                await agent.nothing("delivery", within=0.3)
                async with hub.store.engine.connect() as connection:
                    status = (
                        await connection.execute(
                            select(messages.c.delivery_status).where(messages.c.id == message_id)
                        )
                    ).scalar_one()
                assert status == "delivered"
                assert len(fake.created) == 1


async def test_failed_report_shows_a_readable_reason(store_url: str, tmp_path: Path) -> None:
    async with fake_twilio() as fake:
        settings = sms_settings(store_url, tmp_path, fake)
        async with running_hub(settings) as hub, aiohttp.ClientSession() as session:
            token = await login(hub, "alice", AGENT_PASSWORD)
            async with agent_client(hub, token) as (agent, _):
                await _inbound(session, hub, inbound_fields())
                conversation = await _accept(agent)
                reply = client_id()
                await agent.send(
                    type="reply", conversation_id=conversation["id"], client_id=reply, text="Hi"
                )
                ack = await agent.expect("reply_ack", client_id=reply)
                await agent.expect("delivery", message_id=ack["message"]["id"], status="queued")
                await _status(
                    session, hub, fake.resources[0]["sid"], "undelivered", ErrorCode="30006"
                )
                report = await agent.expect("delivery", message_id=ack["message"]["id"])
                assert report["status"] == "undelivered"
                assert report["error"].startswith("30006: ")
                assert "landline" in report["error"]


async def test_forged_missing_and_misdirected_signatures_store_and_fetch_nothing(
    store_url: str, tmp_path: Path
) -> None:
    async with fake_twilio() as fake:
        settings = sms_settings(store_url, tmp_path, fake)
        async with running_hub(settings) as hub, aiohttp.ClientSession() as session:
            fields = inbound_fields(media=[fake.media_url()])
            # signed with another token
            status, _ = await post_signed(
                session, hub.url, PUBLIC, INBOUND, fields, token="not-the-token-0123456789"
            )
            assert status == 403
            # signed for another URL (the hub's own address instead of its public one)
            status, _ = await post_signed(session, hub.url, hub.url, INBOUND, fields)
            assert status == 403
            # a field changed after signing
            async with session.post(
                hub.url + INBOUND,
                data={**fields, "Body": "changed"},
                headers={"X-Twilio-Signature": "AAAA"},
            ) as response:
                assert response.status == 403
            # no signature
            async with session.post(hub.url + INBOUND, data=fields) as response:
                assert response.status == 403
            # a forged status report changes nothing either
            async with session.post(
                hub.url + STATUS, data={"MessageSid": "SM1", "MessageStatus": "delivered"}
            ) as response:
                assert response.status == 403
            assert await _count(hub, messages) == 0
            assert fake.media_hits == 0


async def test_size_and_content_type_limits(store_url: str, tmp_path: Path) -> None:
    async with fake_twilio() as fake:
        settings = sms_settings(store_url, tmp_path, fake, max_body_bytes=2048)
        async with running_hub(settings) as hub, aiohttp.ClientSession() as session:
            status, _ = await post_signed(
                session, hub.url, PUBLIC, INBOUND, inbound_fields(body="x" * 5000)
            )
            assert status == 413
            async with session.post(
                hub.url + INBOUND,
                data=b"<xml/>",
                headers={"Content-Type": "text/xml", "X-Twilio-Signature": "x"},
            ) as response:
                assert response.status == 415
            assert await _count(hub, messages) == 0


async def test_replayed_and_concurrent_duplicates_create_one_message(
    store_url: str, tmp_path: Path
) -> None:
    async with fake_twilio() as fake:
        settings = sms_settings(store_url, tmp_path, fake)
        async with running_hub(settings) as hub, aiohttp.ClientSession() as session:
            fields = inbound_fields(media=[fake.media_url()])
            results = await asyncio.gather(
                *(post_signed(session, hub.url, PUBLIC, INBOUND, fields) for _ in range(8))
            )
            assert [status for status, _ in results] == [200] * 8
            await _inbound(session, hub, fields)  # a replay later
            assert await _count(hub, messages) == 1
            assert fake.media_hits == 1  # concurrent copies waited for the first


async def test_media_ssrf_urls_are_never_fetched(store_url: str, tmp_path: Path) -> None:
    async with fake_twilio() as fake:
        port = fake.url.rsplit(":", 1)[1]
        # no private addresses allowed (the default): loopback, metadata and files are refused
        settings = sms_settings(
            store_url,
            tmp_path,
            fake,
            media_hosts=["api.twilio.com", "localhost"],
            media_allow_private=False,
        )
        hostile = [
            fake.media_url(),  # 127.0.0.1: not on the list, and private
            f"http://localhost:{port}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/MM1/Media/ME1",
            f"https://localhost:{port}/cdn/x",  # on the list, but resolves to loopback
            "http://169.254.169.254/latest/meta-data/",
            "file:///etc/passwd",
            "https://[::ffff:127.0.0.1]/x",
        ]
        async with running_hub(settings) as hub, aiohttp.ClientSession() as session:
            await _inbound(session, hub, inbound_fields(media=hostile))
            async with hub.store.engine.connect() as connection:
                envelope = (await connection.execute(select(messages.c.envelope))).scalar_one()
            stored = json.loads(envelope)
            assert stored["attachments"] == []
            problems = stored["metadata"]["media_problems"]
            assert len(problems) == len(hostile)
            assert all("refused" in problem or "error" in problem for problem in problems)
            assert fake.media_hits == 0 and fake.cdn_hits == 0


async def test_media_redirects_are_rechecked_and_lose_credentials(
    store_url: str, tmp_path: Path
) -> None:
    async with fake_twilio() as fake:
        port = fake.url.rsplit(":", 1)[1]
        settings = sms_settings(store_url, tmp_path, fake, media_hosts=["127.0.0.1", "localhost"])
        async with running_hub(settings) as hub, aiohttp.ClientSession() as session:
            # a redirect to an allowed host: followed, without the account's credentials
            await _inbound(session, hub, inbound_fields(media=[fake.media_url("redirect")]))
            assert fake.cdn_hits == 1 and fake.cdn_saw_credentials is False
            # a redirect to a host that is not on the list: not followed
            away = f"http://127.0.0.2:{port}/cdn/evil"
            await _inbound(
                session, hub, inbound_fields(media=[fake.media_url("redirect") + f"?to={away}"])
            )
            assert fake.cdn_hits == 1
            assert await _count(hub, messages) == 2


async def test_stop_opts_out_until_start(store_url: str, tmp_path: Path) -> None:
    async with fake_twilio() as fake:
        settings = sms_settings(store_url, tmp_path, fake)
        async with running_hub(settings) as hub, aiohttp.ClientSession() as session:
            token = await login(hub, "alice", AGENT_PASSWORD)
            async with agent_client(hub, token) as (agent, _):
                await _inbound(session, hub, inbound_fields(body="Where is my parcel?"))
                conversation = await _accept(agent)
                await _inbound(session, hub, inbound_fields(body="Stop"))
                await agent.expect("message")
                assert await _count(hub, opt_outs) == 1
                await agent.send(type="open", conversation_id=conversation["id"])
                opened = (await agent.expect("conversation"))["conversation"]
                assert opened["compose"]["mode"] == "blocked"
                refused = client_id()
                await agent.send(
                    type="reply", conversation_id=conversation["id"], client_id=refused, text="?"
                )
                error = await agent.expect("error", ref=refused)
                assert error["code"] == "opted_out"
                assert fake.created == []

                await _inbound(session, hub, inbound_fields(body="START"))
                await agent.expect("message")
                assert await _count(hub, opt_outs) == 0
                allowed = client_id()
                await agent.send(
                    type="reply",
                    conversation_id=conversation["id"],
                    client_id=allowed,
                    text="Welcome back",
                )
                ack = await agent.expect("reply_ack", client_id=allowed)
                await agent.expect("delivery", message_id=ack["message"]["id"], status="queued")
                assert [m["Body"] for m in fake.created] == ["Welcome back"]


async def test_outbox_refuses_an_opted_out_number(store_url: str, tmp_path: Path) -> None:
    """A reply queued before the STOP arrived is not sent either."""
    async with fake_twilio() as fake:
        fake.script = [(503, 20500, "Service Unavailable")]  # keeps the reply pending
        settings = sms_settings(store_url, tmp_path, fake)
        async with running_hub(settings) as hub, aiohttp.ClientSession() as session:
            token = await login(hub, "alice", AGENT_PASSWORD)
            async with agent_client(hub, token) as (agent, _):
                await _inbound(session, hub, inbound_fields())
                conversation = await _accept(agent)
                reply = client_id()
                await agent.send(
                    type="reply", conversation_id=conversation["id"], client_id=reply, text="Hi"
                )
                ack = await agent.expect("reply_ack", client_id=reply)
                await agent.expect("delivery", message_id=ack["message"]["id"], status="queued")
                await _inbound(session, hub, inbound_fields(body="STOP"))
                failed = await agent.expect(
                    "delivery", timeout=6, message_id=ack["message"]["id"], status="failed"
                )
                assert failed["error"].startswith("opted_out: the customer opted out")
                assert fake.created == []


async def test_whatsapp_window_and_templates(store_url: str, tmp_path: Path) -> None:
    async with fake_twilio() as fake:
        settings = sms_settings(store_url, tmp_path, fake)
        async with running_hub(settings) as hub, aiohttp.ClientSession() as session:
            token = await login(hub, "alice", AGENT_PASSWORD)
            async with agent_client(hub, token) as (agent, _):
                await _inbound(session, hub, inbound_fields(sender="whatsapp:+4915112345678"))
                conversation = await _accept(agent)
                assert conversation["channel"] == "whatsapp"
                compose = conversation["compose"]
                assert compose["mode"] == "text" and compose["window_closes_at"] is not None
                assert [t["name"] for t in compose["templates"]] == ["order_update"]
                inside = client_id()
                await agent.send(
                    type="reply", conversation_id=conversation["id"], client_id=inside, text="Hi!"
                )
                await agent.expect("reply_ack", client_id=inside)
                await agent.expect("delivery", status="queued")
                assert fake.created[-1]["To"] == "whatsapp:+4915112345678"
                assert fake.created[-1]["From"] == f"whatsapp:{FROM_NUMBER}"

                # 25 hours later the window is closed: free text is refused, a template goes
                async with hub.store.engine.begin() as connection:
                    await connection.execute(
                        update(messages)
                        .where(messages.c.direction == "inbound")
                        .values(created_at=messages.c.created_at - 25 * 3600)
                    )
                await agent.send(type="open", conversation_id=conversation["id"])
                opened = (await agent.expect("conversation"))["conversation"]
                assert opened["compose"]["mode"] == "template"
                assert "24 hours" in opened["compose"]["reason"]
                outside = client_id()
                await agent.send(
                    type="reply", conversation_id=conversation["id"], client_id=outside, text="Hi"
                )
                assert (await agent.expect("error", ref=outside))["code"] == "template_required"
                incomplete = client_id()
                await agent.send(
                    type="reply",
                    conversation_id=conversation["id"],
                    client_id=incomplete,
                    template="order_update",
                    variables={"name": "Carla"},
                )
                error = await agent.expect("error", ref=incomplete)
                assert error["code"] == "bad_template" and "order" in error["message"]
                templated = client_id()
                await agent.send(
                    type="reply",
                    conversation_id=conversation["id"],
                    client_id=templated,
                    template="order_update",
                    variables={"name": "Carla", "order": "{{2}} 4711"},
                )
                ack = await agent.expect("reply_ack", client_id=templated)
                assert ack["message"]["text"] == (
                    "Hello Carla, about your order {{2}} 4711: please reply to continue."
                )
                await agent.expect("delivery", message_id=ack["message"]["id"], status="queued")
                sent = fake.created[-1]
                assert sent["ContentSid"] == TEMPLATE_SID and "Body" not in sent
                assert json.loads(sent["ContentVariables"]) == {"1": "Carla", "2": "{{2}} 4711"}


async def test_rate_limit_is_retried_and_bad_request_is_not(store_url: str, tmp_path: Path) -> None:
    async with fake_twilio() as fake:
        fake.script = [(429, 20429, "Too Many Requests")]
        settings = sms_settings(store_url, tmp_path, fake)
        clock = Clock()
        async with (
            running_hub(settings, clock=clock) as hub,
            aiohttp.ClientSession() as session,
        ):
            token = await login(hub, "alice", AGENT_PASSWORD)
            async with agent_client(hub, token) as (agent, _):
                await _inbound(session, hub, inbound_fields())
                conversation = await _accept(agent)
                first = client_id()
                await agent.send(
                    type="reply", conversation_id=conversation["id"], client_id=first, text="One"
                )
                ack = await agent.expect("reply_ack", client_id=first)
                # the 429 is recorded with its retry time (2 s of backoff) …
                await agent.expect("delivery", message_id=ack["message"]["id"], status="queued")
                assert fake.created == []
                clock.advance(2)  # … which has now come: the retry succeeds, once
                row = await _outbox_row(hub, ack["message"]["id"])
                assert (row.status, row.attempts) == ("sent", 2)
                assert [m["Body"] for m in fake.created] == ["One"]

                fake.script = [(400, 21211, "The 'To' number +4915112345678 is not valid.")]
                second = client_id()
                await agent.send(
                    type="reply", conversation_id=conversation["id"], client_id=second, text="Two"
                )
                ack = await agent.expect("reply_ack", client_id=second)
                failed = await agent.expect(
                    "delivery", message_id=ack["message"]["id"], status="failed"
                )
                assert failed["error"] and "21211" in failed["error"]
                # failed for good: nothing is due, however long after the longest backoff
                clock.advance(600)
                assert await hub.store.due_outbox() == []
                assert [m["Body"] for m in fake.created] == ["One"]
                async with hub.store.engine.connect() as connection:
                    row = (
                        await connection.execute(
                            select(outbox.c.status, outbox.c.attempts).where(
                                outbox.c.message_id == ack["message"]["id"]
                            )
                        )
                    ).one()
                assert tuple(row) == ("failed", 1)


async def test_a_lost_answer_never_sends_twice(store_url: str, tmp_path: Path) -> None:
    """Twilio created the message but its answer never arrived: the retry finds it."""
    async with fake_twilio() as fake:
        lost = fake.hold_answers = asyncio.Event()  # answered only after the send timed out (2 s)
        settings = sms_settings(store_url, tmp_path, fake)
        clock = Clock()
        async with (
            running_hub(settings, clock=clock) as hub,
            aiohttp.ClientSession() as session,
        ):
            token = await login(hub, "alice", AGENT_PASSWORD)
            async with agent_client(hub, token) as (agent, _):
                await _inbound(session, hub, inbound_fields())
                conversation = await _accept(agent)
                reply = client_id()
                await agent.send(
                    type="reply", conversation_id=conversation["id"], client_id=reply, text="Once"
                )
                ack = await agent.expect("reply_ack", client_id=reply)
                message_id = ack["message"]["id"]
                try:
                    # the first create reached the provider, its answer is lost: the attempt
                    # times out and is recorded with its retry time …
                    await agent.expect("delivery", message_id=message_id, status="queued")
                    assert len(fake.created) == 1
                    fake.hold_answers = None  # … the retry's answer is not lost
                    clock.advance(2)
                    row = await _outbox_row(hub, message_id)
                finally:
                    lost.set()
                assert tuple(row) == ("sent", 2, fake.resources[0]["sid"])
                assert [m["Body"] for m in fake.created] == ["Once"]


async def test_a_report_faster_than_the_send_is_applied_once_recorded(
    store_url: str, tmp_path: Path
) -> None:
    async with fake_twilio() as fake:
        settings = sms_settings(store_url, tmp_path, fake)
        async with running_hub(settings) as hub, aiohttp.ClientSession() as session:
            fake.report_first = (hub.url, PUBLIC)
            token = await login(hub, "alice", AGENT_PASSWORD)
            async with agent_client(hub, token) as (agent, _):
                await _inbound(session, hub, inbound_fields())
                conversation = await _accept(agent)
                reply = client_id()
                await agent.send(
                    type="reply", conversation_id=conversation["id"], client_id=reply, text="Fast"
                )
                ack = await agent.expect("reply_ack", client_id=reply)
                first = await agent.expect("delivery", message_id=ack["message"]["id"])
                second = await agent.expect("delivery", message_id=ack["message"]["id"])
                # in this order, so the console ends on the provider's newer report
                assert (first["status"], second["status"]) == ("queued", "sent")


async def _outbox_row(hub: Any, message_id: str, status: str = "sent") -> Any:
    """The outbox row and provider id of a reply, once it reached ``status``."""
    async with hub.store.engine.connect() as connection:
        for _ in range(150):
            row = (
                await connection.execute(
                    select(outbox.c.status, outbox.c.attempts, messages.c.provider_id)
                    .join(messages, messages.c.id == outbox.c.message_id)
                    .where(outbox.c.message_id == message_id)
                )
            ).one()
            if row.status == status:
                return row
            await asyncio.sleep(0.1)
    return row


@pytest.mark.parametrize("first_sent_earlier", [True, False], ids=["minute_apart", "at_once"])
async def test_the_same_text_twice_is_sent_twice(
    store_url: str, tmp_path: Path, first_sent_earlier: bool
) -> None:
    """Issue 14, item 1: the second "Thanks" fails once (503); its retry must not take the
    first "Thanks" (same number, same text) for its own earlier attempt. A minute apart, the
    first is older than the second's first attempt and is not considered (2 attempts); sent
    within the same second it is found, the store refuses its id for a second reply, and the
    send is made again without it (3 attempts)."""
    async with fake_twilio() as fake:
        settings = sms_settings(store_url, tmp_path, fake)
        async with running_hub(settings) as hub, aiohttp.ClientSession() as session:
            token = await login(hub, "alice", AGENT_PASSWORD)
            async with agent_client(hub, token) as (agent, _):
                await _inbound(session, hub, inbound_fields())
                conversation = await _accept(agent)
                first = client_id()
                await agent.send(
                    type="reply", conversation_id=conversation["id"], client_id=first, text="Thanks"
                )
                one = (await agent.expect("reply_ack", client_id=first))["message"]["id"]
                assert (await _outbox_row(hub, one)).status == "sent"
                if first_sent_earlier:
                    fake.resources[0]["date_created"] = formatdate(time.time() - 60)
                fake.script = [(503, 20503, "Service Unavailable")]
                second = client_id()
                await agent.send(
                    type="reply",
                    conversation_id=conversation["id"],
                    client_id=second,
                    text="Thanks",
                )
                two = (await agent.expect("reply_ack", client_id=second))["message"]["id"]
                row = await _outbox_row(hub, two)
                assert (row.status, row.attempts) == ("sent", 2 if first_sent_earlier else 3)
                assert [m["Body"] for m in fake.created] == ["Thanks", "Thanks"]
                assert row.provider_id == fake.resources[1]["sid"]
                assert (await _outbox_row(hub, one)).provider_id == fake.resources[0]["sid"]


async def test_a_reply_being_sent_at_shutdown_is_finished_and_recorded(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 14, item 3: SIGTERM while Twilio holds a create (the message exists, the answer
    is on its way): the send completes and is recorded as sent before the hub exits."""
    async with fake_twilio() as fake, contextlib.AsyncExitStack() as stack:
        held = fake.hold_answers = asyncio.Event()
        settings = sms_settings(store_url, tmp_path, fake)
        hub = await stack.enter_async_context(running_hub(settings))
        session = await stack.enter_async_context(aiohttp.ClientSession())
        token = await login(hub, "alice", AGENT_PASSWORD)
        try:
            async with agent_client(hub, token) as (agent, _):
                await _inbound(session, hub, inbound_fields())
                conversation = await _accept(agent)
                reply = client_id()
                await agent.send(
                    type="reply", conversation_id=conversation["id"], client_id=reply, text="Bye"
                )
                message_id = (await agent.expect("reply_ack", client_id=reply))["message"]["id"]
                for _ in range(250):  # the create has reached Twilio; its answer is held
                    if fake.created:
                        break
                    await asyncio.sleep(0.02)
                assert fake.created
                worker = hub.app[OUTBOX]
                stop = worker.stop

                async def stopping(grace: float = 10.0) -> None:
                    held.set()  # the answer arrives once the hub has begun to shut down
                    await stop(grace=grace)

                monkeypatch.setattr(worker, "stop", stopping)
                await stack.aclose()  # the hub shuts down as on SIGTERM (runner.cleanup)
        finally:
            held.set()
        store = hub_store(store_url)
        try:
            async with store.engine.connect() as connection:
                row = (
                    await connection.execute(
                        select(outbox.c.status, outbox.c.attempts, messages.c.provider_id)
                        .join(messages, messages.c.id == outbox.c.message_id)
                        .where(outbox.c.message_id == message_id)
                    )
                ).one()
        finally:
            await store.engine.dispose()
        assert tuple(row) == ("sent", 1, fake.resources[0]["sid"])
        assert [m["Body"] for m in fake.created] == ["Bye"]
