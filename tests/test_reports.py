"""Reports per day, queue, channel and agent from the audit log; CSV that opens safely; the
conversations export; the API's roles and parameters; ``channelhub report``."""

from __future__ import annotations

import csv
import io
import json
import subprocess
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hub.auth import hash_password
from hub.reports import csvout
from hub.reports.figures import ConversationInfo, Event, GroupBy, Period, compute, percentile
from hub.reports.params import BadParameter, export_request, report_request
from hub.store.schema import conversations, customers, events, messages
from hub.store.store import Store
from tests.conftest import AGENT_PASSWORD, make_settings
from tests.helpers import channelhub, hub_store, login, running_hub

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 11, 26, tzinfo=UTC).timestamp()
DAY = date(2026, 11, 26)
NOW = T0 + 2 * 86_400
QUEUE_SLA = {"general": 300.0, "billing": None}


def _e(at: float, kind: str, cid: str, agent: str | None = None, **data: Any) -> Event:
    return Event(T0 + at, kind, cid, agent, data)


# The fixture day, 2026-11-26 UTC (times in seconds after midnight), worked by hand:
#   c1 webchat, general, the rules' SLA 120 s: offered to alice (declined), bob accepts, answers
#      after 100 s (SLA met), the customer writes again, bob answers, closes "resolved" after
#      570 s of handling.
#   c2 email, general (queue SLA 300 s): alice lets the offer time out, bob accepts, answers
#      after 500 s (SLA missed at its deadline, 30300, while bob held it), transfers to billing;
#      alice takes it, answers, closes "resolved" after 300 s.
#   c3 webchat, general: the customer leaves while waiting (abandoned; no SLA counted).
#   c4 sms, billing (no SLA): started the evening before; alice answers at 00:10 (4200 s) and
#      closes "callback" (3700 s after she took it).
#   c5 email, general: auto-reply; alice takes it and is disconnected (requeued); nobody answers
#      before the deadline, 40300: missed, with nobody holding it.
#   c6 the next day: not in the report.
FIXTURE = [
    _e(-3600, "conversation.created", "c4", queue="billing"),
    _e(-3600, "message.received", "c4", channel="sms", inbox="sms-de"),
    _e(-3000, "conversation.assigned", "c4", "alice"),
    _e(600, "reply.queued", "c4", "alice"),
    _e(700, "conversation.closed", "c4", "alice", disposition="callback"),
    _e(28800, "conversation.created", "c1", queue="general"),
    _e(28800, "message.received", "c1", channel="webchat", inbox="webchat"),
    _e(28810, "offer.sent", "c1", "alice"),
    _e(28815, "offer.declined", "c1", "alice", reason="busy"),
    _e(28820, "offer.sent", "c1", "bob"),
    _e(28830, "conversation.assigned", "c1", "bob"),
    _e(28900, "reply.queued", "c1", "bob"),
    _e(29000, "message.received", "c1", channel="webchat", inbox="webchat"),
    _e(29100, "reply.queued", "c1", "bob"),
    _e(29400, "conversation.closed", "c1", "bob", disposition="resolved"),
    _e(30000, "conversation.created", "c2", queue="general"),
    _e(30000, "message.received", "c2", channel="email", inbox="support"),
    _e(30005, "offer.sent", "c2", "alice"),
    _e(30035, "offer.timeout", "c2", "alice"),
    _e(30040, "offer.sent", "c2", "bob"),
    _e(30050, "conversation.assigned", "c2", "bob"),
    _e(30500, "reply.queued", "c2", "bob"),
    _e(30600, "conversation.transferred", "c2", "bob", queue="billing", to_agent=None),
    _e(30700, "conversation.assigned", "c2", "alice"),
    _e(30800, "reply.queued", "c2", "alice"),
    _e(31000, "conversation.closed", "c2", "alice", disposition="resolved"),
    _e(32000, "conversation.created", "c3", queue="general"),
    _e(32000, "message.received", "c3", channel="webchat", inbox="webchat"),
    _e(32100, "conversation.abandoned", "c3"),
    _e(40000, "conversation.created", "c5", queue="general"),
    _e(40000, "message.received", "c5", channel="email", inbox="support"),
    _e(40000, "auto_reply.queued", "c5"),
    _e(40100, "conversation.assigned", "c5", "alice"),
    _e(40200, "conversation.requeued", "c5", "alice", reason="disconnected"),
    _e(86_500, "conversation.created", "c6", queue="general"),
    _e(86_500, "message.received", "c6", channel="webchat", inbox="webchat"),
]
INFO = {
    "c1": ConversationInfo("webchat", 120.0),
    "c2": ConversationInfo("email"),
    "c3": ConversationInfo("webchat"),
    "c4": ConversationInfo("sms"),
    "c5": ConversationInfo("email"),
    "c6": ConversationInfo("webchat"),
}
ZERO = {
    "inbound": 0,
    "outbound": 0,
    "auto_replies": 0,
    "conversations": 0,
    "first_response_count": 0,
    "first_response_p50": None,
    "first_response_p90": None,
    "handling_count": 0,
    "handling_p50": None,
    "handling_p90": None,
    "sla_met": 0,
    "sla_missed": 0,
    "sla_attainment": None,
    "abandoned": 0,
    "transfers": 0,
    "requeued": 0,
    "offers": 0,
    "offers_declined": 0,
    "offers_timed_out": 0,
    "closed": 0,
    "dispositions": {},
    "satisfaction": None,
}


