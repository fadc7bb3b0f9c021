"""Replaying a rules change (issue 20, item 1): what the rules saw is recorded at ingest, a
fixture history replays to exact counts, the customer is replayed as they were, messages stored
before recording replay with their envelope only; the command and the admins' endpoint."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import msgspec
import pytest
from sqlalchemy import delete, select

from hub.auth import hash_password
from hub.bus import MemoryBus
from hub.customers import csvimport
from hub.customers.repository import Customers
from hub.envelope import Direction, Envelope, Identity, ThreadHints
from hub.ingest.record import RoutingRecord, decode, encode, encoded, record_of
from hub.metrics import Metrics
from hub.pipeline import Pipeline
from hub.replay import service
from hub.replay.api import problem
from hub.replay.diff import Replayable, Summary, context_of, replay
from hub.replay.load import Period, Reader
from hub.replay.text import render
from hub.routing import RulesDecider
from hub.store.schema import routing_records
from hub.store.store import Store
from rules.context import CustomerFacts
from rules.decision import Decision, Priority
from rules.evaluate import evaluate, matched_trace
from rules.loader import load_rules
from rules.reload import RulesHolder
from tests.conftest import AGENT_PASSWORD, make_settings
from tests.helpers import login, running_hub

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 26, 12, tzinfo=UTC).timestamp()
DAY = 86_400.0

OLD = """\
version: 1
defaults: {queue: general}
rules:
  - name: billing
    when: contains_any(message.text, ["invoice", "rechnung"])
    route: {queue: billing}
    instructions: ["Check the invoice status first."]
  - name: vip
    when: customer.tier == "A"
    route: {priority: high, sla: 1h}
  - name: legacy-fax
    when: channel == "fax"
    tags: [fax]
"""

NEW = """\
version: 1
defaults: {queue: general}
templates:
  thanks: "Thanks, we answer from 8:00."
rules:
  - name: billing
    when: contains_any(message.text, ["invoice", "rechnung"])
    route: {queue: accounts}
    instructions: ["Check the invoice status in the ERP first."]
  - name: vip
    when: customer.tier == "A"
    route: {priority: urgent, sla: 30m}
  - name: after-hours
    when: not business_hours("support")
    auto_reply: thanks
  - name: refunds
    when: contains_any(message.text, ["refund"])
    route: {queue: refunds}
