"""Customer identities, CRM import, value classification and the context rules and agents see."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from hub.bus import MemoryBus
from hub.customers import csvimport
from hub.customers.identity import (
    InvalidAddress,
    normalize_email,
    normalize_identity,
    normalize_phone,
)
from hub.customers.repository import Customers
from hub.customers.valuation import DAY, Invoice, Order, compute
from hub.envelope import Direction, Envelope, Identity, ThreadHints
from hub.errors import InvalidState, NotFound
from hub.metrics import Metrics
from hub.pipeline import PassthroughDecider, Pipeline
from hub.routing import RulesDecider
from hub.store.schema import conversations, customer_stats, customers, identities
from hub.store.store import Store
from rules.loader import load_rules
from rules.reload import RulesHolder
from tests.helpers import channelhub, hub_store

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 26, 12, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("kind", "raw", "expected"),
    [
        ("email", "Anna.Muster@Example.COM", "Anna.Muster@example.com"),
        ("email", " <ann@shop.example.> ", "ann@shop.example"),
        ("phone", "030 1234567", "+49301234567"),
        ("phone", "+49 (0)30 123-4567", "+49301234567"),
        ("phone", "0049 30 1234567", "+49301234567"),
        ("phone", "+1 415 555 2671", "+14155552671"),
        ("whatsapp", "whatsapp:+4915112345678", "+4915112345678"),
        ("fax", "089/123456", "+4989123456"),
        ("webchat", "AbC-visitor", "AbC-visitor"),
    ],
)
def test_identity_normalization(kind: str, raw: str, expected: str) -> None:
    assert normalize_identity(Identity(kind=kind, address=raw)).address == expected


@pytest.mark.parametrize("raw", ["no-at-sign", "a@b", "@example.com", "a b@example.com"])
def test_bad_email(raw: str) -> None:
    with pytest.raises(InvalidAddress):
        normalize_email(raw)


@pytest.mark.parametrize("raw", ["abc", "12", "+49 1"])
def test_bad_phone(raw: str) -> None:
    with pytest.raises(InvalidAddress):
        normalize_phone(raw)


def test_csv_utf8_with_errors_and_line_numbers() -> None:
    raw = (
        "\ufeffcustomer_id,name,email,phone,tier,tags\n"
        "K1,Anna Müller,anna@example.com,030 1234567,A,vip|B2B\n"
        "K2,,bob@example.com,,,\n"
        'K3,"Multi\nLine",c@example.com,,,\n'
        "K4,Dora,d@example.com,,Z,\n"
        "K1,Again,x@example.com,,,\n"
        "K5,Too,many,fields,here,x,y\n"
    ).encode()
    parsed = csvimport.parse(raw, "customers.csv")
    assert parsed.kind == "customers"
    assert [r.external_id for r in parsed.records] == ["K1", "K3"]
    first = parsed.records[0]
    assert isinstance(first, csvimport.CustomerRecord)
    assert (first.name, first.tier, first.tags) == ("Anna Müller", "A", ("vip", "b2b"))
    assert parsed.errors == [
        (3, "name is empty"),
        (6, "tier must be A, B or C, not 'Z'"),
        (7, "id 'K1' already on line 2"),
        (8, "7 fields, the header has 6"),
    ]


def test_csv_german_excel_export() -> None:
    raw = (
        "order_id;customer_id;date;amount;product\r\n"
        "A1;K1;26.11.2026;1.234,56;Espressomaschine\r\n"
        "A2;K1;2026-01-02;12,5;Bohnen\r\n"
        "A3;K1;32.13.2026;1,00;x\r\n"
        "A4;K1;01.01.2026;zwölf;x\r\n"
    ).encode("cp1252")
    parsed = csvimport.parse(raw, "orders.csv")
    assert parsed.kind == "orders"
    amounts = [(r.external_id, r.amount_cents) for r in parsed.records]  # type: ignore[union-attr]
    assert amounts == [("A1", 123456), ("A2", 1250)]
    assert parsed.records[0].ordered_at == datetime(2026, 11, 26, tzinfo=UTC).timestamp()  # type: ignore[union-attr]
    assert [line for line, _ in parsed.errors] == [4, 5]


def test_csv_unknown_header_is_refused() -> None:
    with pytest.raises(csvimport.CsvError, match="unknown columns"):
        csvimport.parse(b"foo,bar\n1,2\n", "x.csv")
    with pytest.raises(csvimport.CsvError, match="empty"):
        csvimport.parse(b"", "x.csv")


def test_abc_rfm_and_punctuality_on_a_known_data_set() -> None:
    now = 400 * DAY
    orders = [
        Order("a", now - 10 * DAY, 80_000, "Kaffee"),
        Order("b", now - 20 * DAY, 15_000, "Tee"),
        Order("c", now - 30 * DAY, 4_000),
        Order("d", now - 390 * DAY, 99_999),  # outside the window: no revenue counted
        Order("e", now - 1 * DAY, 1_000),
    ]
    invoices = [
        Invoice("a", now - 5 * DAY, 1, paid_at=now - 6 * DAY),  # on time
        Invoice("a", now - 5 * DAY, 1),  # overdue
        Invoice("a", now + 5 * DAY, 1),  # not due yet: ignored
        Invoice("b", now - 5 * DAY, 1, paid_at=now - 1 * DAY),  # paid late
    ]
    stats = compute("abcdef", orders, invoices, now)
    # window revenue 100,000: a brings 80 % (A), b the next 15 % (B), c and e the rest (C)
    assert {key: s.abc for key, s in stats.items()} == {
        "a": "A",
        "b": "B",
        "c": "C",
        "d": "C",
        "e": "C",
        "f": "C",
    }
    assert (stats["a"].payment_punctuality, stats["a"].overdue_invoices) == (0.5, 1)
    assert stats["b"].payment_punctuality == 0.0
    assert stats["c"].payment_punctuality is None
    assert stats["d"].lifetime_value_cents == 99_999 and stats["d"].orders_12m == 0
    assert (stats["a"].last_purchase, stats["a"].orders_12m) == ("Kaffee", 1)
    # RFM among the four customers with orders in the window
    assert {key: (s.r, s.m) for key, s in stats.items() if s.r} == {
        "a": (4, 5),
        "b": (2, 4),
        "c": (1, 2),
        "e": (5, 1),
    }


CUSTOMERS_CSV = (
    "customer_id,name,company,email,phone,tags,tier\n"
    "K1,Anna Top,Apotheke,anna@example.com,030 1111111,key-account,\n"
    "K2,Bert Mid,,bert@example.com,,,\n"
    "K3,Carl Small,,carl@example.com,,,\n"
    "K4,Dora Manual,,dora@example.com,,,A\n"
)
ORDERS_CSV = (
    "order_id,customer_id,date,amount,product\n"
    "O1,K1,2026-11-01,800.00,Espressomaschine\n"
    "O2,K2,2026-10-01,150.00,Bohnen\n"
    "O3,K3,2026-09-01,50.00,Filter\n"
    "O4,K9,2026-09-01,50.00,Filter\n"
)
INVOICES_CSV = (
    "invoice_id,customer_id,issued,due,paid,amount\n"
    "I1,K1,2026-11-01,2026-11-15,,800.00\n"
    "I2,K2,2026-10-01,2026-10-15,2026-10-10,150.00\n"
)


@pytest.fixture
async def crm(store_url: str) -> AsyncIterator[tuple[Store, Customers]]:
    store = hub_store(store_url, clock=lambda: NOW)
    await store.start()
    try:
        yield store, Customers(store)
    finally:
        await store.close()


async def test_import_is_idempotent_and_values_feed_rules(
    crm: tuple[Store, Customers],
) -> None:
    store, service = crm
    reports = [
        await service.import_file(csvimport.parse(text.encode(), name))
        for name, text in (("c.csv", CUSTOMERS_CSV), ("o.csv", ORDERS_CSV), ("i.csv", INVOICES_CSV))
    ]
    assert [(r.created, r.updated, r.unchanged) for r in reports] == [
        (4, 0, 0),
        (3, 0, 0),
        (2, 0, 0),
    ]
    assert reports[1].errors == [(5, "unknown customer_id 'K9'; import customers first")]
    again = await service.import_file(csvimport.parse(CUSTOMERS_CSV.encode(), "c.csv"))
    assert (again.created, again.updated, again.unchanged) == (0, 0, 4)
    changed = await service.import_file(
        csvimport.parse(CUSTOMERS_CSV.replace("Bert Mid", "Bert Middle").encode(), "c.csv")
    )
    assert (changed.created, changed.updated, changed.unchanged) == (0, 1, 3)
    assert await service.recompute() == 4

    anna = await service.find("anna@EXAMPLE.com")  # domains are case-insensitive
    assert anna == await service.find("+49 30 1111111") == await service.find("K1")
    assert anna is not None
    context = await service.context(anna)
    assert (context["tier"], context["tier_source"], context["lifetime_value"]) == (
        "A",
        "computed",
        800.0,
    )
    assert context["overdue_invoices"] == 1 and context["payment_punctuality"] == 0.0
    assert context["last_purchase"] == "Espressomaschine"
    assert context["days_since_last_order"] == 25
    dora = await service.context(await service.find("dora@example.com") or "")
    assert (dora["tier"], dora["tier_source"]) == ("A", "manual")
    assert await service.find("nobody@example.com") is None

    # an email from Anna is routed by her tier and her overdue invoice
    ruleset = load_rules(
        "version: 1\nrules:\n"
        "  - name: vip\n    when: customer.tier == 'A' and customer.known\n"
        "    route: {queue: premium}\n"
        "  - name: overdue\n    when: customer.overdue_invoices > 0\n"
        "    instructions: [check invoices]\n",
        "rules.yaml",
    )
    decider = RulesDecider(RulesHolder(ruleset), timezone="UTC", calendars={}, clock=lambda: NOW)
    pipeline = Pipeline(store, MemoryBus(), decider, Metrics())
    mail = Envelope(
        channel="email",
        inbox="support",
        direction=Direction.INBOUND,
        idempotency_key="<m1@example.com>",
        received_at=NOW,
        sender=Identity(kind="email", address="anna@EXAMPLE.com", display_name="Anna"),
        text="Hallo",
    )
    accepted = await pipeline.ingest(mail)
    conversation = await store.conversation(accepted.conversation_id)
    assert conversation.queue == "premium"
    assert conversation.decision is not None
    assert conversation.decision["instructions"] == ["check invoices"]
    assert conversation.customer["customer_number"] == "K1"


async def test_prospect_is_merged_on_an_exact_identity_match(
    crm: tuple[Store, Customers],
) -> None:
    store, service = crm
    pipeline = Pipeline(store, MemoryBus(), PassthroughDecider("general"), Metrics())
    sms = Envelope(
        channel="sms",
        inbox="sms-de",
        direction=Direction.INBOUND,
        idempotency_key="SM1",
        received_at=NOW,
        sender=Identity(kind="phone", address="0301111111"),
        text="Hi",
    )
    first = await pipeline.ingest(sms)
    report = await service.import_file(csvimport.parse(CUSTOMERS_CSV.encode(), "c.csv"))
    assert report.merged == 1 and report.errors == []
    async with store.engine.connect() as connection:
        owner = (
            await connection.execute(
                select(conversations.c.customer_id).where(
                    conversations.c.id == first.conversation_id
                )
            )
        ).scalar_one()
        prospects = (
            await connection.execute(
                select(func.count()).select_from(customers).where(customers.c.kind == "prospect")
            )
        ).scalar_one()
        numbers = (
            await connection.execute(
                select(func.count())
                .select_from(identities)
                .where(identities.c.address == "+49301111111")
            )
        ).scalar_one()
    assert owner == await service.find("K1")
    assert prospects == 0 and numbers == 1
    # the same address on another customer is a conflict, reported with its line
    clash = CUSTOMERS_CSV + "K5,Eve,,anna@example.com,,,\n"
    report = await service.import_file(csvimport.parse(clash.encode(), "c.csv"))
    assert report.errors == [(6, "email anna@example.com already belongs to another customer")]


def test_customers_cli_import_and_show(tmp_path: Path) -> None:
    config = tmp_path / "hub.yaml"
    config.write_text(
        f"storage: {{url: 'sqlite+aiosqlite:///{tmp_path}/hub.db', blobs: '{tmp_path}/blobs'}}\n"
    )
    for name, text in (("c.csv", CUSTOMERS_CSV), ("o.csv", ORDERS_CSV)):
        (tmp_path / name).write_text(text)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return channelhub("customers", *args, "--config", str(config), cwd=tmp_path)

    result = cli("import", str(tmp_path / "o.csv"), str(tmp_path / "c.csv"))
    assert result.returncode == 1  # one rejected row
    assert f"{tmp_path / 'o.csv'}:5: unknown customer_id 'K9'" in result.stderr
    assert "customers: 4 new" in result.stdout and "orders: 3 new" in result.stdout
    shown = cli("show", "anna@example.com")
    assert shown.returncode == 0, shown.stderr
    context = json.loads(shown.stdout)
    assert context["customer_number"] == "K1" and context["tier"] == "A"
    assert cli("show", "nobody@example.com").returncode == 1


async def test_merge_and_undo(crm: tuple[Store, Customers]) -> None:
    store, service = crm
    for text in (CUSTOMERS_CSV, ORDERS_CSV, INVOICES_CSV):
        await service.import_file(csvimport.parse(text.encode(), "x.csv"))
    pipeline = Pipeline(store, MemoryBus(), PassthroughDecider("general"), Metrics())
    first = await pipeline.ingest(
        Envelope(
            channel="email",
            inbox="support",
            direction=Direction.INBOUND,
            idempotency_key="e1",
            received_at=NOW,
            sender=Identity(kind="email", address="bert@example.com"),
            text="x",
        )
    )
    anna, bert = await service.find("K1"), await service.find("K2")
    assert anna and bert
    merge_id = await service.merge(bert, anna, actor="alice")
    merged = await service.context(anna)
    assert {i["address"] for i in merged["identities"]} >= {"anna@example.com", "bert@example.com"}
    assert merged["lifetime_value"] == 950.0  # Bert's order moved along
    assert await service.find("bert@example.com") == anna
    assert (await store.conversation(first.conversation_id)).customer_id == anna
    with pytest.raises(InvalidState):
        await service.merge(bert, anna)
    with pytest.raises(InvalidState):
        await service.merge(anna, anna)

    result = await service.unmerge(merge_id, actor="alice")
    assert result == {"merge": merge_id, "restored": bert, "from": anna}
    assert await service.find("bert@example.com") == bert
    assert (await service.context(bert))["lifetime_value"] == 150.0
    assert (await service.context(anna))["lifetime_value"] == 800.0
    assert (await store.conversation(first.conversation_id)).customer_id == bert
    with pytest.raises(InvalidState):
        await service.unmerge(merge_id)
    with pytest.raises(NotFound):
        await service.unmerge(999_999)


async def test_customer_api(sqlite_url: str, tmp_path: Path) -> None:
    import aiohttp

    from hub.keys import CUSTOMERS
    from tests.conftest import _HASH, AGENT_PASSWORD, make_settings
    from tests.helpers import login, running_hub

    # a supervisor reads every customer and merges (agents: tests/test_access.py)
    staff = [{"id": "alice", "name": "Alice", "password_hash": _HASH, "role": "supervisor"}]
    async with running_hub(make_settings(sqlite_url, tmp_path, agents=staff)) as hub:
        service = hub.app[CUSTOMERS]
        for text in (CUSTOMERS_CSV, ORDERS_CSV):
            await service.import_file(csvimport.parse(text.encode(), "x.csv"))
        await service.recompute()
        token = await login(hub, "alice", AGENT_PASSWORD)
        auth = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{hub.url}/api/customers/K1") as response:
                assert response.status == 401
            async with session.get(
                f"{hub.url}/api/customers/anna@example.com", headers=auth
            ) as response:
                assert (await response.json())["customer_number"] == "K1"
            async with session.get(f"{hub.url}/api/customers/nobody", headers=auth) as response:
                assert response.status == 404
            async with session.post(
                f"{hub.url}/api/customers/merge",
                headers=auth,
                json={"source": "K2", "target": "K1"},
            ) as response:
                merge_id = (await response.json())["merge_id"]
            async with session.post(
                f"{hub.url}/api/customers/merge",
                headers=auth,
                json={"source": "K2", "target": "K1"},
            ) as response:
                assert response.status == 409
            async with session.post(
                f"{hub.url}/api/customers/merge", headers=auth, json={"source": "K2"}
            ) as response:
                assert response.status == 400
            async with session.post(
                f"{hub.url}/api/customers/unmerge", headers=auth, json={"merge_id": merge_id}
            ) as response:
                assert (await response.json())["merge"] == merge_id
            async with session.get(
                f"{hub.url}/api/customers/bert@example.com", headers=auth
            ) as response:
                assert (await response.json())["customer_number"] == "K2"


async def test_signed_web_chat_visitor_is_the_customer(sqlite_url: str, tmp_path: Path) -> None:
    import time

    from connectors.webchat.parse import customer_signature
    from hub.keys import CUSTOMERS
    from tests.conftest import AGENT_PASSWORD, make_settings
    from tests.helpers import agent_client, login, running_hub

    channels = [
        {"name": "webchat", "type": "webchat", "settings": {"identity_secret": "website-key-123"}}
    ]
    async with running_hub(make_settings(sqlite_url, tmp_path, channels=channels)) as hub:
        service = hub.app[CUSTOMERS]
        for text in (CUSTOMERS_CSV, ORDERS_CSV):
            await service.import_file(csvimport.parse(text.encode(), "x.csv"))
        await service.recompute()
        token = await login(hub, "alice", AGENT_PASSWORD)
        expires = int(time.time()) + 600
        signature = customer_signature(b"website-key-123", "K1", expires)
        from websockets.asyncio.client import connect

        # the widget sends these from the script tag's data-customer/-expires/-signature
        async with (
            agent_client(hub, token) as (agent, _),
            connect(f"{hub.ws_url}/ws/chat") as socket,
        ):
            await socket.send(
                json.dumps(
                    {"type": "hello", "customer": "K1", "expires": expires, "signature": signature}
                )
            )
            welcome = json.loads(await socket.recv())
            await socket.send(json.dumps({"type": "message", "client_id": "1", "text": "Hallo"}))
            assert json.loads(await socket.recv())["type"] == "ack"
            offer = await agent.expect("offer")
            assert offer["customer"]["customer_number"] == "K1"
            assert offer["customer"]["tier"] == "A"
        anna = await service.context(await service.find("K1") or "")
        assert {"kind": "webchat", "address": welcome["visitor"], "display_name": None} in anna[
            "identities"
        ]


async def test_incremental_recompute_equals_a_full_one(crm: tuple[Store, Customers]) -> None:
    store, service = crm
    reports = [
        await service.import_file(csvimport.parse(text.encode(), "x.csv"))
        for text in (CUSTOMERS_CSV, ORDERS_CSV, INVOICES_CSV)
    ]
    touched = set().union(*(report.touched for report in reports))
    assert len(touched) == 4
    assert await service.recompute(touched) == 4
    # Carl's order grows: only Carl's figures are rebuilt, everyone is re-ranked
    bigger = ORDERS_CSV.replace("O3,K3,2026-09-01,50.00", "O3,K3,2026-09-01,5000.00")
    report = await service.import_file(csvimport.parse(bigger.encode(), "o.csv"))
    assert (report.updated, report.touched) == (1, {await service.find("K3")})
    assert await service.recompute(report.touched) == 1

    async def snapshot() -> dict[str, tuple[object, ...]]:
        async with store.engine.connect() as connection:
            rows = (await connection.execute(select(customer_stats))).all()
        return {
            row.customer_id: tuple(v for k, v in row._mapping.items() if k != "computed_at")
            for row in rows
        }

    incremental = await snapshot()
    await service.recompute()
    assert incremental == await snapshot()
    carl = await service.context(await service.find("K3") or "")
    assert carl["tier"] == "A"  # now the top revenue


async def test_unverified_sender_and_claimed_contacts(crm: tuple[Store, Customers]) -> None:
    store, service = crm
    await service.import_file(csvimport.parse(CUSTOMERS_CSV.encode(), "c.csv"))
    anna = await service.find("K1")
    pipeline = Pipeline(store, MemoryBus(), PassthroughDecider("general"), Metrics())

    def mail(key: str, verified: bool) -> Envelope:
        return Envelope(
            channel="email",
            inbox="support",
            direction=Direction.INBOUND,
            idempotency_key=key,
            received_at=NOW,
            sender_verified=verified,
            sender=Identity(kind="email", address="anna@example.com"),
            text="Pay to IBAN …",
        )

    forged = await pipeline.ingest(mail("forged", verified=False))
    customer = (await store.conversation(forged.conversation_id)).customer
    assert customer["id"] != anna and not customer["known"]
    assert customer["attributes"]["claims"][0]["customer"] == anna
    genuine = await pipeline.ingest(mail("genuine", verified=True))
    assert (await store.conversation(genuine.conversation_id)).customer["id"] == anna

    def chat(key: str, visitor: str, *claimed: Identity) -> Envelope:
        return Envelope(
            channel="webchat",
            inbox="web",
            direction=Direction.INBOUND,
            idempotency_key=key,
            received_at=NOW,
            sender=Identity(kind="webchat", address=visitor),
            thread=ThreadHints(session=visitor),
            text="hi",
            claimed=claimed,
        )

    # a free address the visitor typed becomes theirs ...
    free = await pipeline.ingest(
        chat("c1", "v1", Identity(kind="email", address="New@Example.COM"))
    )
    v1 = (await store.conversation(free.conversation_id)).customer
    assert {"kind": "email", "address": "New@example.com", "display_name": None} in v1["identities"]
    # ... one that belongs to a customer is only a claim, never a link
    taken = await pipeline.ingest(
        chat(
            "c2",
            "v2",
            Identity(kind="phone", address="030 1111111"),
            Identity(kind="email", address="not an address"),
        )
    )
    v2 = (await store.conversation(taken.conversation_id)).customer
    assert v2["id"] != anna and not v2["known"]
    assert v2["attributes"]["claims"] == [
        {
            "kind": "phone",
            "address": "+49301111111",
            "customer": anna,
            "customer_number": "K1",
            "verified": False,
        }
    ]
    again = await pipeline.ingest(chat("c3", "v2", Identity(kind="phone", address="030 1111111")))
    v2_again = (await store.conversation(again.conversation_id)).customer
    assert len(v2_again["attributes"]["claims"]) == 1
