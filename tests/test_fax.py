"""Fax through the whole hub: loopback Sinch and Telnyx (webhooks, REST API, media), fax-to-email
through the hub's SMTP server and email-to-fax through an aiosmtpd relay, OCR by tesseract.

Every test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import msgspec
import pypdf
import pytest
from sqlalchemy import func, select

from hub.envelope import Envelope
from hub.keys import CONNECTORS
from hub.store.schema import attachments, connector_state, messages
from tests.conftest import AGENT_PASSWORD, make_settings
from tests.fake_fax import (
    CONNECTION,
    CUSTOMER,
    HOOK_PASSWORD,
    HOOK_USER,
    KEY_ID,
    KEY_SECRET,
    OUR_NUMBER,
    PROJECT,
    TELNYX_KEY,
    FakeSinch,
    FakeTelnyx,
    basic,
    fake_sinch,
    fake_telnyx,
    sinch_fax,
    sinch_webhook,
    status_event,
    telnyx_webhook,
)
from tests.fax_samples import ORDER, g4_pdf, g4_tiff, pdf_bomb, pixel_heavy_pdf, require_ocr
from tests.helpers import Clock, agent_client, client_id, login, running_hub
from tests.smtp_sink import running_relay
from tests.test_email import smtp

pytestmark = pytest.mark.integration

PUBLIC = "https://hub.example.com"
WEBHOOK = "/channels/fax/webhook"


def fax_settings(
    store_url: str, root: Path, gateway: str, block: dict[str, Any], **extra: Any
) -> Any:
    settings: dict[str, Any] = {
        "gateway": gateway,
        "number": OUR_NUMBER,
        gateway: block,
        "public_url": PUBLIC,
        "ocr": {"languages": "deu", "timeout": 30, "workers": 1},
        "letter": {"company": "Beispiel GmbH", "header_lines": ["Hauptstraße 1, 10115 Berlin"]},
        **extra,
    }
    return make_settings(
        store_url, root, channels=[{"name": "fax", "type": "fax", "settings": settings}]
    )


def sinch_block(fake: FakeSinch, **extra: Any) -> dict[str, Any]:
    return {
        "project_id": PROJECT,
        "key_id": KEY_ID,
        "key_secret": KEY_SECRET,
        "webhook_username": HOOK_USER,
        "webhook_password": HOOK_PASSWORD,
        "api_base_url": fake.url,
        **extra,
    }


def telnyx_block(fake: FakeTelnyx, **extra: Any) -> dict[str, Any]:
    return {
        "api_key": TELNYX_KEY,
        "public_key": fake.public_key,
        "connection_id": CONNECTION,
        "api_base_url": fake.url,
        "media_hosts": ["127.0.0.1"],
        "media_allow_private": True,
        **extra,
    }


async def _settled(hub: Any) -> None:
    """Wait until the faxes the gateway was answered for are read and stored (that happens
    after the answer)."""
    await asyncio.wait_for(hub.app[CONNECTORS]["fax"].idle(), 120)


async def _inbound(hub: Any) -> list[tuple[Envelope, list[dict[str, Any]]]]:
    """Every stored inbound fax: its envelope and attachment rows."""
    await _settled(hub)
    async with hub.store.engine.connect() as connection:
        rows = (
            await connection.execute(
                select(messages.c.id, messages.c.envelope)
                .where(messages.c.direction == "inbound")
                .order_by(messages.c.created_at)
            )
        ).all()
        out = []
        for row in rows:
            files = (
                await connection.execute(
                    select(attachments).where(attachments.c.message_id == row.id)
                )
            ).all()
            envelope = msgspec.json.decode(row.envelope, type=Envelope)
            out.append((envelope, [dict(f._mapping) for f in files]))
        return out


async def _count(hub: Any) -> int:
    await _settled(hub)
    async with hub.store.engine.connect() as connection:
        query = select(func.count()).select_from(messages).where(messages.c.direction == "inbound")
        return int((await connection.execute(query)).scalar_one())


async def _reply(agent: Any, conversation_id: str, status: str, **fields: Any) -> str:
    """Send a reply, wait for its ack and its first delivery report; its message id."""
    reply = client_id()
    await agent.send(type="reply", conversation_id=conversation_id, client_id=reply, **fields)
    message_id = str((await agent.expect("reply_ack", client_id=reply))["message"]["id"])
    await agent.expect("delivery", message_id=message_id, status=status, timeout=30)
    return message_id


async def _accept(agent: Any) -> dict[str, Any]:
    offer = await agent.expect("offer", timeout=30)
    await agent.send(type="accept", conversation_id=offer["conversation_id"])
    return dict((await agent.expect("conversation"))["conversation"])


def _pdf_text(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(data)).pages)


def _assert_ocr(envelope: Envelope) -> None:
    for line in ORDER:
        assert line in envelope.text, (line, envelope.text)
    assert "Übergabe am Montag" in envelope.text


async def _check_file_access(
    hub: Any, session: aiohttp.ClientSession, token: str, files: list[dict[str, Any]]
) -> None:
    """Pages show inline for the assigned agent; the document only downloads; nobody else."""
    preview = next(f for f in files if f["name"] == "page-1.png")
    document = next(f for f in files if f["name"] == "fax.pdf")
    mine = {"Authorization": f"Bearer {token}"}
    async with session.get(f"{hub.url}/api/attachments/{preview['id']}", headers=mine) as answer:
        assert answer.status == 200 and answer.content_type == "image/png"
        assert answer.headers["Content-Disposition"].startswith("inline")
        assert (await answer.read()).startswith(b"\x89PNG")
    async with session.get(f"{hub.url}/api/attachments/{document['id']}", headers=mine) as answer:
        assert answer.status == 200 and answer.content_type == "application/octet-stream"
        assert answer.headers["Content-Disposition"].startswith("attachment")
        assert (await answer.read()).startswith(b"%PDF")
    bob = {"Authorization": f"Bearer {await login(hub, 'bob', AGENT_PASSWORD)}"}
    async with session.get(f"{hub.url}/api/attachments/{preview['id']}", headers=bob) as answer:
        assert answer.status == 403
    async with session.get(f"{hub.url}/api/attachments/{preview['id']}") as answer:
        assert answer.status == 401
    async with session.get(f"{hub.url}/api/attachments/nope", headers=mine) as answer:
        assert answer.status == 404


# -- Sinch -----------------------------------------------------------------------------------


async def test_sinch_fax_in_ocr_agent_reply_by_fax_and_completion(
    store_url: str, tmp_path: Path
) -> None:
    require_ocr()
    async with fake_sinch() as fake:
        settings = fax_settings(store_url, tmp_path, "sinch", sinch_block(fake))
        async with running_hub(settings) as hub, aiohttp.ClientSession() as session:
            token = await login(hub, "alice", AGENT_PASSWORD)
            async with agent_client(hub, token) as (agent, _):
                fax = sinch_fax()
                status, text = await sinch_webhook(
                    session, hub.url + WEBHOOK, "INCOMING_FAX", fax, g4_pdf()
                )
                assert status == 200, text
                conversation = await _accept(agent)
                assert conversation["channel"] == "fax"
                [message] = conversation["messages"]
                assert "Stück Größe M" in message["text"]
                names = sorted(a["name"] for a in message["attachments"])
                assert names == ["fax.pdf", "page-1.png", "page-2.png"]
                [(envelope, files)] = await _inbound(hub)
                _assert_ocr(envelope)
                assert envelope.sender.kind == "fax" and envelope.sender.address == CUSTOMER
                assert envelope.provider_id == fax["id"]
                assert envelope.metadata["pages"] == 2
                assert envelope.metadata["text_sources"] == ["ocr", "ocr"]
                assert envelope.metadata["ocr"] == "done"
                previews = [f for f in files if f["content_type"] == "image/png"]
                assert len(previews) == 2
                await _check_file_access(hub, session, token, message["attachments"])

                # the same webhook again (Sinch retries): nothing new
                status, _ = await sinch_webhook(
                    session, hub.url + WEBHOOK, "INCOMING_FAX", fax, g4_pdf()
                )
                assert status == 200 and await _count(hub) == 1

                reply = client_id()
                await agent.send(
                    type="reply",
                    conversation_id=conversation["id"],
                    client_id=reply,
                    text="Sehr geehrter Herr Müller,\n\nIhre Bestellung 4711 ist unterwegs.",
                )
                ack = await agent.expect("reply_ack", client_id=reply)
                message_id = ack["message"]["id"]
                queued = await agent.expect("delivery", message_id=message_id, timeout=30)
                assert queued["status"] == "queued"
                [sent] = fake.sent
                assert sent["to"] == CUSTOMER and sent["from"] == OUR_NUMBER
                assert sent["callbackUrlContentType"] == "application/json"
                callback = sent["callbackUrl"]
                assert callback.startswith(
                    f"https://{HOOK_USER}:{HOOK_PASSWORD}@hub.example.com{WEBHOOK}?ref="
                )
                letter = _pdf_text(sent["file"])
                assert "Beispiel GmbH" in letter and "Hauptstraße 1" in letter
                assert "Ihre Bestellung 4711 ist unterwegs." in letter

                done = {**sent["fax"], "status": "COMPLETED", "numberOfPages": 1}
                status, _ = await sinch_webhook(session, hub.url + WEBHOOK, "FAX_COMPLETED", done)
                assert status == 200
                delivered = await agent.expect("delivery", message_id=message_id)
                assert delivered["status"] == "delivered"


async def test_sinch_failure_and_json_webhooks(store_url: str, tmp_path: Path) -> None:
    async with fake_sinch() as fake:
        settings = fax_settings(
            store_url, tmp_path, "sinch", sinch_block(fake), ocr={"enabled": False}
        )
        async with running_hub(settings) as hub, aiohttp.ClientSession() as session:
            token = await login(hub, "alice", AGENT_PASSWORD)
            async with agent_client(hub, token) as (agent, _):
                status, text = await sinch_webhook(
                    session, hub.url + WEBHOOK, "INCOMING_FAX", sinch_fax(), g4_tiff(), as_json=True
                )
                assert status == 200, text
                conversation = await _accept(agent)
                [(envelope, files)] = await _inbound(hub)
                assert envelope.metadata["ocr"] == "off" and envelope.text == ""
                assert sorted(f["name"] for f in files) == ["fax.tiff", "page-1.png", "page-2.png"]

                # a second fax from the same number joins the open conversation, live, with
                # its pages and what went wrong with it
                second = sinch_fax(status="FAILURE", numberOfPages=3)
                status, _ = await sinch_webhook(
                    session, hub.url + WEBHOOK, "INCOMING_FAX", second, g4_pdf()
                )
                assert status == 200
                live = await agent.expect("message", conversation_id=conversation["id"])
                assert sorted(f["name"] for f in live["message"]["attachments"]) == [
                    "fax.pdf",
                    "page-1.png",
                    "page-2.png",
                ]
                assert any("incomplete" in note for note in live["message"]["notes"])

                message_id = await _reply(agent, conversation["id"], "queued", text="Hallo")
                failed = {
                    **fake.sent[0]["fax"],
                    "status": "FAILURE",
                    "errorType": "CALL_ERROR",
                    "errorCode": "BUSY",
                    "errorMessage": "The line was busy",
                }
                status, _ = await sinch_webhook(
                    session, hub.url + WEBHOOK, "FAX_COMPLETED", failed, as_json=True
                )
                assert status == 200
                report = await agent.expect("delivery", message_id=message_id, status="failed")
                assert "busy" in str(report).lower()


async def test_sinch_webhooks_need_the_url_credentials_and_an_allowed_address(
    store_url: str, tmp_path: Path
) -> None:
    async with fake_sinch() as fake:
        block = sinch_block(fake, allowed_sources=["10.1.0.0/16"], trusted_proxies=["127.0.0.1/32"])
        settings = fax_settings(store_url, tmp_path, "sinch", block, ocr={"enabled": False})
        async with running_hub(settings) as hub, aiohttp.ClientSession() as session:
            url = hub.url + WEBHOOK
            fax, pdf = sinch_fax(), g4_pdf()
            for authorization in ("", basic(password="wrong-password-0123456789"), "Bearer x"):
                status, _ = await sinch_webhook(
                    session,
                    url,
                    "INCOMING_FAX",
                    fax,
                    pdf,
                    authorization=authorization,
                    headers={"X-Forwarded-For": "10.1.2.3"},
                )
                assert status == 401
            # right password, but from an address outside the allow-list
            status, text = await sinch_webhook(
                session, url, "INCOMING_FAX", fax, pdf, headers={"X-Forwarded-For": "192.0.2.9"}
            )
            assert status == 401 and "address" in text
            assert await _count(hub) == 0
            # the proxy's peer says the caller is inside the list
            status, _ = await sinch_webhook(
                session, url, "INCOMING_FAX", fax, pdf, headers={"X-Forwarded-For": "10.1.2.3"}
            )
            assert status == 200 and await _count(hub) == 1


async def test_sinch_bad_bodies_are_refused_and_bombs_arrive_unread(
    store_url: str, tmp_path: Path
) -> None:
    async with fake_sinch() as fake:
        settings = fax_settings(
            store_url,
            tmp_path,
            "sinch",
            sinch_block(fake),
            ocr={"enabled": False},
            max_document_bytes=200_000,
        )
        async with running_hub(settings) as hub, aiohttp.ClientSession() as session:
            url = hub.url + WEBHOOK
            headers = {"Authorization": basic()}
            async with session.post(
                url,
                data=b"x=1",
                headers={**headers, "Content-Type": "application/x-www-form-urlencoded"},
            ) as answer:
                assert answer.status == 415
            async with session.post(
                url, data=b"{not json", headers={**headers, "Content-Type": "application/json"}
            ) as answer:
                assert answer.status == 400
            status, text = await sinch_webhook(session, url, "SOMETHING_ELSE", sinch_fax())
            assert status == 400 and "unknown event" in text
            status, _ = await sinch_webhook(
                session, url, "INCOMING_FAX", sinch_fax(), b"%PDF-1.4\n" + b"0" * 300_000
            )
            assert status == 413
            assert await _count(hub) == 0

            # a decompression bomb is not read, but the fax is not lost either
            status, _ = await sinch_webhook(session, url, "INCOMING_FAX", sinch_fax(), pdf_bomb())
            assert status == 200
            [(envelope, files)] = await _inbound(hub)
            assert envelope.text == ""
            assert any("could not be read" in p for p in envelope.metadata["problems"])
            assert [f["name"] for f in files] == ["fax.pdf"]


async def test_sinch_broken_bodies_with_valid_credentials_are_400_or_413(
    store_url: str, tmp_path: Path
) -> None:
    """Issue 14 item 9: a multipart body without its boundary line (40 MB) and JSON nested
    100,000 deep answered 500. Every broken body is now 400 (or 413 over a limit), and a large
    well-formed JSON webhook is read to its end (it was cut at what had arrived so far)."""
    async with fake_sinch() as fake:
        settings = fax_settings(
            store_url, tmp_path, "sinch", sinch_block(fake), ocr={"enabled": False}
        )
        async with running_hub(settings) as hub, aiohttp.ClientSession() as session:
            url = hub.url + WEBHOOK
            auth = {"Authorization": basic()}
            form = {"Content-Type": "multipart/form-data; boundary=xYzZY"}
            deep = b"[" * 100_000 + b"]" * 100_000
            cases = [
                ("no boundary line, one 40 MB line", b"x" * 40_000_000, form, 400),
                ("no boundary line, 40 MB of empty lines", b"\r\n" * 20_000_000, form, 400),
                (
                    "no boundary parameter",
                    b"--xYzZY\r\n",
                    {"Content-Type": "multipart/form-data"},
                    400,
                ),
                (
                    "a part never closed",
                    b'--xYzZY\r\nContent-Disposition: form-data; name="event"\r\n\r\nINCOMING_FAX',
                    form,
                    400,
                ),
                (
                    "a field over its limit",
                    b'--xYzZY\r\nContent-Disposition: form-data; name="fax"\r\n\r\n'
                    + b"x" * 300_000
                    + b"\r\n--xYzZY--\r\n",
                    form,
                    413,
                ),
                ("100k-deep JSON", deep, {"Content-Type": "application/json"}, 400),
                (
                    "100k-deep JSON in the fax",
                    b'{"event": "INCOMING_FAX", "fax": ' + deep + b"}",
                    {"Content-Type": "application/json"},
                    400,
                ),
                ("over the body limit", b"x" * (45 * 1024 * 1024), form, 413),
            ]
            for name, body, headers, expected in cases:
                async with session.post(url, data=body, headers={**auth, **headers}) as answer:
                    assert answer.status == expected, (name, answer.status, await answer.text())
            # 100k-deep JSON as the fax part of a well-formed multipart body
            deep_part = aiohttp.FormData()
            deep_part.add_field("event", "INCOMING_FAX")
            deep_part.add_field("fax", deep.decode(), content_type="application/json")
            async with session.post(url, data=deep_part, headers=auth) as answer:
                assert answer.status == 400, await answer.text()
            assert await _count(hub) == 0

            # a well-formed JSON webhook of 2 MB (a 1.5 MB document in base64) is stored whole
            document = g4_pdf() + b"%" + b"0" * 1_500_000 + b"\n"
            status, text = await sinch_webhook(
                session, url, "INCOMING_FAX", sinch_fax(), document, as_json=True
            )
            assert status == 200, text
            [(_envelope, files)] = await _inbound(hub)
            [original] = [f for f in files if f["name"] == "fax.pdf"]
            assert original["size"] == len(document)


async def test_a_fax_is_answered_before_it_is_read_and_survives_a_restart(
    store_url: str, tmp_path: Path
) -> None:
    """Issue 14 item 9: the webhook waited for the whole document to be read (100 pages of
    39.6 Mpx held it for 82 s). Now it is answered once the document and a pending record are
    durable; the reading happens after, within the document's pixel budget, and a fax whose
    reading a stop interrupted is read at the next start, once."""
    async with fake_sinch() as fake:
        settings = fax_settings(
            store_url, tmp_path, "sinch", sinch_block(fake), ocr={"enabled": False}
        )
        fax, heavy = sinch_fax(), pixel_heavy_pdf()
        async with running_hub(settings) as hub, aiohttp.ClientSession() as session:
            connector = hub.app[CONNECTORS]["fax"]
            await connector._slots.acquire()  # the worker is busy: nothing is read now
            status, text = await sinch_webhook(
                session, hub.url + WEBHOOK, "INCOMING_FAX", fax, heavy
            )
            assert status == 200, text  # answered without reading anything
            async with hub.store.engine.connect() as connection:
                kept = (
                    await connection.execute(
                        select(func.count())
                        .select_from(connector_state)
                        .where(connector_state.c.key.startswith("pending:"))
                    )
                ).scalar_one()
                stored = (
                    await connection.execute(select(func.count()).select_from(messages))
                ).scalar_one()
            assert (kept, stored) == (1, 0)
            # Sinch retries: kept already, answered at once, nothing new
            status, _ = await sinch_webhook(session, hub.url + WEBHOOK, "INCOMING_FAX", fax, heavy)
            assert status == 200
            # the hub stops before the worker got to it (its slot is never released)
        async with running_hub(settings) as hub, aiohttp.ClientSession() as session:
            [(envelope, files)] = await _inbound(hub)  # read at start, from the pending record
            assert envelope.provider_id == fax["id"]
            assert envelope.metadata["pages"] == 100 and envelope.metadata["pages_read"] == 12
            assert any("pixel budget" in p for p in envelope.metadata["problems"])
            assert len([f for f in files if f["name"].startswith("page-")]) == 12
            status, _ = await sinch_webhook(session, hub.url + WEBHOOK, "INCOMING_FAX", fax, heavy)
            assert status == 200 and await _count(hub) == 1
            async with hub.store.engine.connect() as connection:
                left = (
                    await connection.execute(select(func.count()).select_from(connector_state))
                ).scalar_one()
            assert left == 0


async def test_a_lost_send_answer_never_faxes_twice(store_url: str, tmp_path: Path) -> None:
    async with fake_sinch() as fake:
        fake.lose_answers = 1
        settings = fax_settings(
            store_url, tmp_path, "sinch", sinch_block(fake), ocr={"enabled": False}
        )
        clock = Clock()  # the outbox backoff passes when the test moves it
        async with running_hub(settings, clock) as hub, aiohttp.ClientSession() as session:
            token = await login(hub, "alice", AGENT_PASSWORD)
            async with agent_client(hub, token) as (agent, _):
                await sinch_webhook(
                    session, hub.url + WEBHOOK, "INCOMING_FAX", sinch_fax(), g4_pdf()
                )
                conversation = await _accept(agent)
                await _reply(agent, conversation["id"], "queued", text="Ok")
                [fax_id] = (await _provider_ids(hub, 1, clock)).values()  # after the retry
                # the retry found the fax the first attempt made (Sinch lists its callback URL
                # with the credentials masked)
                assert [item["fax"]["id"] for item in fake.sent] == [fax_id]


async def test_telnyx_lost_answer_never_faxes_twice(store_url: str, tmp_path: Path) -> None:
    async with fake_telnyx() as fake:
        fake.lose_answers = 1
        settings = fax_settings(
            store_url, tmp_path, "telnyx", telnyx_block(fake), ocr={"enabled": False}
        )
        clock = Clock()  # the outbox backoff passes when the test moves it
        async with running_hub(settings, clock) as hub, aiohttp.ClientSession() as session:
            fake.public = (PUBLIC, hub.url)
            token = await login(hub, "alice", AGENT_PASSWORD)
            async with agent_client(hub, token) as (agent, _):
                event = fake.received_event(fake.host_media(g4_pdf()))
                await telnyx_webhook(session, hub.url + WEBHOOK, fake, event)
                conversation = await _accept(agent)
                await _reply(agent, conversation["id"], "queued", text="Ok")
                [fax_id] = (await _provider_ids(hub, 1, clock)).values()  # after the retry
                assert list(fake.faxes) == [event["data"]["payload"]["fax_id"], fax_id]
                assert len(fake.sent) == 1  # the retry found the fax by its client_state


async def _provider_ids(hub: Any, count: int, clock: Clock) -> dict[str, str]:
    """Idempotency key -> provider id of the outbound messages, once ``count`` have one. The
    outbox retries a failed attempt after its backoff, on the hub's clock: the test moves
    that clock on while it waits instead of sleeping through the backoff."""
    for _ in range(300):
        async with hub.store.engine.connect() as connection:
            rows = (
                await connection.execute(
                    select(messages.c.idempotency_key, messages.c.provider_id).where(
                        messages.c.direction == "outbound"
                    )
                )
            ).all()
        found = {row.idempotency_key: row.provider_id for row in rows if row.provider_id}
        if len(found) >= count:
            return found
        clock.advance(1.0)  # well within the 300 s a provider's clock may differ by
        await asyncio.sleep(0.1)
    raise AssertionError(f"only {len(found)} of {count} replies were recorded as sent")


@pytest.mark.parametrize("gateway", ["sinch", "telnyx"])
async def test_the_same_text_twice_is_two_faxes_each_with_its_own_id(
    store_url: str, tmp_path: Path, gateway: str
) -> None:
    """Issue 14 item 1 (fax): three replies with the same text to the same number. The second's
    first call fails before the provider creates anything; the third's first call creates the
    fax but its answer is lost. A retry may adopt only its own reply's fax: the second is sent
    anew (not recorded under the first's id), the third is not sent twice."""
    fake_gateway = fake_sinch if gateway == "sinch" else fake_telnyx
    async with fake_gateway() as fake:  # type: ignore[operator]
        block = sinch_block(fake) if gateway == "sinch" else telnyx_block(fake)
        settings = fax_settings(store_url, tmp_path, gateway, block, ocr={"enabled": False})
        clock = Clock()  # the outbox backoff passes when the test moves it
        async with running_hub(settings, clock) as hub, aiohttp.ClientSession() as session:
            if gateway == "telnyx":
                fake.public = (PUBLIC, hub.url)
                event = fake.received_event(fake.host_media(g4_pdf()))
                await telnyx_webhook(session, hub.url + WEBHOOK, fake, event)
            else:
                await sinch_webhook(
                    session, hub.url + WEBHOOK, "INCOMING_FAX", sinch_fax(), g4_pdf()
                )
            token = await login(hub, "alice", AGENT_PASSWORD)
            async with agent_client(hub, token) as (agent, _):
                conversation = await _accept(agent)
                await _reply(agent, conversation["id"], "queued", text="Ok")
                await _provider_ids(hub, 1, clock)
                fake.script.append((503, {"code": 503, "message": "Service Unavailable"}))
                await _reply(agent, conversation["id"], "queued", text="Ok")
                await _provider_ids(hub, 2, clock)
                fake.lose_answers = 1
                await _reply(agent, conversation["id"], "queued", text="Ok")
                ids = await _provider_ids(hub, 3, clock)
        assert len(fake.sent) == 3, fake.sent
        assert len(set(ids.values())) == 3
        if gateway == "sinch":
            created = {item["fax"]["id"]: item["callbackUrl"] for item in fake.sent}
            for key, fax_id in ids.items():
                assert created[fax_id].endswith(f"?ref={quote(key, safe='')}")
        else:
            for key, fax_id in ids.items():
                assert fake.faxes[fax_id]["webhook_url"].endswith(f"?ref={quote(key, safe='')}")
            assert (
                len({fax["client_state"] for fax in fake.faxes.values() if fax.get("client_state")})
                == 3
            )


# -- Telnyx ----------------------------------------------------------------------------------


async def test_telnyx_fax_in_reply_out_through_a_signed_media_link(
    store_url: str, tmp_path: Path
) -> None:
    require_ocr()
    async with fake_telnyx() as fake:
        settings = fax_settings(store_url, tmp_path, "telnyx", telnyx_block(fake))
        async with running_hub(settings) as hub, aiohttp.ClientSession() as session:
            fake.public = (PUBLIC, hub.url)
            token = await login(hub, "alice", AGENT_PASSWORD)
            async with agent_client(hub, token) as (agent, _):
                event = fake.received_event(fake.host_media(g4_pdf()))
                status, text = await telnyx_webhook(session, hub.url + WEBHOOK, fake, event)
                assert status == 200, text
                conversation = await _accept(agent)
                [(envelope, _files)] = await _inbound(hub)
                _assert_ocr(envelope)
                assert envelope.sender.address == CUSTOMER
                assert envelope.metadata["connection_id"] == CONNECTION

                message_id = await _reply(
                    agent, conversation["id"], "queued", text="Vielen Dank für Ihre Bestellung."
                )
                [body] = fake.sent
                assert body["connection_id"] == CONNECTION and body["to"] == CUSTOMER
                assert body["from"] == OUR_NUMBER
                assert body["media_url"].startswith(f"{PUBLIC}/channels/fax/media/")
                assert body["webhook_url"].startswith(f"{PUBLIC}{WEBHOOK}?ref=")
                [document] = fake.fetched
                assert "Vielen Dank für Ihre Bestellung." in _pdf_text(document)
                # the link is signed: a changed token is refused
                path = body["media_url"].removeprefix(PUBLIC)
                async with session.get(hub.url + path[:-3] + "AAA") as forged:
                    assert forged.status == 404

                fax_id = next(
                    iter(k for k, v in fake.faxes.items() if v["direction"] == "outbound")
                )
                for kind in ("fax.sending.started", "fax.delivered"):
                    status, _ = await telnyx_webhook(
                        session, hub.url + WEBHOOK, fake, status_event(kind, fax_id)
                    )
                    assert status == 200
                await agent.expect("delivery", message_id=message_id, status="sent")
                await agent.expect("delivery", message_id=message_id, status="delivered")


async def test_telnyx_forged_stale_and_replayed_webhooks_are_refused(
    store_url: str, tmp_path: Path
) -> None:
    async with fake_telnyx() as fake:
        settings = fax_settings(
            store_url, tmp_path, "telnyx", telnyx_block(fake), ocr={"enabled": False}
        )
        async with running_hub(settings) as hub, aiohttp.ClientSession() as session:
            url = hub.url + WEBHOOK
            event = fake.received_event(fake.host_media(g4_pdf()))
            raw = msgspec.json.encode(event)
            # signed by someone else's key
            other = FakeTelnyx()
            status, text = await telnyx_webhook(session, url, other, event, body=raw)
            assert status == 403 and "does not verify" in text
            # the body changed after signing
            headers = fake.sign(raw)
            async with session.post(
                url, data=raw.replace(b"received", b"RECEIVED"), headers=headers
            ) as answer:
                assert answer.status == 403
            # ten minutes old
            status, text = await telnyx_webhook(
                session, url, fake, event, timestamp=int(time.time()) - 600, body=raw
            )
            assert status == 403 and "too old" in text
            # no signature at all
            async with session.post(
                url, data=raw, headers={"Content-Type": "application/json"}
            ) as answer:
                assert answer.status == 403
            assert await _count(hub) == 0 and fake.media_hits == 0

            headers = fake.sign(raw)
            async with session.post(url, data=raw, headers=headers) as answer:
                assert answer.status == 200
            async with session.post(url, data=raw, headers=headers) as answer:  # replayed
                assert answer.status == 403 and "replay" in await answer.text()
            # Telnyx's own retry is signed anew: accepted, and nothing new is stored
            status, _ = await telnyx_webhook(
                session, url, fake, event, body=raw, timestamp=int(time.time()) - 5
            )
            assert status == 200
            assert await _count(hub) == 1 and fake.media_hits == 1
            # signed, but nested 100,000 deep (it answered 500): refused as malformed
            deep = b'{"data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
            status, text = await telnyx_webhook(session, url, fake, {}, body=deep)
            assert status == 400 and "nested too deeply" in text


async def test_telnyx_expired_media_link_and_partial_fax(store_url: str, tmp_path: Path) -> None:
    async with fake_telnyx() as fake:
        settings = fax_settings(
            store_url, tmp_path, "telnyx", telnyx_block(fake), ocr={"enabled": False}
        )
        async with running_hub(settings) as hub, aiohttp.ClientSession() as session:
            url = hub.url + WEBHOOK
            expired = fake.host_media(g4_pdf(), ttl=-1)
            event = fake.received_event(expired, partial=True)
            fax_id = event["data"]["payload"]["fax_id"]
            fake.faxes[fax_id]["media_url"] = fake.host_media(g4_pdf())  # a fresh link
            status, _ = await telnyx_webhook(session, url, fake, event)
            assert status == 200
            [(envelope, files)] = await _inbound(hub)
            assert "fax.pdf" in [f["name"] for f in files]
            assert envelope.metadata["partial"] is True
            assert any("incomplete" in p for p in envelope.metadata["problems"])

            # no fresh link to be had: the fax still arrives, saying what is missing
            gone = fake.received_event(fake.host_media(g4_pdf(), ttl=-1))
            fake.faxes[gone["data"]["payload"]["fax_id"]]["media_url"] = ""
            status, _ = await telnyx_webhook(session, url, fake, gone)
            assert status == 200
            [_, (lost, lost_files)] = await _inbound(hub)
            assert lost_files == []
            assert any("not downloaded" in p for p in lost.metadata["problems"])


# -- fax-to-email and email-to-fax -----------------------------------------------------------


def _fax_mail(document: bytes, filename: str, subtype: str) -> bytes:
    message = EmailMessage()
    message["From"] = "HylaFAX <fax@faxserver.example.net>"
    message["To"] = "fax-in@example.com"
    message["Subject"] = "Facsimile received from +49 30 123456"
    message["Message-ID"] = "<fax-4711@faxserver.example.net>"
    message.set_content("A facsimile was received: 2 pages.\n")
    maintype, _, sub = subtype.partition("/")
    message.add_attachment(document, maintype=maintype, subtype=sub, filename=filename)
    return message.as_bytes()


async def test_fax_to_email_in_and_email_to_fax_out(store_url: str, tmp_path: Path) -> None:
    require_ocr()
    async with running_relay() as relay:
        block = {
            "address": "fax-in@example.com",
            "smtp_in": {"host": "127.0.0.1", "port": 0, "recipients": ["fax-in@example.com"]},
            "smtp": {"host": "127.0.0.1", "port": relay.port, "security": "none"},
            "gateway_domain": "fax.example.net",
            "number_pattern": r"(?i)received from\s+(?P<number>\+?[0-9][0-9 ]{5,20}[0-9])",
        }
        settings = fax_settings(store_url, tmp_path, "email", block)
        async with running_hub(settings) as hub:
            connector = hub.app[CONNECTORS]["fax"]
            port = connector.gateway.receiver.port
            token = await login(hub, "alice", AGENT_PASSWORD)
            async with agent_client(hub, token) as (agent, _):
                raw = _fax_mail(g4_tiff(), "fax.tif", "image/tiff")
                await smtp(port, raw, "fax@faxserver.example.net", "fax-in@example.com")
                conversation = await _accept(agent)
                assert conversation["channel"] == "fax"
                [(envelope, _files)] = await _inbound(hub)
                _assert_ocr(envelope)
                assert envelope.sender.kind == "fax" and envelope.sender.address == CUSTOMER
                # the same mail again (a forwarder's retry): one message
                await smtp(port, raw, "fax@faxserver.example.net", "fax-in@example.com")
                assert await _count(hub) == 1

                await _reply(agent, conversation["id"], "sent", text="Wir liefern am Montag.")
                [sent] = await relay.wait(1)
                assert sent["To"] == "4930123456@fax.example.net"
                assert sent["From"] == "fax-in@example.com"
                [attachment] = list(sent.iter_attachments())
                assert attachment.get_filename() == "fax.pdf"
                assert "Wir liefern am Montag." in _pdf_text(attachment.get_content())


async def test_email_to_fax_replies_never_share_a_message_id(
    store_url: str, tmp_path: Path
) -> None:
    """Issue 14 item 1 (fax): the Message-ID (and provider id) of an email-to-fax reply was the
    reply's key cleaned and cut to 80 characters; behind a long agent id every reply of a
    conversation got the same one. Two replies with the same text, the second's first relay
    attempt refused: two mails, two Message-IDs, each reply with its own."""
    require_ocr()
    agent_id = "a" + "-support-team-berlin" * 3 + "-0"  # 63 characters, the longest allowed
    async with running_relay() as relay:
        block = {
            "address": "fax-in@example.com",
            "smtp_in": {"host": "127.0.0.1", "port": 0, "recipients": ["fax-in@example.com"]},
            "smtp": {"host": "127.0.0.1", "port": relay.port, "security": "none"},
            "gateway_domain": "fax.example.net",
            "number_pattern": r"(?i)received from\s+(?P<number>\+?[0-9][0-9 ]{5,20}[0-9])",
        }
        base = fax_settings(store_url, tmp_path, "email", block)
        agent_entry = base.agents[0].model_copy(update={"id": agent_id})
        settings = base.model_copy(update={"agents": (agent_entry,)})
        clock = Clock()  # the outbox backoff passes when the test moves it
        async with running_hub(settings, clock) as hub:
            port = hub.app[CONNECTORS]["fax"].gateway.receiver.port
            token = await login(hub, agent_id, AGENT_PASSWORD)
            async with agent_client(hub, token) as (agent, _):
                raw = _fax_mail(g4_tiff(), "fax.tif", "image/tiff")
                await smtp(port, raw, "fax@faxserver.example.net", "fax-in@example.com")
                conversation = await _accept(agent)
                await _reply(agent, conversation["id"], "sent", text="Ok")
                relay.answer.append("451 4.2.0 try later")
                await _reply(agent, conversation["id"], "queued", text="Ok")
                ids = await _provider_ids(hub, 2, clock)
                mails = await relay.wait(2)
    assert len(mails) == 2
    message_ids = {str(mail["Message-ID"]).strip("<>") for mail in mails}
    assert len(message_ids) == 2
    assert set(ids.values()) == message_ids


async def test_missing_ocr_language_is_in_readyz_and_faxes_still_arrive(
    store_url: str, tmp_path: Path
) -> None:
    async with fake_sinch() as fake:
        settings = fax_settings(
            store_url,
            tmp_path,
            "sinch",
            sinch_block(fake),
            ocr={"languages": "xyz", "workers": 0},
        )
        async with running_hub(settings) as hub, aiohttp.ClientSession() as session:
            async with session.get(hub.url + "/readyz") as answer:
                body = await answer.json()
            assert answer.status == 200 and body["status"] == "degraded"
            assert "tesseract-ocr-xyz" in body["channels"]["fax"]
            status, _ = await sinch_webhook(
                session, hub.url + WEBHOOK, "INCOMING_FAX", sinch_fax(), g4_pdf()
            )
            assert status == 200
            [(envelope, files)] = await _inbound(hub)
            assert envelope.text == "" and envelope.metadata["ocr"].startswith("unavailable")
            assert len(files) == 3  # the document and both previews
            # the agent sees why there is no text
            token = await login(hub, "alice", AGENT_PASSWORD)
            async with agent_client(hub, token) as (agent, _):
                conversation = await _accept(agent)
                [message] = conversation["messages"]
                assert any("tesseract-ocr-xyz" in note for note in message["notes"])


async def test_a_sinch_webhook_without_the_file_gets_it_from_the_api(
    store_url: str, tmp_path: Path
) -> None:
    async with fake_sinch() as fake:
        settings = fax_settings(
            store_url, tmp_path, "sinch", sinch_block(fake), ocr={"enabled": False}
        )
        async with running_hub(settings) as hub, aiohttp.ClientSession() as session:
            stored = sinch_fax()
            fake.received[stored["id"]] = g4_pdf()
            status, _ = await sinch_webhook(
                session, hub.url + WEBHOOK, "INCOMING_FAX", stored, as_json=True
            )
            assert status == 200
            lost = sinch_fax()  # the API does not have it either: it arrives, saying so
            status, _ = await sinch_webhook(
                session, hub.url + WEBHOOK, "INCOMING_FAX", lost, as_json=True
            )
            assert status == 200
            [(_first, first_files), (second, second_files)] = await _inbound(hub)
            assert sorted(f["name"] for f in first_files) == ["fax.pdf", "page-1.png", "page-2.png"]
            assert second_files == []
            assert any("HTTP 404" in p for p in second.metadata["problems"])


async def test_concurrent_copies_of_one_fax_are_read_once(store_url: str, tmp_path: Path) -> None:
    async with fake_sinch() as fake:
        settings = fax_settings(
            store_url, tmp_path, "sinch", sinch_block(fake), ocr={"enabled": False}
        )
        async with running_hub(settings) as hub, aiohttp.ClientSession() as session:
            fax, pdf = sinch_fax(), g4_pdf()
            results = await asyncio.gather(
                *(
                    sinch_webhook(session, hub.url + WEBHOOK, "INCOMING_FAX", fax, pdf)
                    for _ in range(5)
                )
            )
            assert [status for status, _ in results] == [200] * 5
            assert await _count(hub) == 1


async def test_a_fax_customer_known_by_email_is_answered_by_email(
    store_url: str, tmp_path: Path
) -> None:
    from hub.customers import csvimport
    from hub.keys import CUSTOMERS

    async with fake_sinch() as fake, running_relay() as relay:
        fax = {
            "gateway": "sinch",
            "number": OUR_NUMBER,
            "sinch": sinch_block(fake),
            "public_url": PUBLIC,
            "ocr": {"enabled": False},
        }
        mail = {
            "address": "support@example.com",
            "parse_workers": 0,
            "smtp": {"host": "127.0.0.1", "port": relay.port, "security": "none"},
            "smtp_in": {"host": "127.0.0.1", "port": 0, "recipients": ["support@example.com"]},
        }
        settings = make_settings(
            store_url,
            tmp_path,
            channels=[
                {"name": "fax", "type": "fax", "settings": fax},
                {"name": "mail", "type": "email", "settings": mail},
            ],
        )
        async with running_hub(settings) as hub, aiohttp.ClientSession() as session:
            crm = "customer_id,name,email,fax\nK7,Jürgen Müller,juergen@example.org,030 123456\n"
            report = await hub.app[CUSTOMERS].import_file(csvimport.parse(crm.encode(), "crm.csv"))
            assert not report.errors
            token = await login(hub, "alice", AGENT_PASSWORD)
            async with agent_client(hub, token) as (agent, _):
                await sinch_webhook(
                    session, hub.url + WEBHOOK, "INCOMING_FAX", sinch_fax(), g4_pdf()
                )
                conversation = await _accept(agent)
                assert conversation["customer"]["name"] == "Jürgen Müller"
                options = conversation["compose"]["alternatives"]
                assert options == [
                    {
                        "inbox": "mail",
                        "channel": "email",
                        "kind": "email",
                        "address": "juergen@example.org",
                    }
                ]
                # only the customer's own addresses: anything else is refused
                await agent.send(
                    type="reply",
                    conversation_id=conversation["id"],
                    client_id=client_id(),
                    text="x",
                    via="mail",
                    to="someone.else@example.org",
                )
                assert (await agent.expect("error"))["code"] == "bad_via"

                reply = client_id()
                await agent.send(
                    type="reply",
                    conversation_id=conversation["id"],
                    client_id=reply,
                    text="Ihre Bestellung ist unterwegs.",
                    via="mail",
                    to="juergen@example.org",
                )
                ack = await agent.expect("reply_ack", client_id=reply)
                message_id = ack["message"]["id"]
                await agent.expect("delivery", message_id=message_id, status="sent", timeout=30)
                [sent] = await relay.wait(1)
                assert sent["To"] == "juergen@example.org"
                assert "Ihre Bestellung ist unterwegs." in sent.get_body().get_content()
                assert fake.sent == []  # nothing was faxed
                async with hub.store.engine.connect() as connection:
                    row = (
                        await connection.execute(
                            select(messages.c.channel, messages.c.inbox).where(
                                messages.c.id == message_id
                            )
                        )
                    ).one()
                assert (row.channel, row.inbox) == ("email", "mail")


async def _upload(
    session: aiohttp.ClientSession, hub: Any, token: str, data: bytes, name: str, kind: str
) -> tuple[int, dict[str, Any]]:
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": kind,
        "X-Filename": quote(name),
    }
    async with session.post(f"{hub.url}/api/uploads", data=data, headers=headers) as answer:
        return answer.status, await answer.json()