"""

AT_10 = datetime(2026, 11, 26, 10, tzinfo=UTC).timestamp()
AT_22 = datetime(2026, 11, 26, 22, tzinfo=UTC).timestamp()


def _open(name: str, moment: datetime) -> bool:
    return name == "support" and 8 <= moment.hour < 18


def _message(
    number: int,
    channel: str,
    text: str,
    *,
    tier: str = "",
    at: float = AT_10,
    created: bool = True,
    auto_submitted: bool = False,
    context: bool = True,
) -> Replayable:
    return Replayable(
        f"m{number}",
        f"c{number}",
        channel,
        channel,
        "",
        text,
        f"sender{number}@example.com",
        [],
        "",
        [],
        at,
        False,
        auto_submitted,
        CustomerFacts(known=bool(tier), tier=tier),
        at,
        created,
        None,
        context,
    )


HISTORY = [
    _message(1, "email", "Invoice 123 is missing"),
    _message(2, "email", "Die Rechnung ist falsch", created=False),
    _message(3, "email", "invoice again", context=False),
    _message(4, "webchat", "hello", tier="A"),
    _message(5, "sms", "hi there", tier="A", created=False),
    _message(6, "fax", "page one"),
    _message(7, "fax", "page two", at=AT_22, created=False),
    _message(8, "webchat", "anyone there?", at=AT_22),
    _message(9, "email", "Out of office", at=AT_22, auto_submitted=True),
]


def _diff(history: list[Replayable] = HISTORY, examples: int = 3) -> Summary:
    old = load_rules(OLD, "old.yaml")
    new = load_rules(NEW, "new.yaml")
    return replay(history, old, new, zone=ZoneInfo("UTC"), open_at=_open, examples=examples)


def test_fixture_history_replays_to_exact_counts() -> None:
    summary = _diff()
    assert (summary.messages, summary.without_context, summary.changed) == (9, 1, 8)
    assert [(m.old_queue, m.new_queue, m.messages) for m in summary.queues] == [
        ("general", "general", 6),
        ("billing", "accounts", 3),
    ]
    assert summary.queues[0].examples == []  # unchanged: no examples
    assert summary.queues[1].examples == ["m1", "m2", "m3"]
    assert [(c.old, c.new, c.messages) for c in summary.priorities] == [("high", "urgent", 2)]
    assert [(c.old, c.new, c.messages) for c in summary.slas] == [(3600, 1800, 2)]
    assert [(c.name, c.messages) for c in summary.newly_firing] == [("after-hours", 3)]
    assert [(c.name, c.messages) for c in summary.stopped_firing] == [("legacy-fax", 2)]
    assert summary.never_firing == ["refunds"]
    assert [(c.name, c.messages) for c in summary.instructions_added] == [
        ("Check the invoice status in the ERP first.", 3)
    ]
    assert [(c.name, c.messages) for c in summary.instructions_lost] == [
        ("Check the invoice status first.", 3)
    ]
    # after hours: m7 joined a conversation, m9 is automated mail: only m8 would get one
    replies = summary.auto_replies
    assert (replies.old, replies.new, replies.changed) == (0, 1, 0)
    assert [(c.name, c.messages, c.examples) for c in replies.gained] == [
        ("Thanks, we answer from 8:00.", 1, ["m8"])
    ]
    assert replies.lost == [] and summary.errors == []
    example = summary.examples["m1"]
    assert (example.old.queue, example.new.queue) == ("billing", "accounts")
    assert [entry["rule"] for entry in example.new_trace] == ["billing"]
    assert example.new_trace[0]["set"] == {"queue": "accounts"}
    assert summary.examples["m3"].has_context is False


def test_examples_are_capped_with_queue_moves_first(monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.replay import diff

    monkeypatch.setattr(diff, "MAX_EXAMPLES", 2)
    summary = _diff()
    assert list(summary.examples) == ["m1", "m2"]
    assert summary.queues[1].examples == ["m1", "m2"]
    assert summary.auto_replies.gained[0].examples == []  # m8: past the cap
    assert summary.instructions_added[0].examples == ["m1", "m2"]  # already shown


def test_the_same_rules_change_nothing_and_examples_can_be_off() -> None:
    old = load_rules(OLD, "old.yaml")
    summary = replay(HISTORY, old, old, zone=ZoneInfo("UTC"), open_at=_open)
    assert summary.changed == 0 and summary.examples == {}
    assert sum(move.messages for move in summary.queues) == 9
    assert all(move.old_queue == move.new_queue for move in summary.queues)
    assert summary.never_firing == []  # every rule of OLD fired on something
    quiet = _diff(examples=0)
    assert quiet.examples == {} and quiet.changed == 8


def test_recorded_decisions_stand_in_for_the_same_revision() -> None:
    """A message recorded under the revision compared with is not evaluated by it again: its
    recorded rules give the decision, and the summary is the one evaluating gives."""
    old = load_rules(OLD, "old.yaml")
    new = load_rules(NEW, "new.yaml")
    recorded = [
        msgspec.structs.replace(
            item,
            recorded=evaluate(old, context_of(item, ZoneInfo("UTC"), _open)).decision,
        )
        for item in HISTORY
    ]
    fast = replay(recorded, old, new, zone=ZoneInfo("UTC"), open_at=_open)
    slow = _diff()
    for name in Summary.__struct_fields__:
        if name not in {"recorded_revisions", "examples"}:
            assert getattr(fast, name) == getattr(slow, name), name
    assert fast.recorded_revisions == {old.digest: 8}  # m3 has no context
    # a closed queue's reply laid over a recorded decision is hub.yaml's, not the rules'
    closed = [
        msgspec.structs.replace(
            item,
            recorded=msgspec.structs.replace(item.recorded, auto_reply="We are closed today."),
        )
        for item in recorded
        if item.recorded is not None
    ]
    assert replay(closed, old, new, zone=ZoneInfo("UTC"), open_at=_open).auto_replies.lost == []
    # a recorded decision of another revision is not trusted: evaluated again
    stale = [
        msgspec.structs.replace(item, recorded=Decision(queue="elsewhere", revision="0" * 64))
        for item in HISTORY
    ]
    assert replay(stale, old, new, zone=ZoneInfo("UTC"), open_at=_open).queues == slow.queues


def test_example_traces_are_what_explaining_gives() -> None:
    """Examples show the matched rules' trace entries without evaluating every rule again."""
    for text in (OLD, NEW):
        ruleset = load_rules(text, "rules.yaml")
        for item in HISTORY:
            outcome = evaluate(ruleset, context_of(item, ZoneInfo("UTC"), _open), explain=True)
            matched = [entry for entry in outcome.trace or () if entry["result"] == "matched"]
            assert matched_trace(ruleset, outcome.decision.rules) == matched