def _expected(**figures: Any) -> dict[str, Any]:
    return {**ZERO, **figures}


EXPECTED = {
    GroupBy.DAY: {
        "": _expected(
            inbound=5,
            outbound=5,
            auto_replies=1,
            conversations=4,
            first_response_count=3,
            first_response_p50=500.0,
            first_response_p90=4200.0,
            handling_count=3,
            handling_p50=570.0,
            handling_p90=3700.0,
            sla_met=1,
            sla_missed=2,
            sla_attainment=0.3333,
            abandoned=1,
            transfers=1,
            requeued=1,
            offers=4,
            offers_declined=1,
            offers_timed_out=1,
            closed=3,
            dispositions={"callback": 1, "resolved": 2},
        )
    },
    GroupBy.QUEUE: {
        "billing": _expected(
            outbound=2,
            first_response_count=1,
            first_response_p50=4200.0,
            first_response_p90=4200.0,
            handling_count=2,
            handling_p50=300.0,
            handling_p90=3700.0,
            closed=2,
            dispositions={"callback": 1, "resolved": 1},
        ),
        "general": _expected(
            inbound=5,
            outbound=3,
            auto_replies=1,
            conversations=4,
            first_response_count=2,
            first_response_p50=100.0,
            first_response_p90=500.0,
            handling_count=1,
            handling_p50=570.0,
            handling_p90=570.0,
            sla_met=1,
            sla_missed=2,
            sla_attainment=0.3333,
            abandoned=1,
            transfers=1,
            requeued=1,
            offers=4,
            offers_declined=1,
            offers_timed_out=1,
            closed=1,
            dispositions={"resolved": 1},
        ),
    },
    GroupBy.AGENT: {
        "alice": _expected(
            outbound=2,
            first_response_count=1,
            first_response_p50=4200.0,
            first_response_p90=4200.0,
            handling_count=2,
            handling_p50=300.0,
            handling_p90=3700.0,
            requeued=1,
            offers=2,
            offers_declined=1,
            offers_timed_out=1,
            closed=2,
            dispositions={"callback": 1, "resolved": 1},
        ),
        "bob": _expected(
            inbound=1,
            outbound=3,
            first_response_count=2,
            first_response_p50=100.0,
            first_response_p90=500.0,
            handling_count=1,
            handling_p50=570.0,
            handling_p90=570.0,
            sla_met=1,
            sla_missed=1,
            sla_attainment=0.5,
            transfers=1,
            offers=2,
            closed=1,
            dispositions={"resolved": 1},
        ),
    },
    GroupBy.CHANNEL: {
        "email": _expected(
            inbound=2,
            outbound=2,
            auto_replies=1,
            conversations=2,
            first_response_count=1,
            first_response_p50=500.0,
            first_response_p90=500.0,
            handling_count=1,
            handling_p50=300.0,
            handling_p90=300.0,
            sla_missed=2,
            sla_attainment=0.0,
            transfers=1,
            requeued=1,
            offers=2,
            offers_timed_out=1,
            closed=1,
            dispositions={"resolved": 1},
        ),
        "sms": _expected(
            outbound=1,
            first_response_count=1,
            first_response_p50=4200.0,
            first_response_p90=4200.0,
            handling_count=1,
            handling_p50=3700.0,
            handling_p90=3700.0,
            closed=1,
            dispositions={"callback": 1},
        ),
        "webchat": _expected(
            inbound=3,
            outbound=2,
            conversations=2,
            first_response_count=1,
            first_response_p50=100.0,
            first_response_p90=100.0,
            handling_count=1,
            handling_p50=570.0,
            handling_p90=570.0,
            sla_met=1,
            sla_attainment=1.0,
            abandoned=1,
            offers=2,
            offers_declined=1,
            closed=1,
            dispositions={"resolved": 1},
        ),
    },
}