async def test_agent_files_are_appended_to_the_faxed_reply(store_url: str, tmp_path: Path) -> None:
    async with fake_sinch() as fake:
        settings = fax_settings(
            store_url, tmp_path, "sinch", sinch_block(fake), ocr={"enabled": False}
        )
        async with running_hub(settings) as hub, aiohttp.ClientSession() as session:
            token = await login(hub, "alice", AGENT_PASSWORD)
            async with agent_client(hub, token) as (agent, _):
                await sinch_webhook(
                    session, hub.url + WEBHOOK, "INCOMING_FAX", sinch_fax(), g4_pdf()
                )
                conversation = await _accept(agent)

                status, pdf = await _upload(
                    session, hub, token, g4_pdf(), "../../Lieferschein März.pdf", "application/pdf"
                )
                assert status == 201 and pdf["name"] == "Lieferschein März.pdf"
                status, tiff = await _upload(
                    session, hub, token, g4_tiff(), "scan.tif", "image/tiff"
                )
                assert status == 201 and tiff["content_type"] == "image/tiff"

                reply = client_id()
                await agent.send(
                    type="reply",
                    conversation_id=conversation["id"],
                    client_id=reply,
                    text="Anbei Lieferschein und Scan.",
                    attachments=[pdf["token"], tiff["token"]],
                )
                ack = await agent.expect("reply_ack", client_id=reply)
                names = [a["name"] for a in ack["message"]["attachments"]]
                assert names == ["Lieferschein März.pdf", "scan.tif"]
                message_id = ack["message"]["id"]
                await agent.expect("delivery", message_id=message_id, status="queued", timeout=30)
                [sent] = fake.sent
                document = pypdf.PdfReader(io.BytesIO(sent["file"]))
                assert len(document.pages) == 1 + 2 + 2  # the letter, the PDF, the TIFF
                assert "Anbei Lieferschein und Scan." in document.pages[0].extract_text()