def test_a_failing_rule_is_counted_not_fatal() -> None:
    broken = NEW + '  - name: broken\n    when: customer.attributes.size > "x"\n    tags: [x]\n'
    items = [
        msgspec.structs.replace(
            HISTORY[0], customer=CustomerFacts(known=True, attributes={"size": 3})
        )
    ]
    summary = replay(
        items,
        load_rules(OLD, "old.yaml"),
        load_rules(broken, "new.yaml"),
        zone=ZoneInfo("UTC"),
        open_at=_open,
    )
    assert [(e.side, e.rule, e.messages) for e in summary.errors] == [("new", "broken", 1)]
    assert "TypeError" in summary.errors[0].error


def test_text_report_names_every_change() -> None:
    text = render(_diff())
    assert "replayed 9 messages" in text and "8 would be handled differently" in text
    assert "1 were stored before recording" in text
    assert "*      3  billing -> accounts  (e.g. m1, m2, m3)" in text
    assert "high -> urgent" in text and "1h -> 30m" in text
    assert "rules that fire on no message: refunds" in text
    assert "auto-replies that would be sent: 0 now, 1 proposed" in text
    assert "legacy-fax" in text and "after-hours" in text


def test_record_round_trip_is_compact() -> None:
    envelope = Envelope(
        channel="email",
        inbox="support",
        direction=Direction.INBOUND,
        idempotency_key="<k@x>",
        received_at=AT_10,
        sender=Identity(kind="email", address="anna@example.com"),
        recipients=(Identity(kind="email", address="help@shop.example"),),
        text="a long text the messages row holds already " * 20,
        thread=ThreadHints(in_reply_to="<a@x>"),
    )
    facts = CustomerFacts(known=True, id="c1", name="Anna", tier="A", lifetime_value=1200.5)
    decision = Decision(queue="premium", priority=Priority.HIGH, rules=("vip",), revision="ab" * 32)
    record = record_of(envelope, facts, decision, decided_at=AT_10 + 1, created=True)
    data = encode(record)
    assert encoded(envelope, facts, decision, decided_at=AT_10 + 1, created=True) == data
    assert b"a long text" not in data  # the text is the message row's
    assert len(data) < 250
    back = decode(data)
    assert isinstance(back.customer, CustomerFacts) and isinstance(back.decision, Decision)
    assert back.customer.tier == "A" and back.customer.lifetime_value == 1200.5
    assert back.decision.queue == "premium" and back.decision.priority is Priority.HIGH
    assert (back.sender, back.to, back.is_reply, back.created) == (
        "anna@example.com",
        ["help@shop.example"],
        True,
        True,
    )
    with pytest.raises(msgspec.DecodeError):
        decode(b"\x01\x02")
    # CRM attributes MessagePack cannot hold never keep a message from being stored
    odd = CustomerFacts(attributes={"since": datetime(2020, 1, 1).date(), "big": 2**70})
    kept = decode(encode(record_of(envelope, odd, decision, decided_at=AT_10, created=False)))
    assert kept.customer.attributes == {"unrecorded": True}
    fast = encoded(envelope, odd, decision, decided_at=AT_10, created=False)
    assert decode(fast).customer.attributes == {"unrecorded": True}
    dated = CustomerFacts(attributes={"since": datetime(2020, 1, 1).date(), "n": 1})
    kept = decode(encode(record_of(envelope, dated, decision, decided_at=AT_10, created=False)))
    assert kept.customer.attributes == {"since": "2020-01-01", "n": 1}