def _by_group(rows: list[Any]) -> dict[str, dict[str, Any]]:
    found = {}
    for row in rows:
        figures = row.figures()
        assert figures.pop("day") == DAY.isoformat()
        found[figures.pop("group")] = figures
    return found


@pytest.mark.parametrize("by", list(GroupBy))
def test_the_fixture_day_as_computed_by_hand(by: GroupBy) -> None:
    rows = compute(FIXTURE, INFO, Period(DAY, DAY), by, now=NOW, queue_sla=QUEUE_SLA)
    assert _by_group(rows) == EXPECTED[by]


def test_days_are_the_report_time_zones() -> None:
    # 2026-11-25 23:00 UTC is midnight in Berlin: c4 starts (and is received) on the 26th there
    rows = compute(
        FIXTURE, INFO, Period(DAY, DAY, "Europe/Berlin"), GroupBy.DAY, now=NOW, queue_sla=QUEUE_SLA
    )
    figures = _by_group(rows)[""]
    assert (figures["conversations"], figures["inbound"]) == (5, 6)
    two_days = compute(
        FIXTURE, INFO, Period(DAY, date(2026, 11, 27)), GroupBy.DAY, now=NOW, queue_sla=QUEUE_SLA
    )
    assert [(row.day.day, row.conversations) for row in two_days] == [(26, 4), (27, 1)]


def test_an_sla_still_running_is_not_missed_yet() -> None:
    before_c5_deadline = T0 + 40_250
    rows = compute(
        FIXTURE, INFO, Period(DAY, DAY), GroupBy.DAY, now=before_c5_deadline, queue_sla=QUEUE_SLA
    )
    figures = _by_group(rows)[""]
    assert (figures["sla_met"], figures["sla_missed"]) == (1, 1)


@pytest.mark.parametrize(
    ("values", "p50", "p90"),
    [([], None, None), ([7.0], 7.0, 7.0), ([1, 2, 3, 4], 2, 4), ([5, 1, 4, 2, 3], 3, 5)],
)
def test_nearest_rank_percentiles(values: list[float], p50: Any, p90: Any) -> None:
    assert (percentile(values, 0.5), percentile(values, 0.9)) == (p50, p90)


# -- CSV -----------------------------------------------------------------------------------------

