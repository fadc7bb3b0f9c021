"""Customer data under the GDPR: export everything about a person, erase it everywhere (tables,
SQLite file, blob directory), keep others' data, apply the retention policy; the API's roles."""

from __future__ import annotations

import io
import json
import subprocess
import uuid
import zipfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select, text

from hub.auth import hash_password
from hub.bus import MESSAGES, MemoryBus, MessageStored
from hub.customers import csvimport
from hub.customers.repository import Customers
from hub.envelope import Delivery, DeliveryStatus, Direction, Envelope, Identity, ThreadHints
from hub.errors import InvalidState
from hub.metrics import Metrics
from hub.pipeline import PassthroughDecider, Pipeline
from hub.privacy import export, retention
from hub.privacy.erase import erase_customer
from hub.privacy.job import run_every
from hub.privacy.scrub import anonymous, without_claims
from hub.settings import RetentionSettings
from hub.store.blobs import BlobStore
from hub.store.event_outbox import PendingEvent
from hub.store.schema import customers, events
from hub.store.store import Store
from tests.conftest import AGENT_PASSWORD, make_settings
from tests.helpers import channelhub, hub_store, login, running_hub

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 26, 12, tzinfo=UTC).timestamp()
DAY = 86_400.0


def _unique(label: str) -> str:
    return f"{label}{uuid.uuid4().hex[:12]}"


@dataclass
class Planted:
    """A person with a unique string in every place the store keeps something of them."""

    customer_id: str
    other_id: str
    secrets: dict[str, str] = field(default_factory=dict)  # what -> unique string
    other_secret: str = ""
    blobs: dict[str, bytes] = field(default_factory=dict)  # blob ref -> bytes (the person's)
    shared_ref: str = ""
    other_ref: str = ""
    conversations: list[str] = field(default_factory=list)
    claimant: str = ""


async def _settle(future: Any) -> None:
    await future