# -- on a store ------------------------------------------------------------------------------------


CUSTOMERS_CSV = "customer_id,name,email,tier\nK1,Anna Alt,anna@example.com,{tier}\n"
TIERED = """\
version: 1
defaults: {queue: general}
rules:
  - name: premium
    when: customer.tier == "A"
    route: {queue: premium, priority: high}
"""


async def _ingest(pipeline: Pipeline, key: str, text: str, at: float) -> str:
    stored = await pipeline.ingest(
        Envelope(
            channel="webchat",
            inbox="webchat",
            direction=Direction.INBOUND,
            idempotency_key=key,
            received_at=at,
            sender=Identity(kind="email", address="anna@example.com"),
            thread=ThreadHints(session=f"session-{key}"),
            text=text,
        )
    )
    return stored.message_id


async def _history(store: Store, clock: list[float]) -> list[str]:
    """Anna writes as a B customer, becomes an A customer, writes again; a third message
    lost its record (as if stored before recording existed)."""
    customers = Customers(store)
    report = await customers.import_file(
        csvimport.parse(CUSTOMERS_CSV.format(tier="B").encode(), "c.csv")
    )
    assert not report.errors
    old = load_rules(OLD, "old.yaml")
    decider = RulesDecider(RulesHolder(old), timezone="UTC", calendars={}, clock=lambda: clock[0])
    pipeline = Pipeline(store, MemoryBus(), decider, Metrics(), clock=lambda: clock[0])
    first = await _ingest(pipeline, "k1", "hello, where is my parcel?", clock[0])
    report = await customers.import_file(
        csvimport.parse(CUSTOMERS_CSV.format(tier="A").encode(), "c.csv")
    )
    assert not report.errors
    clock[0] += 3600
    second = await _ingest(pipeline, "k2", "hello again", clock[0])
    clock[0] += 3600
    third = await _ingest(pipeline, "k3", "an old one", clock[0])
    async with store.engine.begin() as connection:
        await connection.execute(
            delete(routing_records).where(routing_records.c.message_id == third)
        )
    return [first, second, third]


async def test_ingest_records_what_the_rules_saw_and_replays_it_as_it_was(
    store_url: str, tmp_path: Path
) -> None:
    clock = [NOW - 2 * DAY]
    store = Store(store_url, clock=lambda: clock[0])
    await store.start()
    try:
        first, second, third = await _history(store, clock)
        async with store.read() as connection:
            rows = {
                row.message_id: row for row in await connection.execute(select(routing_records))
            }
        assert set(rows) == {first, second}
        record = decode(rows[first].data)
        assert isinstance(record, RoutingRecord)
        assert record.customer.tier == "B" and record.customer.known
        assert record.customer.name == "Anna Alt"
        assert decode(rows[second].data).customer.tier == "A"
        assert record.decision.queue == "general" and record.decision.revision
        assert record.decided_at == rows[first].decided_at == NOW - 2 * DAY
        assert record.created and record.sender == "anna@example.com"
        customer_id = rows[first].customer_id
        settings = make_settings(
            store_url, tmp_path, queues=[{"name": "general"}, {"name": "premium"}]
        )
        summary = await service.run_diff(
            store,
            settings,
            load_rules(OLD, "old.yaml"),
            load_rules(TIERED, "new.yaml"),
            Period(NOW - 7 * DAY, NOW),
        )
        # the first message is replayed with the tier Anna had then (B): it stays
        assert (summary.messages, summary.without_context, summary.changed) == (3, 1, 1)
        assert [(m.old_queue, m.new_queue, m.messages, m.examples) for m in summary.queues] == [
            ("general", "general", 2, []),
            ("general", "premium", 1, [second]),
        ]
        assert summary.examples[second].recorded is not None
        assert summary.recorded_revisions == {load_rules(OLD, "old.yaml").digest: 2}
        # the period and the channel filter
        none = await service.run_diff(
            store,
            settings,
            load_rules(OLD, "old.yaml"),
            load_rules(TIERED, "new.yaml"),
            Period(NOW - 7 * DAY, NOW, ("sms",)),
        )
        assert none.messages == 0
        async with store.read() as connection:
            pages = await Reader(Period(NOW - 7 * DAY, NOW), page=2).read_all(connection)
        assert [item.message_id for item in pages] == [first, second, third]
        assert pages[2].customer == CustomerFacts() and pages[2].created
        assert pages[0].customer.id == customer_id
    finally:
        await store.close()


