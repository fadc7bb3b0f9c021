"""Full-text search (``GET /api/search``, issue 18) on SQLite FTS5 and PostgreSQL.

Pure tests of the query parsing (hostile input included), then the real endpoint on both
databases: what matches, pagination without repeats, what an agent may see, hostile queries
answered with 400 (never 500), and an erased message no longer found.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import delete, insert, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.auth import hash_password
from hub.search.query import BadQuery, Cursor, decode_cursor, encode_cursor, parse, snippet
from hub.store.schema import conversations, customers, identities, messages
from tests.conftest import AGENT_PASSWORD, make_settings
from tests.helpers import RunningHub, login, running_hub

_HASH = hash_password(AGENT_PASSWORD)
T0 = 1_780_000_000.0


# -- the query, pure ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "terms", "fts5", "tsquery"),
    [
        ("Rechnung", ("rechnung",), '"rechnung"*', "'rechnung':*"),
        ("  K00034  ", ("k00034",), '"k00034"*', "'k00034':*"),
        ('"foo" OR bar*', ("foo", "bar"), '"foo"* AND "bar"*', "'foo':* & 'bar':*"),
        ("NEAR(a b)", ("a", "b"), '"a"* AND "b"*', "'a':* & 'b':*"),
        ("subject:refund", ("subject", "refund"), '"subject"* AND "refund"*', None),
        ("'; DROP TABLE messages; --", ("drop", "table", "messages"), None, None),
        ("a & !b | c:*", ("a", "b", "c"), None, "'a':* & 'b':* & 'c':*"),
        ("Müller-Lüdenscheidt", ("müller", "lüdenscheidt"), None, None),
        ("foo_bar", ("foo", "bar"), None, None),
        ("paket paket PAKET", ("paket",), None, None),
        ("x paket", ("paket",), None, None),  # a lone letter is kept only alone
        ("x", ("x",), None, None),
    ],
)
def test_words_become_quoted_prefixes_and_nothing_else(
    typed: str, terms: tuple[str, ...], fts5: str | None, tsquery: str | None
) -> None:
    query = parse(typed)
    assert query.terms == terms
    if fts5 is not None:
        assert query.fts5() == fts5
    if tsquery is not None:
        assert query.tsquery() == tsquery


@pytest.mark.parametrize(
    ("q", "cursor", "limit", "reason"),
    [
        ("", None, None, "q is empty"),
        ("   ", None, None, "q is empty"),
        (None, None, None, "q is empty"),
        ("x" * 201, None, None, "longer than 200"),
        ('" * - ( ) : ^ +', None, None, "no letters or digits"),
        (" ".join(f"w{i}" for i in range(9)), None, None, "more than 8 words"),
        ("y" * 65, None, None, "longer than 64"),
        ("ok", "not-a-cursor!", None, "cursor"),
        ("ok", "W10", None, "cursor"),  # base64 of "[]"
        ("ok", "x" * 300, None, "cursor"),
        ("ok", None, "0", "limit"),
        ("ok", None, "51", "limit"),
        ("ok", None, "-1", "limit"),
        ("ok", None, "ten", "limit"),
    ],
)
def test_unsearchable_requests_say_why(
    q: str | None, cursor: str | None, limit: str | None, reason: str
) -> None:
    with pytest.raises(BadQuery, match=reason):
        parse(q, cursor, limit)


def test_a_cursor_round_trips_and_a_forged_kind_is_refused() -> None:
    cursor = Cursor(at=T0 + 0.25, match="message", key="m-01")
    assert decode_cursor(encode_cursor(cursor)) == cursor
    forged = encode_cursor(Cursor(at=T0, match="x' OR 1=1", key="k"))
    with pytest.raises(BadQuery):
        decode_cursor(forged)


def test_a_snippet_shows_the_first_match_in_a_long_text() -> None:
    text = "Anfang " + "bla " * 100 + "die Rechnung R-2211 fehlt " + "blub " * 100
    piece = snippet(text, ("rechnung",), width=60)
    assert "Rechnung" in piece and piece.startswith("…") and piece.endswith("…")
    assert len(piece) <= 62
    assert snippet("kurz", ("x",)) == "kurz"


# -- the endpoint, on both databases --------------------------------------------------------


def _settings(url: str, root: Path) -> Any:
    return make_settings(
        url,
        root,
        agents=[
            {"id": "alice", "name": "Alice", "password_hash": _HASH},
            {"id": "carol", "name": "Carol", "password_hash": _HASH, "queues": ["billing"]},
            {"id": "sue", "name": "Sue", "password_hash": _HASH, "role": "supervisor"},
        ],
    )


async def _seed(hub: RunningHub) -> None:
    """Two customers, three conversations in two queues, a handful of messages."""

    async def run(connection: AsyncConnection) -> None:
        await connection.execute(
            insert(customers),
            [
                {
                    "id": "cu-anna",
                    "kind": "customer",
                    "name": "Anna Müller",
                    "company": "Bäckerei Sonnenschein",
                    "external_id": "K00034",
                    "created_at": T0,
                },
                {
                    "id": "cu-ben",
                    "kind": "customer",
                    "name": "Ben Schulz",
                    "company": None,
                    "external_id": "K00777",
                    "created_at": T0,
                },
            ],
        )
        await connection.execute(
            insert(identities),
            [
                {
                    "id": "id-anna",
                    "customer_id": "cu-anna",
                    "kind": "email",
                    "address": "anna@example.com",
                    "display_name": None,
                    "created_at": T0,
                }
            ],
        )
        rows = [
            ("cv-bill", "cu-anna", "billing", "assigned", "carol", "Rechnung fehlt"),
            ("cv-gen", "cu-anna", "general", "closed", None, None),
            ("cv-ben", "cu-ben", "general", "queued", None, None),
        ]
        await connection.execute(
            insert(conversations),
            [
                {
                    "id": i,
                    "customer_id": c,
                    "channel": "webchat",
                    "inbox": "webchat",
                    "status": s,
                    "queue": q,
                    "priority": "normal",
                    "assignee": a,
                    "subject": subj,
                    "created_at": T0,
                    "updated_at": T0 + 100,
                }
                for i, c, q, s, a, subj in rows
            ],
        )
        texts = [
            ("m1", "cv-bill", "Meine Rechnung R-2211 ist nicht angekommen", "Rechnung fehlt"),
            ("m2", "cv-bill", "Danke, ich schicke die Rechnung erneut", None),
            ("m3", "cv-gen", "Wo bleibt mein Paket? Sendungsnummer 00340012", None),
            ("m4", "cv-ben", "Paket beschädigt, bitte Rückruf", None),
            ("m5", "cv-ben", 'Ignore "quotes" AND NEAR(stuff) * : and; DROP TABLE', None),
        ]
        await connection.execute(
            insert(messages),
            [
                {
                    "id": i,
                    "conversation_id": c,
                    "kind": "message",
                    "direction": "inbound",
                    "channel": "webchat",
                    "inbox": "webchat",
                    "idempotency_key": i,
                    "text": t,
                    "subject": s,
                    "created_at": T0 + n,
                }
                for n, (i, c, t, s) in enumerate(texts)
            ],
        )

    await hub.store.writer.call(run)


async def _search(hub: RunningHub, token: str, **params: str) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{hub.url}/api/search", params=params, headers={"Authorization": f"Bearer {token}"}
        ) as response,
    ):
        return response.status, await response.json()


def _ids(body: Any) -> list[tuple[str, str]]:
    return [(hit["match"], hit["message_id"] or hit["conversation_id"]) for hit in body["hits"]]


async def test_search_finds_text_subjects_and_customers(store_url: str, tmp_path: Path) -> None:
    async with running_hub(_settings(store_url, tmp_path)) as hub:
        await _seed(hub)
        sue = await login(hub, "sue", AGENT_PASSWORD)
        status, body = await _search(hub, sue, q="rechnung")
        assert status == 200, body
        assert _ids(body) == [("message", "m2"), ("message", "m1")]  # newest first
        hit = body["hits"][1]
        assert hit["subject"] == "Rechnung fehlt" and hit["queue"] == "billing"
        assert hit["customer"] == {
            "id": "cu-anna",
            "name": "Anna Müller",
            "customer_number": "K00034",
        }
        assert "R-2211" in hit["snippet"]
        # every word must be there; a word's start is enough
        assert _ids((await _search(hub, sue, q="Rech R-2211"))[1]) == [("message", "m1")]
        assert _ids((await _search(hub, sue, q="paket rückruf"))[1]) == [("message", "m4")]
        # customers by number prefix, name or company: each of their conversations
        by_number = (await _search(hub, sue, q="K0003"))[1]
        assert {h["conversation_id"] for h in by_number["hits"]} == {"cv-bill", "cv-gen"}
        assert {h["match"] for h in by_number["hits"]} == {"customer"}
        by_company = (await _search(hub, sue, q="Bäckerei"))[1]
        assert {h["conversation_id"] for h in by_company["hits"]} == {"cv-bill", "cv-gen"}
        by_address = (await _search(hub, sue, q="anna@example.com"))[1]
        assert {h["conversation_id"] for h in by_address["hits"] if h["match"] == "customer"} == {
            "cv-bill",
            "cv-gen",
        }
        # FTS syntax in the text is matched as words, not run
        hostile = (await _search(hub, sue, q='"quotes" AND NEAR(stuff) *'))[1]
        assert _ids(hostile) == [("message", "m5")]


async def test_pages_follow_each_other_without_repeats(store_url: str, tmp_path: Path) -> None:
    async with running_hub(_settings(store_url, tmp_path)) as hub:
        await _seed(hub)

        async def more(connection: AsyncConnection) -> None:
            await connection.execute(
                insert(messages),
                [
                    {
                        "id": f"p{n:02d}",
                        "conversation_id": "cv-ben",
                        "kind": "message",
                        "direction": "inbound",
                        "channel": "webchat",
                        "inbox": "webchat",
                        "idempotency_key": f"p{n}",
                        "text": f"Lieferung {n} verspätet",
                        "created_at": T0 + 50 + n % 3,
                    }  # equal times: the key breaks ties
                    for n in range(23)
                ],
            )

        await hub.store.writer.call(more)
        sue = await login(hub, "sue", AGENT_PASSWORD)
        seen: list[tuple[str, str]] = []
        cursor = ""
        pages = 0
        while True:
            status, body = await _search(hub, sue, q="lieferung", limit="10", cursor=cursor)
            assert status == 200, body
            seen += _ids(body)
            pages += 1
            if body["next_cursor"] is None:
                break
            cursor = body["next_cursor"]
        assert pages == 3
        assert len(seen) == len(set(seen)) == 23
        times = [int(key[1:]) % 3 for _, key in seen]
        assert times == sorted(times, reverse=True)


async def test_an_agent_finds_only_what_they_may_see(store_url: str, tmp_path: Path) -> None:
    async with running_hub(_settings(store_url, tmp_path)) as hub:
        await _seed(hub)
        carol = await login(hub, "carol", AGENT_PASSWORD)  # serves billing only
        alice = await login(hub, "alice", AGENT_PASSWORD)  # serves every queue
        assert _ids((await _search(hub, carol, q="paket"))[1]) == []
        assert _ids((await _search(hub, alice, q="paket"))[1]) == [
            ("message", "m4"),
            ("message", "m3"),
        ]
        carol_anna = (await _search(hub, carol, q="Anna"))[1]
        assert {h["conversation_id"] for h in carol_anna["hits"]} == {"cv-bill"}

        # assigned to carol although in a queue she does not serve: she sees it
        async def hand_over(connection: AsyncConnection) -> None:
            await connection.execute(
                update(conversations)
                .where(conversations.c.id == "cv-ben")
                .values(assignee="carol", status="assigned")
            )

        await hub.store.writer.call(hand_over)
        assert _ids((await _search(hub, carol, q="paket"))[1]) == [("message", "m4")]
        status, _ = await _search(hub, "not-a-token", q="paket")
        assert status == 401


async def test_hostile_queries_answer_400_with_a_reason(store_url: str, tmp_path: Path) -> None:
    async with running_hub(_settings(store_url, tmp_path)) as hub:
        await _seed(hub)
        sue = await login(hub, "sue", AGENT_PASSWORD)
        for params, reason in [
            ({"q": "Ä" * 1000}, "longer than 200"),
            ({"q": "*:^()\"'"}, "no letters or digits"),
            ({}, "q is empty"),
            ({"q": "paket", "cursor": "%%%"}, "cursor"),
            ({"q": "paket", "limit": "1e9"}, "limit"),
        ]:
            status, body = await _search(hub, sue, **params)
            assert status == 400, (params, body)
            assert body["error"] == "bad_query" and reason in body["message"]
        # a URL past the server's line limit is refused before the handler (400 too)
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"{hub.url}/api/search",
                params={"q": "Ä" * 5000},
                headers={"Authorization": f"Bearer {sue}"},
            ) as response,
        ):
            assert response.status == 400
        # what FTS5 or to_tsquery would choke on is searched as words
        for q in ['"', "a*b", "NOT", "x OR", "'", "a:b:c", "\\", "NEAR/3", "&&", "ŝ̷̨"]:
            status, body = await _search(hub, sue, q=q)
            assert status in (200, 400), (q, body)


async def test_an_erased_or_edited_message_is_no_longer_found(
    store_url: str, tmp_path: Path
) -> None:
    async with running_hub(_settings(store_url, tmp_path)) as hub:
        await _seed(hub)
        sue = await login(hub, "sue", AGENT_PASSWORD)

        async def erase(connection: AsyncConnection) -> None:
            await connection.execute(delete(messages).where(messages.c.id == "m4"))
            await connection.execute(
                update(messages).where(messages.c.id == "m3").values(text="[erased]")
            )
            await connection.execute(
                update(customers).where(customers.c.id == "cu-ben").values(name=None)
            )

        await hub.store.writer.call(erase)
        assert _ids((await _search(hub, sue, q="paket"))[1]) == []
        assert _ids((await _search(hub, sue, q="erased"))[1]) == [("message", "m3")]
        assert _ids((await _search(hub, sue, q="Schulz"))[1]) == []


@pytest.mark.parametrize("vacuum", [False, True])
async def test_search_is_right_after_an_erasures_compaction(
    sqlite_url: str, tmp_path: Path, vacuum: bool
) -> None:
    """compact() merges the FTS5 indexes (or rebuilds them after a VACUUM, which may renumber
    the rowids they point at); hits still name the right messages."""
    from hub.privacy.erase import compact

    async with running_hub(_settings(sqlite_url, tmp_path)) as hub:
        await _seed(hub)

        async def drop_first(connection: AsyncConnection) -> None:
            await connection.execute(delete(messages).where(messages.c.id.in_(["m1", "m2"])))

        await hub.store.writer.call(drop_first)
        await compact(hub.store, vacuum=vacuum)
        sue = await login(hub, "sue", AGENT_PASSWORD)
        assert _ids((await _search(hub, sue, q="paket"))[1]) == [
            ("message", "m4"),
            ("message", "m3"),
        ]
        assert _ids((await _search(hub, sue, q="quotes"))[1]) == [("message", "m5")]