async def plant(store: Store, blobs: BlobStore, service: Customers) -> Planted:
    s = {
        "name": _unique("Name"),
        "company": _unique("Company"),
        "product": _unique("Product"),
        "invoice": _unique("INV"),
        "order": _unique("ORD"),
        "number": _unique("K"),
        "email": f"{_unique('mail')}@example.com",
        "text": _unique("Text"),
        "subject": _unique("Subject"),
        "reply": _unique("Reply"),
        "note": _unique("Note"),
        "file_name": _unique("File"),
        "file_body": _unique("FileBody"),
        "prospect_text": _unique("Prospect"),
        "transfer_note": _unique("Transfer"),
        "decline": _unique("Decline"),
    }
    digits = str(uuid.uuid4().int)[:7]
    phone = f"+4930{digits}"
    s["phone"] = phone
    other = _unique("Other")
    other_email = f"{other.lower()}@example.com"
    rows = (
        "customer_id,name,company,email,phone,tags,tier\n"
        f"{s['number']},{s['name']},{s['company']},{s['email']},{phone},,\n"
        f"K-OTHER,{other},,{other_email},,,\n"
    )
    orders_csv = (
        "order_id,customer_id,date,amount,product\n"
        f"{s['order']},{s['number']},2026-11-01,800.00,{s['product']}\n"
        f"ORD-OTHER,K-OTHER,2026-11-01,10.00,{other}\n"
    )
    invoices_csv = (
        "invoice_id,customer_id,issued,due,paid,amount\n"
        f"{s['invoice']},{s['number']},2026-11-01,2026-11-15,,800.00\n"
    )
    pipeline = Pipeline(store, MemoryBus(), PassthroughDecider("general"), Metrics())
    # a prospect who wrote by SMS first, merged into the customer on import
    prospect = await pipeline.ingest(
        Envelope(
            channel="sms",
            inbox="sms-de",
            direction=Direction.INBOUND,
            idempotency_key=_unique("SM"),
            received_at=NOW - 3 * DAY,
            sender=Identity(kind="phone", address=phone),
            thread=ThreadHints(session=f"sms:{phone}"),
            text=s["prospect_text"],
        )
    )
    for name, data in (("c.csv", rows), ("o.csv", orders_csv), ("i.csv", invoices_csv)):
        report = await service.import_file(csvimport.parse(data.encode(), name))
        assert not report.errors, report.errors
    await service.recompute()
    customer_id = await service.find(s["email"])
    other_id = await service.find(other_email)
    assert customer_id and other_id
    planted = Planted(customer_id, other_id, s, other)
    mine = await blobs.put(s["file_body"].encode(), name=s["file_name"], content_type="text/plain")
    shared_bytes = _unique("shared file both customers sent").encode()
    shared = await blobs.put(shared_bytes, name="shared.txt", content_type="text/plain")
    theirs = await blobs.put(other.encode(), name="other.txt", content_type="text/plain")
    planted.blobs = {mine.blob_ref: s["file_body"].encode()}
    planted.shared_ref, planted.other_ref = shared.blob_ref, theirs.blob_ref
    mail = await pipeline.ingest(
        Envelope(
            channel="email",
            inbox="support",
            direction=Direction.INBOUND,
            idempotency_key=f"<{_unique('m')}@example.com>",
            received_at=NOW - 2 * DAY,
            sender=Identity(kind="email", address=s["email"], display_name=s["name"]),
            subject=s["subject"],
            text=s["text"],
            attachments=(mine, shared),
        )
    )
    await pipeline.ingest(
        Envelope(
            channel="email",
            inbox="support",
            direction=Direction.INBOUND,
            idempotency_key=f"<{_unique('o')}@example.com>",
            received_at=NOW - 2 * DAY,
            sender=Identity(kind="email", address=other_email),
            text=other,
            attachments=(theirs, shared),
        )
    )
    cid = mail.conversation_id
    planted.conversations = [prospect.conversation_id, cid]
    await store.assign(cid, "alice")
    reply = await store.add_reply(cid, agent="alice", client_id="r1", text=s["reply"])
    await store.add_reply(cid, agent="alice", client_id="n1", text=s["note"], note=True)
    await store.record_delivery(
        reply.message.id,
        Delivery(
            status=DeliveryStatus.FAILED,
            error_code="550",
            error_message=f"mailbox {s['email']} full",
        ),
    )
    await store.audit(
        "conversation.transferred",
        conversation_id=cid,
        agent="alice",
        data={"queue": "general", "to_agent": "bob", "note": s["transfer_note"], "reason": None},
    )
    await store.audit(
        "offer.declined", conversation_id=cid, agent="bob", data={"reason": s["decline"]}
    )
    await store.close_conversation(cid, agent="alice", disposition="resolved")
    await store.audit(
        "customer.view_refused",
        agent="bob",
        data={"customer_id": customer_id, "key": s["email"], "endpoint": "GET /api/customers"},
    )
    await store.set_opt_out("sms-de", Identity(kind="phone", address=phone), True, "STOP")
    # someone else claimed the person's address without proof
    planted.claimant = "claimant-" + uuid.uuid4().hex[:8]
    async with store.engine.begin() as connection:
        await connection.execute(
            customers.insert(),
            {
                "id": planted.claimant,
                "kind": "prospect",
                "name": "Somebody",
                "created_at": NOW,
                "attributes": {
                    "claims": [
                        {"kind": "email", "address": s["email"], "customer": customer_id},
                        {"kind": "email", "address": other_email, "customer": other_id},
                    ]
                },
            },
        )
    return planted


@pytest.fixture
async def world(
    store_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Store, BlobStore, Customers]]:
    store = hub_store(store_url, clock=lambda: NOW)
    await store.start()
    try:
        yield store, BlobStore(tmp_path / "blobs"), Customers(store)
    finally:
        await store.close()


def _text(rows: Sequence[Any]) -> str:
    """Rows as text in full (a Row's repr cuts long values short: a secret would hide)."""
    return repr([tuple(row) for row in rows])