async def test_stored_revisions_are_found_by_prefix(sqlite_url: str) -> None:
    store = Store(sqlite_url, clock=lambda: NOW)
    await store.start()
    try:
        old = load_rules(OLD, "old.yaml")
        await store.record_rules_revision(old.digest, "config/rules.yaml", OLD)
        found = await service.stored_revision(store, old.digest[:8].upper())
        assert found.digest == old.digest
        for bad, reason in (("abc", "neither CURRENT"), ("ffffff", "no stored rules revision")):
            with pytest.raises(service.ConfigError, match=reason):
                await service.stored_revision(store, bad)
    finally:
        await store.close()


def test_problems_are_split_into_line_and_column() -> None:
    assert problem("rules.yaml:4:11: rules.0.when: unknown name 'x'") == {
        "line": 4,
        "column": 11,
        "message": "rules.0.when: unknown name 'x'",
        "text": "rules.yaml:4:11: rules.0.when: unknown name 'x'",
    }
    assert problem("no position")["line"] is None


# -- the command -----------------------------------------------------------------------------------


def test_rules_diff_command(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/hub.db"
    (tmp_path / "rules.yaml").write_text(OLD)
    config = tmp_path / "hub.yaml"
    config.write_text(
        f"storage: {{url: '{url}', blobs: '{tmp_path}/blobs'}}\n"
        "queues: [{name: general}, {name: premium}, {name: billing}]\n"
        f"rules: {{path: '{tmp_path}/rules.yaml'}}\n"
    )

    async def setup() -> list[str]:
        clock = [datetime.now(UTC).timestamp() - DAY]
        store = Store(url, clock=lambda: clock[0])
        await store.start()
        try:
            return await _history(store, clock)
        finally:
            await store.close()

    _first, second, _third = asyncio.run(setup())
    (tmp_path / "new.yaml").write_text(TIERED)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hub.cli", "rules", "diff", *args, "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
        )

    done = cli("new.yaml", "--format", "json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert (data["messages"], data["without_context"], data["changed"]) == (3, 1, 1)
    assert data["against"] == load_rules(OLD, "x").digest
    assert [q["new_queue"] for q in data["queues"]] == ["general", "premium"]
    assert list(data["examples"]) == [second]
    text = cli("new.yaml", "--since", "30d", "--channel", "webchat")
    assert text.returncode == 0, text.stderr
    assert "replayed 3 messages" in text.stdout and "general -> premium" in text.stdout
    assert "1 were stored before recording" in text.stdout
    # a revision nobody stored
    against = cli("new.yaml", "--against", "0" * 12)
    assert against.returncode == 1 and "no stored rules revision" in against.stderr
    # a broken proposal: rules check's errors, file:line:col, exit 1
    (tmp_path / "bad.yaml").write_text(TIERED.replace('customer.tier == "A"', "customer.tierr"))
    bad = cli("bad.yaml")
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.startswith("bad.yaml:5:11: rules.0.when:"), bad.stderr
    (tmp_path / "queue.yaml").write_text(TIERED.replace("premium,", "nowhere,"))
    unknown = cli("queue.yaml")
    assert unknown.returncode == 1 and "nowhere" in unknown.stderr
    assert cli("new.yaml", "--since", "soon").returncode == 1
    assert cli("missing.yaml").returncode == 1


# -- the endpoint ----------------------------------------------------------------------------------


async def test_diff_endpoint_is_for_admins_and_reports_errors_by_line(
    sqlite_url: str, tmp_path: Path
) -> None:
    hashed = hash_password(AGENT_PASSWORD)
    (tmp_path / "rules.yaml").write_text(OLD)
    settings = make_settings(
        sqlite_url,
        tmp_path,
        queues=[{"name": "general"}, {"name": "premium"}, {"name": "billing"}],
        rules={"path": str(tmp_path / "rules.yaml")},
        agents=[
            {"id": "alice", "name": "Alice", "password_hash": hashed},
            {"id": "sam", "name": "Sam", "password_hash": hashed, "role": "supervisor"},
            {"id": "ada", "name": "Ada", "password_hash": hashed, "role": "admin"},
        ],
    )
    clock = [datetime.now(UTC).timestamp() - DAY]
    async with running_hub(settings) as hub:
        await _history(hub.store, clock)
        tokens = {who: await login(hub, who, AGENT_PASSWORD) for who in ("alice", "sam", "ada")}
        async with aiohttp.ClientSession() as session:

            async def call(
                who: str | None,
                body: str | bytes,
                query: str = "",
                content_type: str = "text/yaml",
            ) -> tuple[int, Any]:
                headers = {"Content-Type": content_type}
                if who:
                    headers["Authorization"] = f"Bearer {tokens[who]}"
                async with session.post(
                    f"{hub.url}/api/rules/diff{query}", data=body, headers=headers
                ) as response:
                    return response.status, await response.json()

            assert (await call(None, TIERED))[0] == 401
            for who in ("alice", "sam"):
                status, body = await call(who, TIERED)
                assert status == 403 and body["error"] == "forbidden"
            status, body = await call("ada", TIERED)
            assert status == 200, body
            assert (body["messages"], body["without_context"], body["changed"]) == (3, 1, 1)
            assert body["against"] == load_rules(OLD, "x").digest
            assert body["queues"][1]["new_queue"] == "premium"
            status, body = await call("ada", TIERED, "?since=1h")
            assert status == 200 and body["messages"] == 0
            status, body = await call("ada", TIERED, "?channel=webchat&examples=0")
            assert status == 200 and body["messages"] == 3 and body["examples"] == {}
            broken = TIERED.replace('customer.tier == "A"', 'customer.tier = "A"')
            status, body = await call("ada", broken)
            assert status == 400 and body["error"] == "invalid_rules"
            assert body["problems"][0]["line"] == 5 and body["problems"][0]["column"] >= 11
            assert body["problems"][0]["text"].startswith("rules.yaml:5:")
            status, body = await call("ada", "version: 1\nrules: [{name: x, route: {queue: q}}]")
            assert status == 400 and "q" in body["problems"][0]["message"]
            status, body = await call("ada", "a: [\n")
            assert status == 400 and body["problems"][0]["line"] is not None
            for query, word in (
                ("?since=soon", "since"),
                ("?channel=pager", "pager"),
                ("?against=xyz", "against"),
                ("?against=abcdef0", "no stored"),
                ("?examples=99", "examples"),
            ):
                status, body = await call("ada", TIERED, query)
                assert status == 400 and word in body["message"], (query, body)
            assert (await call("ada", TIERED, content_type="application/json"))[0] == 415
            assert (await call("ada", b"\xff\xfe"))[0] == 400
            status, body = await call("ada", "#" * (4 * 1024 * 1024 + 1))
            assert status == 413
            # against the revision the hub recorded when it loaded the file
            digest = load_rules(OLD, "x").digest
            status, body = await call("ada", TIERED, f"?against={digest[:10]}")
            assert status == 200 and body["against"] == digest