async def test_uploads_are_checked(store_url: str, tmp_path: Path) -> None:
    async with fake_sinch() as fake:
        settings = fax_settings(
            store_url, tmp_path, "sinch", sinch_block(fake), ocr={"enabled": False}
        )
        async with running_hub(settings) as hub, aiohttp.ClientSession() as session:
            async with session.post(f"{hub.url}/api/uploads", data=b"x") as answer:
                assert answer.status == 401
            alice = await login(hub, "alice", AGENT_PASSWORD)
            bob = await login(hub, "bob", AGENT_PASSWORD)
            status, body = await _upload(session, hub, alice, b"", "empty.pdf", "application/pdf")
            assert status == 400
            big = b"%PDF-1.4\n" + b"0" * (20 * 1024 * 1024)
            status, body = await _upload(session, hub, alice, big, "big.pdf", "application/pdf")
            assert status == 413
            # a file that arrives in pieces is stored whole (one read took what had arrived)
            whole = b"%PDF-1.4\n" + b"1" * (3 * 1024 * 1024)

            async def trickle() -> AsyncIterator[bytes]:
                for start in range(0, len(whole), 64 * 1024):
                    yield whole[start : start + 64 * 1024]
                    await asyncio.sleep(0)

            async with session.post(
                f"{hub.url}/api/uploads",
                data=trickle(),
                headers={
                    "Authorization": f"Bearer {alice}",
                    "Content-Type": "application/pdf",
                    "X-Filename": "whole.pdf",
                },
            ) as answer:
                assert answer.status == 201
                assert (await answer.json())["size"] == len(whole)
            status, body = await _upload(
                session, hub, alice, b"<svg onload=alert(1)>", "x.svg", "text/html<script>"
            )
            assert status == 201
            assert body["content_type"] == "application/octet-stream"  # not a type we believe
            svg = body["token"]

            async with agent_client(hub, bob) as (agent, _):
                await sinch_webhook(
                    session, hub.url + WEBHOOK, "INCOMING_FAX", sinch_fax(), g4_pdf()
                )
                offer = await agent.expect("offer", timeout=30)
                await agent.send(type="accept", conversation_id=offer["conversation_id"])
                await agent.expect("conversation")
                for tokens, reason in (
                    ([svg], "another agent"),  # alice's upload, bob's reply
                    ([svg[:-4] + "AAAA"], "signature"),
                    (["garbage"], "signature"),
                ):
                    await agent.send(
                        type="reply",
                        conversation_id=offer["conversation_id"],
                        client_id=client_id(),
                        text="x",
                        attachments=tokens,
                    )
                    error = await agent.expect("error")
                    assert error["code"] == "bad_attachment" and reason in error["message"]
            assert fake.sent == []


async def test_two_unreadable_fax_mails_with_the_same_body_are_both_kept(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Issue 14 item 8, the fax-to-email side: an unreadable mail was keyed by its body only,
    so a second customer's mail with the same body was taken for a redelivery and lost."""
    block = {
        "address": "fax-in@example.com",
        "smtp_in": {"host": "127.0.0.1", "port": 0, "recipients": ["fax-in@example.com"]},
        "max_message_bytes": 2_000,
    }
    settings = fax_settings(sqlite_url, tmp_path, "email", block, ocr={"enabled": False})
    async with running_hub(settings) as hub:
        gateway = hub.app[CONNECTORS]["fax"].gateway
        body = b"\r\n" + b"x" * 3_000 + b"\r\n"  # over max_message_bytes: not read
        for sender in (b"one@example.org", b"two@example.org"):
            await gateway.receive(b"From: " + sender + b"\r\nSubject: Fax\r\n" + body, None)
        await hub.app[CONNECTORS]["fax"].idle()
        assert await _count(hub) == 2