async def _all_rows(store: Store) -> dict[str, str]:
    """Every table's rows as text (also tables the schema module does not know of)."""
    async with store.engine.connect() as connection:
        if store.engine.dialect.name == "sqlite":
            names = (
                await connection.execute(
                    text("SELECT name FROM sqlite_master WHERE type = 'table'")
                )
            ).scalars()
            return {
                name: _text((await connection.execute(text(f'SELECT * FROM "{name}"'))).all())
                for name in list(names)
            }
        names = (
            await connection.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            )
        ).scalars()
        return {
            name: _text((await connection.execute(text(f'SELECT t::text FROM "{name}" t'))).all())
            for name in list(names)
        }


async def test_export_holds_every_planted_item(
    world: tuple[Store, BlobStore, Customers],
) -> None:
    store, blobs, service = world
    planted = await plant(store, blobs, service)
    s = planted.secrets
    document, files = await export.collect(store, planted.customer_id, actor="dpo")
    buffer = io.BytesIO()
    assert export.write_zip(document, files, blobs, buffer) == []
    archive = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    data = json.loads(archive.read("customer.json"))
    assert data["format"] == "channelhub-customer-export/1"
    assert data["customer"]["name"] == s["name"] and data["customer"]["company"] == s["company"]
    assert data["customer"]["external_id"] == s["number"]
    assert {(i["kind"], i["address"]) for i in data["identities"]} == {
        ("email", s["email"]),
        ("phone", s["phone"]),
    }
    assert [m["kind"] for m in data["merged_records"]] == ["merged"]
    assert data["value"]["last_purchase"] == s["product"]
    assert [o["external_id"] for o in data["orders"]] == [s["order"]]
    assert data["orders"][0]["product"] == s["product"]
    assert [i["external_id"] for i in data["invoices"]] == [s["invoice"]]
    assert [o["keyword"] for o in data["opt_outs"]] == ["STOP"]
    assert data["claimed_by"] == [planted.claimant]
    assert sorted(c["id"] for c in data["conversations"]) == sorted(planted.conversations)
    texts = [m["text"] for c in data["conversations"] for m in c["messages"]]
    assert {s["prospect_text"], s["text"], s["reply"], s["note"]} <= set(texts)
    mail = next(m for c in data["conversations"] for m in c["messages"] if m["text"] == s["text"])
    assert mail["envelope"]["sender"]["address"] == s["email"]
    assert mail["subject"] == s["subject"]
    assert mail["created_at"] == "2026-11-24T12:00:00+00:00"
    names = {a["name"]: a["file"] for a in mail["attachments"]}
    assert archive.read(names[s["file_name"]]) == s["file_body"].encode()
    assert archive.read(names["shared.txt"]).startswith(b"shared file")
    kinds = {entry["kind"] for entry in data["audit"]}
    assert {
        "conversation.created",
        "message.received",
        "reply.queued",
        "note.added",
        "delivery.updated",
        "conversation.transferred",
        "offer.declined",
        "conversation.assigned",
        "conversation.closed",
        "customer.view_refused",
        "customer.merged",
        "consent.opt_out",
        "customer.exported",
    } <= kinds
    # what the rules saw of their messages, as it was (issue 20: rules diff replays it)
    seen = data["routing_records"]
    assert len(seen) == 2  # the prospect's SMS and the mail (replies are no inbound messages)
    mail_seen = next(r for r in seen if r["message_id"] == mail["id"])
    assert mail_seen["customer"]["name"] == s["name"] and mail_seen["sender"] == s["email"]
    assert mail_seen["decision"]["queue"] == "general" and mail_seen["created"] is True
    assert mail_seen["decided_at"] == "2026-11-26T12:00:00+00:00"
    # nothing of the other customer
    assert planted.other_secret not in json.dumps(data)