HOSTILE = [
    '=HYPERLINK("http://evil.example","click")',
    "+SUM(A1:A9)",
    "-2+3",
    "@SUM(1)",
    "\tTAB=1",
    "\rCR=1",
    "\nLF=1",
    "  =1+1",
    "\uff1d1+1",
    'harmless; with, separators "and quotes"',
    "Müller ÄÖÜ ß €",
]


def _open_as_text(data: bytes, delimiter: str = ",") -> list[list[str]]:
    assert data.startswith(b"\xef\xbb\xbf"), "UTF-8 BOM for Excel"
    text = data.decode("utf-8-sig")
    assert "\r\n" in text
    return list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))


def _inert(value: str) -> bool:
    """What a spreadsheet reads as text: nothing starts a formula."""
    return value.lstrip(" ")[:1] not in set("=+-@\t\r\n\uff1d\uff0b\uff0d\uff20")


@pytest.mark.parametrize("dialect", list(csvout.Dialect))
def test_csv_injection_is_neutralised(dialect: csvout.Dialect) -> None:
    data = csvout.render(["text", "number"], [[value, -1.5] for value in HOSTILE], dialect)
    rows = _open_as_text(data, dialect.delimiter)
    assert rows[0] == ["text", "number"]
    for original, (shown, number) in zip(HOSTILE, rows[1:], strict=True):
        assert _inert(shown), shown
        assert shown.removeprefix("'") == original
        assert shown.startswith("'") == (not _inert(original))
        assert number == ("-1,5" if dialect is csvout.Dialect.EXCEL_DE else "-1.5")


def test_neutralised_header_and_decimal_commas() -> None:
    rows = _open_as_text(
        csvout.render(["=x"], [[0.25], [None], [3], [True]], csvout.Dialect.EXCEL_DE), ";"
    )
    assert rows == [["'=x"], ["0,25"], [""], ["3"], ["true"]]


# -- parameters ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("by", "params", "message"),
    [
        ("week", {}, "the report must be one of day, queue, channel, agent"),
        ("day", {"from": "26.11.2026"}, "from must be a date like 2026-11-26"),
        ("day", {"from": "2026-11-26", "to": "2026-11-01"}, "is before from"),
        ("day", {"from": "2025-01-01", "to": "2026-12-31"}, "at most 366 days"),
        ("day", {"tz": "Mars/Olympus"}, "tz must be an IANA time zone"),
        ("day", {"tz": "../../etc/passwd"}, "tz must be an IANA time zone"),
        ("day", {"format": "xlsx"}, "format must be one of json, csv, csv-de"),
        ("day", {"limit": "5"}, "unknown parameters: limit"),
    ],
)
def test_bad_report_parameters_say_what_to_fix(
    by: str, params: dict[str, str], message: str
) -> None:
    with pytest.raises(BadParameter, match=message.replace("(", r"\(")):
        report_request(by, params, today=DAY, default_timezone="UTC")


def test_bad_export_parameters() -> None:
    for params, message in (
        ({"status": "open"}, "status must be one of"),
        ({"messages": "maybe"}, "messages must be true or false"),
        ({"queue": "q" * 200}, "queue must be 1 to 128 characters"),
    ):
        with pytest.raises(BadParameter, match=message):
            export_request(params, today=DAY, default_timezone="UTC")


# -- through the store and the API ------------------------------------------------------------


def _settings(url: str, root: Path) -> Any:
    hashed = hash_password(AGENT_PASSWORD)
    return make_settings(
        url,
        root,
        queues=[{"name": "general", "sla": "5m"}, {"name": "billing"}],
        agents=[
            {"id": "alice", "name": "Alice", "password_hash": hashed},
            {"id": "bob", "name": "Bob", "password_hash": hashed},
            {"id": "sam", "name": "Sam", "password_hash": hashed, "role": "supervisor"},
            {"id": "ada", "name": "Ada", "password_hash": hashed, "role": "admin"},
        ],
    )


