"""Inbox views (``GET /api/conversations``, issue 18) on SQLite and PostgreSQL: each view,
the filters, pages, what an agent may see, and bad parameters answered with 400."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.inbox.query import After, BadRequest, decode_cursor, encode_cursor, parse
from hub.store.schema import conversations, customers
from tests.helpers import RunningHub, login, running_hub
from tests.test_search import _settings

T0 = 1_780_000_000.0


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"view": "everything"}, "view must be one of"),
        ({"channel": "web chat"}, "channel must be a name"),
        ({"queue": "x" * 65}, "queue must be a name"),
        ({"tag": "'; DROP TABLE x; --"}, "tag must be a name"),
        ({"tier": "AA"}, "tier is one letter"),
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"cursor": "!!"}, "cursor"),
        ({"sort": "id"}, "unknown parameter 'sort'"),
    ],
)
def test_bad_parameters_say_what_to_change(params: dict[str, str], reason: str) -> None:
    with pytest.raises(BadRequest, match=reason):
        parse(params)


def test_defaults_and_cursor() -> None:
    query = parse({})
    assert query.view == "mine" and query.limit == 50 and query.after is None
    assert parse({"tier": "a"}).tier == "A"
    after = After(at=T0, key="cv-1")
    assert decode_cursor(encode_cursor(after)) == after


async def _seed(hub: RunningHub) -> None:
    async def run(connection: AsyncConnection) -> None:
        await connection.execute(
            insert(customers),
            [
                {
                    "id": "cu-a",
                    "kind": "customer",
                    "name": "Anna",
                    "external_id": "K1",
                    "created_at": T0,
                    "tier_override": "A",
                },
                {
                    "id": "cu-b",
                    "kind": "customer",
                    "name": "Ben",
                    "external_id": "K2",
                    "created_at": T0,
                    "tier_override": "C",
                },
            ],
        )
        # tiers set by hand: the hub's own recompute of customer_stats at start may run after
        # this seed and would drop computed ones (no orders)
        rows = [
            # id, customer, channel, queue, status, assignee, tags, updated
            ("cv-1", "cu-a", "email", "billing", "assigned", "carol", ["vip"], 10),
            ("cv-2", "cu-a", "webchat", "general", "queued", None, [], 20),
            ("cv-3", "cu-b", "sms", "billing", "queued", None, ["vip", "refund"], 30),
            ("cv-4", "cu-b", "email", "general", "closed", None, [], 40),
            ("cv-5", "cu-b", "email", "billing", "closed", None, ["refund"], 50),
            ("cv-6", "cu-a", "webchat", "general", "assigned", "alice", [], 60),
        ]
        await connection.execute(
            insert(conversations),
            [
                {
                    "id": i,
                    "customer_id": cu,
                    "channel": ch,
                    "inbox": ch,
                    "status": st,
                    "queue": q,
                    "priority": "normal",
                    "assignee": a,
                    "decision": {"tags": tags},
                    "created_at": T0,
                    "updated_at": T0 + up,
                }
                for i, cu, ch, q, st, a, tags, up in rows
            ],
        )

    await hub.store.writer.call(run)


async def _view(hub: RunningHub, token: str, **params: str) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{hub.url}/api/conversations",
            params=params,
            headers={"Authorization": f"Bearer {token}"},
        ) as response,
    ):
        return response.status, await response.json()


def _ids(body: Any) -> list[str]:
    return [c["id"] for c in body["conversations"]]


async def test_views_filters_and_scope(store_url: str, tmp_path: Path) -> None:
    async with running_hub(_settings(store_url, tmp_path)) as hub:
        await _seed(hub)
        sue = await login(hub, "sue", "correct horse battery")
        carol = await login(hub, "carol", "correct horse battery")  # serves billing
        alice = await login(hub, "alice", "correct horse battery")  # serves every queue

        async def ids(token: str, **params: str) -> list[str]:
            status, body = await _view(hub, token, **params)
            assert status == 200, body
            return _ids(body)

        assert await ids(carol) == ["cv-1"]  # mine: held by carol
        assert await ids(alice, view="mine") == ["cv-6"]
        assert await ids(carol, view="queues") == ["cv-3"]
        assert await ids(alice, view="queues") == ["cv-3", "cv-2"]
        assert await ids(carol, view="unassigned") == ["cv-3"]
        assert await ids(sue, view="unassigned") == ["cv-3", "cv-2"]
        assert await ids(carol, view="closed") == ["cv-5"]
        assert await ids(sue, view="closed") == ["cv-5", "cv-4"]
        assert await ids(carol, view="all") == ["cv-5", "cv-3", "cv-1"]
        assert await ids(sue, view="all") == ["cv-6", "cv-5", "cv-4", "cv-3", "cv-2", "cv-1"]
        # filters
        assert await ids(sue, view="all", channel="email") == ["cv-5", "cv-4", "cv-1"]
        assert await ids(sue, view="all", queue="general") == ["cv-6", "cv-4", "cv-2"]
        assert await ids(sue, view="all", tag="vip") == ["cv-3", "cv-1"]
        assert await ids(sue, view="all", tag="refund", channel="sms") == ["cv-3"]
        assert await ids(sue, view="all", tier="a") == ["cv-6", "cv-2", "cv-1"]
        assert await ids(sue, view="all", tier="C") == ["cv-5", "cv-4", "cv-3"]
        status, body = await _view(hub, sue, view="all")
        first = body["conversations"][0]
        assert first["customer"] == {
            "id": "cu-a",
            "name": "Anna",
            "customer_number": "K1",
            "tier": "A",
        }
        assert body["conversations"][2]["tags"] == []
        # pages
        seen: list[str] = []
        cursor = ""
        while True:
            status, body = await _view(hub, sue, view="all", limit="4", cursor=cursor)
            seen += _ids(body)
            if body["next_cursor"] is None:
                break
            cursor = body["next_cursor"]
        assert seen == ["cv-6", "cv-5", "cv-4", "cv-3", "cv-2", "cv-1"]
        # refused
        status, body = await _view(hub, sue, view="nope")
        assert status == 400 and body["error"] == "bad_parameter"
        status, body = await _view(hub, sue, tag="a'b")
        assert status == 400
        status, _ = await _view(hub, "no-token")
        assert status == 401