async def test_erase_leaves_no_trace_and_others_untouched(
    world: tuple[Store, BlobStore, Customers], tmp_path: Path
) -> None:
    store, blobs, service = world
    planted = await plant(store, blobs, service)
    secrets = list(planted.secrets.values())
    # an event a Redis outage kept unpublished carries the message's text
    unpublished = MessageStored(
        conversation_id=planted.conversations[1],
        message_id="m",
        direction="inbound",
        text=planted.secrets["text"],
    )
    await store.add_events([PendingEvent("01unpublished", MESSAGES, unpublished)], "dead", 60.0)
    before = await _all_rows(store)
    assert planted.secrets["text"] in before["event_outbox"]
    for secret in (planted.secrets["email"], planted.secrets["text"], planted.secrets["name"]):
        assert any(secret in rows for rows in before.values())
    with pytest.raises(InvalidState, match="open conversations"):
        # the prospect's SMS conversation is still waiting
        await erase_customer(store, blobs, planted.customer_id, actor="dpo")
    report = await erase_customer(store, blobs, planted.customer_id, actor="dpo", close_open=True)
    assert (report.records, report.identities, report.conversations) == (2, 2, 2)
    assert (report.messages, report.attachments, report.orders, report.invoices) == (4, 2, 1, 1)
    assert (report.opt_outs, report.claims_removed, report.blobs_removed) == (1, 1, 1)
    after = await _all_rows(store)
    async with store.read() as connection:
        kept = (await connection.execute(text("SELECT customer_id FROM routing_records"))).all()
    assert kept == [(planted.other_id,)]  # what the rules saw of the other customer only
    for table, rows in after.items():
        for secret in secrets:
            assert secret not in rows, (table, secret)
    assert planted.other_secret in after["customers"] and planted.other_secret in after["messages"]
    # the database file itself, and every file in the blob directory
    if store.engine.dialect.name == "sqlite":
        database = Path(store.engine.url.database or "")
        for path in database.parent.glob(database.name + "*"):
            raw = path.read_bytes()
            for secret in secrets:
                assert secret.encode() not in raw, (path.name, secret)
    stored = {path: path.read_bytes() for path in (tmp_path / "blobs").rglob("*") if path.is_file()}
    for raw in stored.values():
        for secret in secrets:
            assert secret.encode() not in raw
    refs = {ref: blobs.path(ref) for ref in (planted.shared_ref, planted.other_ref)}
    assert all(path in stored for path in refs.values()), "others' files and shared ones stay"
    assert not blobs.path(next(iter(planted.blobs))).exists()
    async with store.read() as connection:
        erased = (
            await connection.execute(select(events).where(events.c.kind == "customer.erased"))
        ).one()
        anonymised = (
            await connection.execute(
                select(func.count())
                .select_from(events)
                .where(events.c.conversation_id.in_(planted.conversations))
            )
        ).scalar_one()
        claimant = (
            await connection.execute(
                select(customers.c.attributes).where(customers.c.id == planted.claimant)
            )
        ).scalar_one()
    assert erased.agent == "dpo" and erased.data["customer_id"] == planted.customer_id
    assert anonymised > 5  # the facts stay for reports
    assert [claim["customer"] for claim in claimant["claims"]] == [planted.other_id]
    assert await service.find(planted.secrets["email"]) is None
    assert await service.find(planted.other_id) == planted.other_id


@pytest.mark.parametrize(
    ("kind", "data", "kept"),
    [
        (
            "message.received",
            {"channel": "sms", "inbox": "sms-de"},
            {"channel": "sms", "inbox": "sms-de"},
        ),
        (
            "conversation.transferred",
            {"queue": "q", "note": "secret", "reason": "transferred"},
            {"queue": "q", "reason": "transferred"},
        ),
        ("offer.declined", {"reason": "the customer is my neighbour"}, {}),
        (
            "delivery.updated",
            {"status": "failed", "error": "21211: bad To +4930123"},
            {"status": "failed"},
        ),
        (
            "consent.opt_out",
            {"inbox": "sms", "kind": "phone", "address": "+49301", "keyword": "STOP"},
            {"inbox": "sms"},
        ),
        (
            "customer.view_refused",
            {"customer_id": "c1", "key": "a@b.example", "endpoint": "E"},
            {"customer_id": "c1", "endpoint": "E"},
        ),
        (
            "identity.clash",
            {"kind": "email", "address": "a@b.example", "vouched": "K77", "owner": "c2"},
            {"owner": "c2"},
        ),
        (
            "customer.merged",
            {"from": "p", "into": "c", "reason": "sms vouched for K77", "identities": ["i"]},
            {"from": "p", "into": "c", "identities": ["i"]},
        ),
        ("conversation.closed", None, {}),
    ],
)
def test_what_an_event_about_an_erased_person_keeps(
    kind: str, data: dict[str, Any] | None, kept: dict[str, Any]
) -> None:
    assert anonymous(kind, data) == {**kept, "erased": True}