async def _plant(store: Store) -> None:
    """The fixture day in the tables, with messages whose text tries CSV injection."""
    async with store.engine.begin() as connection:
        await connection.execute(
            customers.insert(),
            [
                {"id": "k1", "kind": "customer", "name": "=cmd|' /C calc'!A0", "created_at": T0},
                {"id": "k2", "kind": "prospect", "name": "Eva", "created_at": T0},
            ],
        )
        created = {}
        for event in FIXTURE:
            if event.kind == "conversation.created":
                created[event.conversation_id] = event.at
        await connection.execute(
            conversations.insert(),
            [
                {
                    "id": cid,
                    "customer_id": "k1" if cid in {"c1", "c2"} else "k2",
                    "channel": INFO[cid].channel,
                    "inbox": INFO[cid].channel,
                    "status": "closed",
                    "queue": "general",
                    "priority": "normal",
                    "subject": "+SUM(A1)" if cid == "c1" else None,
                    "decision": {"queue": "general", "sla_seconds": INFO[cid].sla_seconds},
                    "created_at": at,
                    "updated_at": at,
                }
                for cid, at in created.items()
            ],
        )
        await connection.execute(
            messages.insert(),
            [
                {
                    "id": f"m{index}",
                    "conversation_id": "c1",
                    "kind": "message",
                    "direction": "inbound",
                    "channel": "webchat",
                    "inbox": "webchat",
                    "idempotency_key": f"k{index}",
                    "text": text,
                    "created_at": T0 + 28_800 + index,
                }
                for index, text in enumerate(HOSTILE)
            ],
        )
        await connection.execute(
            events.insert(),
            [
                {
                    "at": event.at,
                    "kind": event.kind,
                    "conversation_id": event.conversation_id,
                    "message_id": None,
                    "agent": event.agent,
                    "data": dict(event.data),
                }
                for event in FIXTURE
            ],
        )


@pytest.mark.integration
async def test_reports_and_exports_over_the_api(store_url: str, tmp_path: Path) -> None:
    settings = _settings(store_url, tmp_path)
    async with running_hub(settings, clock=lambda: NOW) as hub:
        await _plant(hub.store)
        tokens = {who: await login(hub, who, AGENT_PASSWORD) for who in ("alice", "sam", "ada")}
        async with aiohttp.ClientSession() as session:

            async def get(path: str, who: str | None = "sam") -> aiohttp.ClientResponse:
                headers = {"Authorization": f"Bearer {tokens[who]}"} if who else {}
                response = await session.get(f"{hub.url}{path}", headers=headers)
                await response.read()
                return response

            for by in GroupBy:
                response = await get(f"/api/reports/{by}?from=2026-11-26")
                assert response.status == 200, await response.text()
                document = await response.json()
                key = str(by)
                assert {
                    ("" if by is GroupBy.DAY else row[key]): {
                        k: v for k, v in row.items() if k not in {"day", key}
                    }
                    for row in document["rows"]
                    if row["day"] == "2026-11-26"
                } == EXPECTED[by]
                assert "no customer ratings" in document["notes"]["satisfaction"]
            # the same as CSV for German Excel
            response = await get("/api/reports/queue?from=2026-11-26&format=csv-de", "ada")
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/csv")
            assert "attachment" in response.headers["Content-Disposition"]
            table = _open_as_text(await response.read(), ";")
            header = table[0]
            by_queue = {row[1]: dict(zip(header, row, strict=True)) for row in table[1:]}
            general = by_queue["general"]
            assert general["queue"] == "general" and general["sla_attainment"] == "0,3333"
            assert general["disposition:resolved"] == "1"
            # roles and parameters
            assert (await get("/api/reports/day", None)).status == 401
            refused = await get("/api/reports/day", "alice")
            assert refused.status == 403
            bad = await get("/api/reports/day?from=yesterday")
            assert bad.status == 400
            assert (await bad.json())["error"] == "bad_parameter"
            assert "from must be a date" in (await bad.json())["message"]
            assert (await get("/api/reports/week")).status == 400
            assert (await get("/api/exports/conversations", "alice")).status == 403

            # conversations export: filtered, every hostile cell inert
            response = await get("/api/exports/conversations?from=2026-11-26&channel=webchat")
            assert response.status == 200
            table = _open_as_text(await response.read())
            assert table[0][0] == "conversation_id"
            assert sorted(row[0] for row in table[1:]) == ["c1", "c3"]
            assert all(_inert(value) for row in table for value in row)
            first = dict(zip(table[0], table[1], strict=True))
            assert first["subject"] == "'+SUM(A1)"
            assert first["customer_name"] == "'=cmd|' /C calc'!A0"
            assert (first["messages_in"], first["created"]) == (
                str(len(HOSTILE)),
                "2026-11-26T08:00:00+00:00",
            )
            response = await get(
                "/api/exports/conversations?from=2026-11-26&messages=true&format=csv-de"
            )
            table = _open_as_text(await response.read(), ";")
            texts = [row[table[0].index("text")] for row in table[1:]]
            assert [text.removeprefix("'") for text in texts] == HOSTILE
            assert all(_inert(value) for row in table for value in row)
            response = await get("/api/exports/conversations?from=2026-11-26&format=json")
            assert sorted(row["conversation_id"] for row in json.loads(await response.read())) == [
                "c1",
                "c2",
                "c3",
                "c5",
            ]
            bad = await get("/api/exports/conversations?status=open")
            assert bad.status == 400 and "status must be one of" in await bad.text()
            unknown = await get("/api/exports/conversations?customer=nobody@example.com")
            assert unknown.status == 404
        # the export is audited: who, and which filters (never the customer's address)
        async with hub.store.read() as connection:
            exported = (
                await connection.execute(
                    events.select().where(events.c.kind == "conversations.exported")
                )
            ).all()
        assert {row.agent for row in exported} == {"sam"}
        assert exported[0].data["channel"] == "webchat"


def test_report_cli(tmp_path: Path) -> None:
    import asyncio

    url = f"sqlite+aiosqlite:///{tmp_path}/hub.db"
    config = tmp_path / "hub.yaml"
    config.write_text(
        f"storage: {{url: '{url}', blobs: '{tmp_path}/blobs'}}\n"
        "queues: [{name: general, sla: 5m}, {name: billing}]\n"
    )

    async def plant() -> None:
        store = hub_store(url)
        await store.start()
        try:
            await _plant(store)
        finally:
            await store.close()

    asyncio.run(plant())

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return channelhub("report", *args, "--config", str(config), cwd=tmp_path)

    shown = cli("agent", "--from", "2026-11-26", "--format", "json")
    assert shown.returncode == 0, shown.stderr
    rows = {row["agent"]: row for row in json.loads(shown.stdout)["rows"]}
    assert rows["bob"]["sla_attainment"] == 0.5 and rows["alice"]["offers_timed_out"] == 1
    text = cli("day", "--from", "2026-11-26")
    assert text.returncode == 0 and "first_response_p50" in text.stdout
    out = tmp_path / "queues.csv"
    written = cli("queue", "--from", "2026-11-26", "--format", "csv", "-o", str(out))
    assert written.returncode == 0, written.stderr
    assert out.read_bytes().startswith(b"\xef\xbb\xbfday,queue,")
    bad = cli("day", "--from", "2026-02-30")
    assert bad.returncode == 1 and "from must be a date" in bad.stderr
    export = cli(
        "conversations", "--from", "2026-11-26", "--messages", "-o", str(tmp_path / "m.csv")
    )
    assert export.returncode == 0, export.stderr
    table = _open_as_text((tmp_path / "m.csv").read_bytes())
    assert all(_inert(value) for row in table for value in row)