def test_claims_on_the_person_are_removed_from_other_records() -> None:
    claims = {
        "claims": [
            {"kind": "email", "address": "a@x", "customer": "c1"},
            {"kind": "email", "address": "b@x", "customer": "c2"},
        ],
        "other": 1,
    }
    assert without_claims(claims, {"c1"}, set()) == {"claims": [claims["claims"][1]], "other": 1}
    assert without_claims(claims, {"zz"}, {("email", "b@x")}) == {
        "claims": [claims["claims"][0]],
        "other": 1,
    }
    assert without_claims(claims, {"zz"}, set()) is None
    assert without_claims(None, {"c1"}, set()) is None


# -- retention -------------------------------------------------------------------------------------


async def test_retention_removes_exactly_what_is_due(
    world: tuple[Store, BlobStore, Customers],
) -> None:
    store, blobs, _ = world
    pipeline = Pipeline(store, MemoryBus(), PassthroughDecider("general"), Metrics())

    async def conversation(
        label: str, age_days: float, *, close: bool, file: bool = False
    ) -> tuple[str, str | None]:
        attachment = None
        if file:
            attachment = await blobs.put(
                label.encode() + b"-file", name=f"{label}.txt", content_type="text/plain"
            )
        stored = await pipeline.ingest(
            Envelope(
                channel="webchat",
                inbox="webchat",
                direction=Direction.INBOUND,
                idempotency_key=label,
                received_at=NOW - age_days * DAY,
                sender=Identity(kind="webchat", address=f"visitor-{label}"),
                thread=ThreadHints(session=f"visitor-{label}"),
                text=label,
                attachments=(attachment,) if attachment else (),
            )
        )
        if close:
            await store.assign(stored.conversation_id, "alice")
            await store.close_conversation(
                stored.conversation_id, agent="alice", disposition="done"
            )
        return stored.conversation_id, attachment.blob_ref if attachment else None

    # the store's clock stamps closes at NOW; the policy is applied as if 800 days later
    later = NOW + 800 * DAY
    _old_closed, old_ref = await conversation("old-closed", 0, close=True, file=True)
    still_open, _ = await conversation("still-open", 0, close=False)
    policy = RetentionSettings(conversations="730d")
    preview = await retention.preview(store, policy, later)
    assert (preview.conversations, preview.messages, preview.dry_run) == (1, 1, True)
    report = await retention.apply_retention(store, blobs, policy, later)
    assert (report.conversations, report.messages, report.attachments, report.blobs_removed) == (
        1,
        1,
        1,
        1,
    )
    assert report.events_anonymised >= 3
    assert old_ref is not None and not blobs.path(old_ref).exists()
    async with store.read() as connection:
        left = set((await connection.execute(text("SELECT id FROM conversations"))).scalars())
    assert left == {still_open}
    # nothing more is due: a second run removes nothing
    again = await retention.apply_retention(store, blobs, policy, later)
    assert (again.conversations, again.messages) == (0, 0)

    # files older than a year go, their messages stay; younger ones stay
    _, young_ref = await conversation("young-file", 0, close=False, file=True)
    _, aged_ref = await conversation("aged-file", 400, close=False, file=True)
    files = await retention.apply_retention(
        store, blobs, RetentionSettings(attachments="365d"), NOW
    )
    assert (files.attachments, files.blobs_removed, files.messages) == (1, 1, 0)
    assert (
        young_ref
        and aged_ref
        and blobs.path(young_ref).exists()
        and not blobs.path(aged_ref).exists()
    )

    # prospects without contact for 90 days are erased; customers and recent prospects stay
    async with store.engine.begin() as connection:
        await connection.execute(
            customers.insert(),
            [
                {
                    "id": "lonely",
                    "kind": "prospect",
                    "name": "Lonely",
                    "created_at": NOW - 100 * DAY,
                },
                {"id": "fresh", "kind": "prospect", "name": "Fresh", "created_at": NOW - 10 * DAY},
                {"id": "crm", "kind": "customer", "name": "Crm", "created_at": NOW - 900 * DAY},
            ],
        )
    prospects = await retention.apply_retention(
        store, blobs, RetentionSettings(prospects_without_contact="90d"), NOW
    )
    assert prospects.prospects == 1
    async with store.read() as connection:
        ids = set((await connection.execute(select(customers.c.id))).scalars())
        erased = (
            await connection.execute(
                select(events.c.agent, events.c.data).where(events.c.kind == "customer.erased")
            )
        ).all()
    assert {"fresh", "crm"} <= ids and "lonely" not in ids
    assert [(row.agent, row.data["customer_id"]) for row in erased] == [("retention", "lonely")]

    # audit events older than the cutoff
    async with store.read() as connection:
        total = (await connection.execute(select(func.count()).select_from(events))).scalar_one()
        old = (
            await connection.execute(
                select(func.count()).select_from(events).where(events.c.at < NOW - 100 * DAY)
            )
        ).scalar_one()
    pruned = await retention.apply_retention(
        store, blobs, RetentionSettings(audit_events="100d"), NOW
    )
    assert pruned.audit_events == old
    async with store.read() as connection:
        applied = (
            (
                await connection.execute(
                    select(events.c.data).where(events.c.kind == "retention.applied")
                )
            )
            .scalars()
            .all()
        )
        remaining = (
            await connection.execute(select(func.count()).select_from(events))
        ).scalar_one()
    assert remaining == total - old + 1
    assert applied[-1]["audit_events"] == old


async def test_retention_cuts_routing_records_by_their_age(store_url: str, tmp_path: Path) -> None:
    """What the rules saw goes after ``routing_records``; the messages stay (rules diff then
    replays their envelope only), and a removed conversation takes its records along."""
    clock = [NOW - 40 * DAY]
    store = Store(store_url, clock=lambda: clock[0])
    await store.start()
    blobs = BlobStore(tmp_path / "blobs")
    try:
        pipeline = Pipeline(store, MemoryBus(), PassthroughDecider("general"), Metrics())
        stored = []
        for label in ("old", "young"):
            stored.append(
                await pipeline.ingest(
                    Envelope(
                        channel="webchat",
                        inbox="webchat",
                        direction=Direction.INBOUND,
                        idempotency_key=label,
                        received_at=clock[0],
                        sender=Identity(kind="webchat", address=f"visitor-{label}"),
                        thread=ThreadHints(session=f"visitor-{label}"),
                        text=label,
                    )
                )
            )
            clock[0] = NOW - 10 * DAY
        policy = RetentionSettings(routing_records="30d")
        preview = await retention.preview(store, policy, NOW)
        assert preview.routing_records == 1
        report = await retention.apply_retention(store, blobs, policy, NOW)
        assert (report.routing_records, report.messages, report.conversations) == (1, 0, 0)
        async with store.read() as connection:
            left = set(
                (await connection.execute(text("SELECT message_id FROM routing_records")))
                .scalars()
                .all()
            )
            messages_left = (
                await connection.execute(text("SELECT count(*) FROM messages"))
            ).scalar_one()
        assert left == {stored[1].message_id} and messages_left == 2
        assert (await retention.apply_retention(store, blobs, policy, NOW)).routing_records == 0
        # a conversation removed by the policy takes its record along
        young = stored[1].conversation_id
        await store.assign(young, "alice")
        await store.close_conversation(young, agent="alice", disposition="done")
        gone = await retention.apply_retention(
            store, blobs, RetentionSettings(conversations="1d"), NOW + 30 * DAY
        )
        assert gone.conversations == 1
        async with store.read() as connection:
            count = (
                await connection.execute(text("SELECT count(*) FROM routing_records"))
            ).scalar_one()
        assert count == 0
    finally:
        await store.close()


async def test_the_job_runs_at_once_then_every_interval() -> None:
    runs: list[str] = []
    waits: list[float] = []

    async def job() -> None:
        runs.append("run")
        if len(runs) == 2:
            raise RuntimeError("the store hiccupped")  # logged; the next turn runs

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:
            raise asyncio.CancelledError

    import asyncio

    with pytest.raises(asyncio.CancelledError):
        await run_every(job, 3600.0, sleep)
    assert (runs, waits) == (["run"] * 3, [3600.0] * 3)


def test_retention_settings() -> None:
    from hub.errors import ConfigError
    from hub.settings import validate_settings
    from rules.yamlfile import YamlDocument

    settings = validate_settings(
        YamlDocument("hub.yaml", {"retention": {"conversations": "730d", "attachments": "365d"}})
    )
    assert settings.retention.conversations == 730 * DAY and settings.retention.configured
    assert not validate_settings(YamlDocument("hub.yaml", {})).retention.configured
    with pytest.raises(ConfigError, match=r"retention\.conversation"):
        validate_settings(YamlDocument("hub.yaml", {"retention": {"conversation": "1d"}}))
    with pytest.raises(ConfigError, match=r"retention\.every"):
        validate_settings(YamlDocument("hub.yaml", {"retention": {"every": "1s"}}))


# -- API and CLI ----------------------------------------------------------------------------------


@pytest.mark.integration
async def test_privacy_endpoints_are_for_admins(sqlite_url: str, tmp_path: Path) -> None:
    hashed = hash_password(AGENT_PASSWORD)
    settings = make_settings(
        sqlite_url,
        tmp_path,
        agents=[
            {"id": "alice", "name": "Alice", "password_hash": hashed},
            {"id": "sam", "name": "Sam", "password_hash": hashed, "role": "supervisor"},
            {"id": "ada", "name": "Ada", "password_hash": hashed, "role": "admin"},
        ],
        retention={"conversations": "730d", "every": "1d"},
    )
    async with running_hub(settings, clock=lambda: NOW) as hub:
        store = hub.store
        blobs = BlobStore(tmp_path / "blobs")
        planted = await plant(store, blobs, Customers(store))
        tokens = {who: await login(hub, who, AGENT_PASSWORD) for who in ("alice", "sam", "ada")}
        email = planted.secrets["email"]
        async with aiohttp.ClientSession() as session:

            async def call(method: str, path: str, who: str, **kwargs: Any) -> tuple[int, bytes]:
                async with session.request(
                    method,
                    f"{hub.url}{path}",
                    headers={"Authorization": f"Bearer {tokens[who]}"},
                    **kwargs,
                ) as response:
                    return response.status, await response.read()

            for who in ("alice", "sam"):
                assert (await call("GET", f"/api/privacy/customers/{email}/export", who))[0] == 403
                assert (
                    await call(
                        "POST",
                        "/api/privacy/customers/erase",
                        who,
                        json={"customer": email, "confirm": "x"},
                    )
                )[0] == 403
                assert (await call("POST", "/api/privacy/retention/run", who))[0] == 403
            status, body = await call("GET", f"/api/privacy/customers/{email}/export", "ada")
            assert status == 200
            data = json.loads(zipfile.ZipFile(io.BytesIO(body)).read("customer.json"))
            assert data["customer"]["id"] == planted.customer_id
            assert (await call("GET", "/api/privacy/customers/nobody@example.com/export", "ada"))[
                0
            ] == 404
            status, body = await call(
                "POST",
                "/api/privacy/customers/erase",
                "ada",
                json={"customer": email, "confirm": "wrong"},
            )
            assert status == 400 and b"not_confirmed" in body
            status, body = await call(
                "POST",
                "/api/privacy/customers/erase",
                "ada",
                json={"customer": email, "confirm": planted.customer_id},
            )
            assert status == 409 and b"open conversations" in body
            status, body = await call(
                "POST",
                "/api/privacy/customers/erase",
                "ada",
                json={"customer": email, "confirm": planted.customer_id, "close_open": True},
            )
            assert status == 200, body
            assert json.loads(body)["erased"]["records"] == 2
            assert (await call("GET", f"/api/privacy/customers/{email}/export", "ada"))[0] == 404
            status, body = await call("POST", "/api/privacy/retention/run?dry_run=true", "ada")
            assert status == 200 and json.loads(body)["retention"]["dry_run"] is True
            assert (await call("POST", "/api/privacy/retention/run?dry_run=perhaps", "ada"))[
                0
            ] == 400
        async with store.read() as connection:
            erased = (
                (
                    await connection.execute(
                        select(events.c.agent).where(events.c.kind == "customer.erased")
                    )
                )
                .scalars()
                .all()
            )
            exported = (
                (
                    await connection.execute(
                        select(events.c.agent).where(events.c.kind == "customer.exported")
                    )
                )
                .scalars()
                .all()
            )
            applied = (
                await connection.execute(
                    select(func.count())
                    .select_from(events)
                    .where(events.c.kind == "retention.applied")
                )
            ).scalar_one()
        assert erased == ["ada"] and exported == ["ada"]
        assert applied >= 1  # the scheduled job ran at start


def test_customers_export_and_erase_cli(tmp_path: Path) -> None:
    import asyncio

    url = f"sqlite+aiosqlite:///{tmp_path}/hub.db"
    config = tmp_path / "hub.yaml"
    config.write_text(f"storage: {{url: '{url}', blobs: '{tmp_path}/blobs'}}\n")

    async def setup() -> Planted:
        store = hub_store(url, clock=lambda: NOW)
        await store.start()
        try:
            return await plant(store, BlobStore(tmp_path / "blobs"), Customers(store))
        finally:
            await store.close()

    planted = asyncio.run(setup())

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return channelhub(*args, "--config", str(config), cwd=tmp_path)

    email = planted.secrets["email"]
    out = tmp_path / "person.zip"
    done = cli("customers", "export", email, "-o", str(out), "--actor", "dpo")
    assert done.returncode == 0, done.stderr
    assert "2 conversations" in done.stdout
    assert (
        json.loads(zipfile.ZipFile(out).read("customer.json"))["customer"]["name"]
        == planted.secrets["name"]
    )
    refused = cli("customers", "erase", email)
    assert refused.returncode == 2 and "cannot be undone" in refused.stderr
    still_open = cli("customers", "erase", email, "--yes")
    assert still_open.returncode == 1 and "open conversations" in still_open.stderr
    erased = cli("customers", "erase", email, "--yes", "--close-open", "--vacuum", "--actor", "dpo")
    assert erased.returncode == 0, erased.stderr
    assert json.loads(erased.stdout)["erased"]["records"] == 2
    assert cli("customers", "show", email).returncode == 1
    raw = (tmp_path / "hub.db").read_bytes()
    assert all(secret.encode() not in raw for secret in planted.secrets.values())
    assert cli("retention", "run").returncode == 1  # no policy configured


@pytest.mark.parametrize("vacuum", [False, True])
async def test_sqlite_free_pages(tmp_path: Path, vacuum: bool) -> None:
    """The file check can see leftovers: with ``secure_delete`` forced off (a database written
    before this version, or a SQLite built without it on by default) freed space still holds
    the person's data after an erasure, until ``vacuum`` rebuilds the file. The hub's own
    connections run with it on."""
    from sqlalchemy import event

    url = f"sqlite+aiosqlite:///{tmp_path}/hub.db"
    store = hub_store(url, clock=lambda: NOW)

    @event.listens_for(store.engine.sync_engine, "connect")
    def _off(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA secure_delete=OFF")
        cursor.close()

    await store.start()
    try:
        blobs = BlobStore(tmp_path / "blobs")
        planted = await plant(store, blobs, Customers(store))
        await erase_customer(
            store, blobs, planted.customer_id, actor="dpo", close_open=True, vacuum=vacuum
        )
        raw = b"".join(path.read_bytes() for path in tmp_path.glob("hub.db*"))
        left = [name for name, secret in planted.secrets.items() if secret.encode() in raw]
        assert bool(left) is not vacuum, left
    finally:
        await store.close()
    plain = hub_store(url)
    try:
        async with plain.engine.connect() as connection:
            assert (await connection.execute(text("PRAGMA secure_delete"))).scalar_one() == 1
    finally:
        await plain.engine.dispose()
