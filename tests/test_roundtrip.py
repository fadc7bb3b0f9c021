"""Integration: the real hub on a free loopback port, customers and agents over websockets.

Every test runs on SQLite and on PostgreSQL (see the ``store_url`` fixture).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import func, select
from websockets.exceptions import InvalidStatus

from hub.store.schema import conversations, events, messages, outbox
from tests.conftest import _HASH, AGENT_PASSWORD, make_settings
from tests.helpers import agent_client, chat_client, client_id, login, running_hub

pytestmark = pytest.mark.integration

# alice supervises, bob does not
SUPERVISED = [
    {"id": "alice", "name": "Alice", "password_hash": _HASH, "supervisor": True},
    {"id": "bob", "name": "Bob", "password_hash": _HASH},
]


async def _count(hub, table, *where) -> int:
    async with hub.store.engine.connect() as connection:
        query = select(func.count()).select_from(table)
        for clause in where:
            query = query.where(clause)
        return int((await connection.execute(query)).scalar_one())


async def test_chat_round_trip_with_reloads(store_url: str, tmp_path: Path) -> None:
    settings = make_settings(store_url, tmp_path)
    async with running_hub(settings) as hub:
        token = await login(hub, "alice", AGENT_PASSWORD)
        async with agent_client(hub, token) as (agent, snapshot):
            assert snapshot["offers"] == [] and snapshot["conversations"] == []
            async with chat_client(hub, name="Carla") as (customer, welcome):
                assert welcome["history"] == []
                visitor_token = welcome["token"]
                first = client_id()
                await customer.send(type="message", client_id=first, text="Where is my order?")
                ack = await customer.expect("ack", client_id=first)
                assert ack["duplicate"] is False

                offer = await agent.expect("offer")
                assert offer["preview"] == "Where is my order?"
                assert offer["channel"] == "webchat"
                assert offer["customer"]["name"] == "Carla"
                conversation_id = offer["conversation_id"]
                await agent.send(type="accept", conversation_id=conversation_id)
                opened = await agent.expect("conversation")
                conversation = opened["conversation"]
                assert conversation["id"] == conversation_id
                assert conversation["assignee"] == "alice"
                assert [m["text"] for m in conversation["messages"]] == ["Where is my order?"]

                reply_id = client_id()
                await agent.send(
                    type="reply",
                    conversation_id=conversation_id,
                    client_id=reply_id,
                    text="It ships today.",
                )
                reply_ack = await agent.expect("reply_ack", client_id=reply_id)
                assert reply_ack["duplicate"] is False
                live = await customer.expect("message")
                assert live["text"] == "It ships today." and live["from"] == "agent"
                delivery = await agent.expect("delivery", message_id=reply_ack["message"]["id"])
                assert delivery["status"] == "delivered"

                # a second customer message reaches the agent live
                second = client_id()
                await customer.send(type="message", client_id=second, text="Thanks!")
                await customer.expect("ack", client_id=second)
                pushed = await agent.expect(
                    "message",
                    conversation_id=conversation_id,
                    where=lambda f: f["message"]["direction"] == "inbound",
                )
                assert pushed["message"]["text"] == "Thanks!"
                # the agent's other windows see their own reply too
                echo = await agent.expect(
                    "message", where=lambda f: f["message"]["direction"] == "outbound"
                )
                assert echo["message"]["id"] == reply_ack["message"]["id"]

            # the customer reloads: same visitor, full history
            async with chat_client(hub, token=visitor_token) as (_, again):
                assert again["visitor"] == welcome["visitor"]
                assert [(m["from"], m["text"]) for m in again["history"]] == [
                    ("you", "Where is my order?"),
                    ("agent", "It ships today."),
                    ("you", "Thanks!"),
                ]

        # the agent reloads (within the grace period): the conversation is still theirs
        async with agent_client(hub, token) as (_, snapshot):
            assert [c["id"] for c in snapshot["conversations"]] == [conversation_id]
            texts = [m["text"] for m in snapshot["conversations"][0]["messages"]]
            assert texts == ["Where is my order?", "It ships today.", "Thanks!"]


async def test_state_survives_restart(store_url: str, tmp_path: Path) -> None:
    settings = make_settings(store_url, tmp_path, dispatch={"disconnect_grace": "30s"})
    async with running_hub(settings) as hub:
        token = await login(hub, "alice", AGENT_PASSWORD)
        async with agent_client(hub, token) as (agent, _), chat_client(hub) as (customer, welcome):
            await customer.send(type="message", client_id="c1", text="hello")
            await customer.expect("ack", client_id="c1")
            offer = await agent.expect("offer")
            await agent.send(type="accept", conversation_id=offer["conversation_id"])
            await agent.expect("conversation")
    async with running_hub(settings) as hub:
        async with agent_client(hub, token) as (_, snapshot):
            assert [c["id"] for c in snapshot["conversations"]] == [offer["conversation_id"]]
        async with chat_client(hub, token=welcome["token"]) as (_, again):
            assert [m["text"] for m in again["history"]] == ["hello"]


async def test_duplicate_reply_and_duplicate_message_create_nothing(
    store_url: str, tmp_path: Path
) -> None:
    async with running_hub(make_settings(store_url, tmp_path)) as hub:
        token = await login(hub, "alice", AGENT_PASSWORD)
        async with agent_client(hub, token) as (agent, _), chat_client(hub) as (customer, _w):
            await customer.send(type="message", client_id="same", text="once")
            first = await customer.expect("ack", client_id="same")
            await customer.send(type="message", client_id="same", text="once")
            again = await customer.expect("ack", client_id="same")
            assert again["duplicate"] is True and again["id"] == first["id"]

            offer = await agent.expect("offer")
            conversation_id = offer["conversation_id"]
            await agent.send(type="accept", conversation_id=conversation_id)
            await agent.expect("conversation")
            frame = {
                "type": "reply",
                "conversation_id": conversation_id,
                "client_id": "r1",
                "text": "answer",
            }
            # a double click: the same frame twice, without waiting
            await agent.send(**frame)
            await agent.send(**frame)
            acks = [await agent.expect("reply_ack", client_id="r1") for _ in range(2)]
            assert sorted(ack["duplicate"] for ack in acks) == [False, True]
            assert acks[0]["message"]["id"] == acks[1]["message"]["id"]
            await customer.expect("message")
            await customer.nothing("message", within=0.5)
        assert await _count(hub, messages, messages.c.direction == "inbound") == 1
        assert await _count(hub, messages, messages.c.direction == "outbound") == 1
        assert await _count(hub, outbox) == 1


async def test_concurrent_redelivery_is_stored_once(store_url: str, tmp_path: Path) -> None:
    async with running_hub(make_settings(store_url, tmp_path)) as hub:
        async with (
            chat_client(hub) as (first, welcome),
            chat_client(hub, token=welcome["token"]) as (second, _),
        ):
            await asyncio.gather(
                first.send(type="message", client_id="x", text="same"),
                second.send(type="message", client_id="x", text="same"),
            )
            acks = [await first.expect("ack"), await second.expect("ack")]
        assert acks[0]["id"] == acks[1]["id"]
        assert await _count(hub, messages) == 1


async def test_malformed_and_oversized_frames_keep_the_socket_up(
    store_url: str, tmp_path: Path
) -> None:
    async with running_hub(make_settings(store_url, tmp_path)) as hub:
        token = await login(hub, "alice", AGENT_PASSWORD)
        async with agent_client(hub, token) as (agent, _):
            await agent.send_raw("{not json")
            assert (await agent.expect("error"))["code"] == "bad_frame"
            await agent.send(type="launch_missiles")
            assert (await agent.expect("error"))["code"] == "unknown_type"
            await agent.send(type="accept")
            assert (await agent.expect("error"))["code"] == "bad_frame"
            await agent.send(type="reply", conversation_id="c", client_id="x", text="y" * 70_000)
            assert (await agent.expect("error"))["code"] == "frame_too_large"
            await agent.send_raw(b"\x00\x01binary")
            assert (await agent.expect("error"))["code"] == "bad_frame"
            await agent.send(type="reply", conversation_id="nope", client_id="r", text="hi")
            assert (await agent.expect("error"))["code"] == "not_assigned"
            await agent.send(type="accept", conversation_id="nope")
            assert (await agent.expect("error"))["code"] == "invalid_state"
            await agent.send(type="ping", ref="still-there")
            assert (await agent.expect("pong"))["ref"] == "still-there"

        async with chat_client(hub) as (customer, _):
            await customer.send_raw("[]")
            assert (await customer.expect("error"))["code"] == "bad_frame"
            await customer.send(type="message", client_id="long", text="x" * 5000)
            assert (await customer.expect("error"))["code"] == "too_long"
            await customer.send(type="message", client_id="blank", text="   ")
            assert (await customer.expect("error"))["code"] == "empty"
            await customer.send(type="ping")
            await customer.expect("pong")
        assert await _count(hub, messages) == 0


async def test_chat_rate_limit(sqlite_url: str, tmp_path: Path) -> None:
    channels = [
        {"name": "webchat", "type": "webchat", "settings": {"rate_per_second": 0.1, "burst": 3}}
    ]
    async with running_hub(make_settings(sqlite_url, tmp_path, channels=channels)) as hub:
        async with chat_client(hub) as (customer, _):
            for index in range(5):
                await customer.send(type="message", client_id=f"m{index}", text="spam")
            codes = []
            for index in range(5):
                ack = (
                    await customer.expect("ack", client_id=f"m{index}", timeout=0.5)
                    if index < 3
                    else await customer.expect("error", client_id=f"m{index}")
                )
                codes.append(ack["type"] if ack["type"] == "ack" else ack["code"])
            assert codes == ["ack", "ack", "ack", "rate_limited", "rate_limited"]
        assert await _count(hub, messages) == 3


async def test_wrong_origin_and_foreign_token_are_refused(store_url: str, tmp_path: Path) -> None:
    async with running_hub(make_settings(store_url, tmp_path)) as hub:
        token = await login(hub, "alice", AGENT_PASSWORD)
        with pytest.raises(InvalidStatus) as refused:
            async with agent_client(hub, token, origin="https://evil.example"):
                pass
        assert refused.value.response.status_code == 403
        with pytest.raises(InvalidStatus):
            async with chat_client(hub, origin="https://evil.example"):
                pass
        # the hub's own origin is fine
        async with agent_client(hub, token, origin=hub.url):
            pass

        async with chat_client(hub) as (customer, mine):
            await customer.send(type="message", client_id="secret", text="my private order")
            await customer.expect("ack")
        forged = f"v1.{mine['visitor']}.{'A' * 24}"
        async with chat_client(hub, token=forged) as (stranger, welcome):
            error = await stranger.expect("error")
            assert error["code"] == "invalid_token"
            assert welcome["history"] == []
            assert welcome["visitor"] != mine["visitor"]
        async with chat_client(hub, token="garbage") as (_, welcome):
            assert welcome["history"] == []


async def test_agent_auth_failures(sqlite_url: str, tmp_path: Path) -> None:
    from websockets.asyncio.client import connect

    async with running_hub(make_settings(sqlite_url, tmp_path)) as hub:
        async with aiohttp.ClientSession() as session:
            async with session.post(
                f"{hub.url}/api/login", json={"username": "alice", "password": "wrong"}
            ) as response:
                assert response.status == 401
            async with session.post(f"{hub.url}/api/login", data="username=alice") as response:
                assert response.status == 415
            async with session.post(
                f"{hub.url}/api/login", data=b"{", headers={"Content-Type": "application/json"}
            ) as response:
                assert response.status == 400
            async with session.get(f"{hub.url}/api/me") as response:
                assert response.status == 401
        async with connect(f"{hub.ws_url}/ws/agent") as socket:
            await socket.send('{"type": "accept", "conversation_id": "x"}')
            assert '"not_authenticated"' in await socket.recv()
            await socket.send('{"type": "auth", "token": "not-a-session"}')
            assert '"auth_failed"' in await socket.recv()
            await socket.wait_closed()
            assert socket.close_code == 4401


async def test_decline_and_disconnect_requeue(store_url: str, tmp_path: Path) -> None:
    async with running_hub(make_settings(store_url, tmp_path)) as hub:
        alice = await login(hub, "alice", AGENT_PASSWORD)
        bob = await login(hub, "bob", AGENT_PASSWORD)
        async with agent_client(hub, alice) as (a, _), chat_client(hub) as (customer, _w):
            await customer.send(type="message", client_id="1", text="help")
            await customer.expect("ack")
            conversation_id = (await a.expect("offer"))["conversation_id"]
            await a.send(type="decline", conversation_id=conversation_id, reason="busy")
            revoked = await a.expect("offer_revoked", conversation_id=conversation_id)
            assert revoked["reason"] == "declined"
            async with agent_client(hub, bob) as (b, _):
                await b.expect("offer", conversation_id=conversation_id)
                await b.send(type="accept", conversation_id=conversation_id)
                assert (await b.expect("conversation"))["conversation"]["assignee"] == "bob"
                # alice cannot act on bob's conversation
                await a.send(
                    type="reply", conversation_id=conversation_id, client_id="x", text="mine now"
                )
                assert (await a.expect("error"))["code"] == "not_assigned"
            # bob stays away past the 1 s grace period: the conversation returns to the queue
            # with its age, and the agent who is still there is offered it again (an earlier
            # decline does not keep a customer waiting once the situation changed)
            again = await a.expect("offer", conversation_id=conversation_id, timeout=3)
            assert again["preview"] == "help"
        async with hub.store.engine.connect() as connection:
            row = (
                await connection.execute(
                    select(conversations.c.status, conversations.c.assignee, conversations.c.id)
                )
            ).one()
            kinds = (
                (
                    await connection.execute(
                        select(events.c.kind)
                        .where(events.c.conversation_id == conversation_id)
                        .order_by(events.c.seq)
                    )
                )
                .scalars()
                .all()
            )
        assert (row.id, row.status, row.assignee) == (conversation_id, "queued", None)
        assert kinds == [
            "conversation.created",
            "message.received",
            "offer.sent",
            "offer.declined",
            "offer.sent",
            "conversation.assigned",
            "conversation.requeued",
            "offer.sent",
        ]


async def test_close_with_disposition_and_new_conversation(store_url: str, tmp_path: Path) -> None:
    async with running_hub(make_settings(store_url, tmp_path)) as hub:
        token = await login(hub, "alice", AGENT_PASSWORD)
        async with agent_client(hub, token) as (agent, _), chat_client(hub) as (customer, w):
            await customer.send(type="message", client_id="1", text="first question")
            await customer.expect("ack")
            first = (await agent.expect("offer"))["conversation_id"]
            await agent.send(type="accept", conversation_id=first)
            await agent.expect("conversation")
            await agent.send(
                type="note", conversation_id=first, client_id="n1", text="internal: VIP"
            )
            note = await agent.expect("reply_ack", client_id="n1")
            assert note["message"]["kind"] == "note"
            await agent.send(type="close", conversation_id=first, disposition="resolved")
            closed = await agent.expect("conversation_closed")
            assert closed["disposition"] == "resolved"
            await customer.send(type="message", client_id="2", text="another question")
            await customer.expect("ack")
            second = (await agent.expect("offer"))["conversation_id"]
            assert second != first
        async with chat_client(hub, token=w["token"]) as (_, again):
            # notes are internal: the customer never sees them
            assert [m["text"] for m in again["history"]] == ["first question", "another question"]


async def test_sticky_routing_and_no_reply_requeue(sqlite_url: str, tmp_path: Path) -> None:
    settings = make_settings(
        sqlite_url,
        tmp_path,
        dispatch={
            "offer_timeout": "5s",
            "disconnect_grace": "30s",
            "sticky_wait": "10s",
            "reply_timeout": "1s",
        },
        # round robin: without stickiness bob (no offers yet) would be next
        queues=[{"name": "general", "strategy": "round-robin"}, {"name": "billing"}],
    )
    async with running_hub(settings) as hub:
        alice = await login(hub, "alice", AGENT_PASSWORD)
        bob = await login(hub, "bob", AGENT_PASSWORD)
        async with agent_client(hub, alice) as (a, _), chat_client(hub) as (customer, _w):
            await customer.send(type="message", client_id="1", text="first visit")
            await customer.expect("ack")
            first = (await a.expect("offer"))["conversation_id"]
            await a.send(type="accept", conversation_id=first)
            await a.expect("conversation")
            await a.send(type="reply", conversation_id=first, client_id="r", text="hello")
            await a.expect("reply_ack")
            await a.send(type="close", conversation_id=first, disposition="resolved")
            await a.expect("conversation_closed")
            async with agent_client(hub, bob) as (b, _):
                # bob is next in the round, but the returning customer goes to alice first
                await customer.send(type="message", client_id="2", text="me again")
                await customer.expect("ack")
                second = (await a.expect("offer"))["conversation_id"]
                assert second != first
                await b.nothing("offer", within=0.3)
                # alice accepts but never answers: after 1 s it goes back, to bob
                await a.send(type="accept", conversation_id=second)
                await a.expect("conversation")
                removed = await a.expect("conversation_removed", timeout=5)
                assert removed == {
                    "type": "conversation_removed",
                    "conversation_id": second,
                    "reason": "no_reply",
                }
                assert (await b.expect("offer", timeout=5))["conversation_id"] == second


async def test_transfer_to_a_colleague(sqlite_url: str, tmp_path: Path) -> None:
    async with running_hub(make_settings(sqlite_url, tmp_path)) as hub:
        alice = await login(hub, "alice", AGENT_PASSWORD)
        bob = await login(hub, "bob", AGENT_PASSWORD)
        async with agent_client(hub, alice) as (a, _), chat_client(hub) as (customer, _w):
            await customer.send(type="message", client_id="1", text="billing question")
            await customer.expect("ack")
            conversation_id = (await a.expect("offer"))["conversation_id"]
            await a.send(type="accept", conversation_id=conversation_id)
            await a.expect("conversation")
            async with agent_client(hub, bob) as (b, _):
                await a.send(type="transfer", conversation_id=conversation_id, agent="nobody")
                assert (await a.expect("error"))["code"] == "not_found"
                await a.send(
                    type="transfer",
                    conversation_id=conversation_id,
                    agent="bob",
                    note="please take the invoice part",
                )
                removed = await a.expect("conversation_removed")
                assert removed["reason"] == "transferred"
                await b.send(
                    type="accept", conversation_id=(await b.expect("offer"))["conversation_id"]
                )
                taken = (await b.expect("conversation"))["conversation"]
                assert taken["id"] == conversation_id and taken["assignee"] == "bob"


async def test_supervisors_see_the_queues_live(sqlite_url: str, tmp_path: Path) -> None:
    async with running_hub(make_settings(sqlite_url, tmp_path, agents=SUPERVISED)) as hub:
        alice = await login(hub, "alice", AGENT_PASSWORD)
        bob = await login(hub, "bob", AGENT_PASSWORD)
        async with agent_client(hub, alice) as (a, _), agent_client(hub, bob) as (b, _):
            first = await a.expect("queue_state")
            assert {q["name"]: q["waiting"] for q in first["queues"]} == {
                "general": 0,
                "billing": 0,
            }
            await a.send(type="presence", status="away")
            await b.send(type="presence", status="away")
            async with chat_client(hub) as (customer, _w):
                await customer.send(type="message", client_id="1", text="anyone?")
                await customer.expect("ack")
                state = await a.expect(
                    "queue_state",
                    timeout=5,
                    where=lambda f: f["queues"][1]["waiting"] == 1,  # sorted: billing, general
                )
            assert {agent["id"]: agent["presence"] for agent in state["agents"]} == {
                "alice": "away",
                "bob": "away",
            }
            await b.nothing("queue_state", within=1.5)  # only supervisors get it


async def test_overflow_moves_waiting_work(sqlite_url: str, tmp_path: Path) -> None:
    from tests.conftest import _HASH

    settings = make_settings(
        sqlite_url,
        tmp_path,
        queues=[
            {"name": "general", "overflow": [{"after": "1s", "to": "billing"}]},
            {"name": "billing"},
        ],
        agents=[{"id": "bob", "name": "Bob", "password_hash": _HASH, "queues": ["billing"]}],
    )
    async with running_hub(settings) as hub:
        bob = await login(hub, "bob", AGENT_PASSWORD)
        async with agent_client(hub, bob) as (b, _), chat_client(hub) as (customer, _w):
            await customer.send(type="message", client_id="1", text="help")
            await customer.expect("ack")
            await b.nothing("offer", within=0.5)  # general: bob does not serve it
            offer = await b.expect("offer", timeout=5)
            assert offer["queue"] == "billing"
        async with hub.store.engine.connect() as connection:
            kinds = (
                await connection.execute(
                    select(events.c.kind, events.c.data).where(
                        events.c.kind == "conversation.moved"
                    )
                )
            ).all()
        assert [row.data["queue"] for row in kinds] == ["billing"]


async def test_supervisor_reassigns_a_held_conversation(sqlite_url: str, tmp_path: Path) -> None:
    async with running_hub(make_settings(sqlite_url, tmp_path, agents=SUPERVISED)) as hub:
        alice = await login(hub, "alice", AGENT_PASSWORD)
        bob = await login(hub, "bob", AGENT_PASSWORD)
        async with agent_client(hub, bob) as (b, _), chat_client(hub) as (customer, _w):
            await customer.send(type="message", client_id="1", text="stuck?")
            await customer.expect("ack")
            conversation_id = (await b.expect("offer"))["conversation_id"]
            await b.send(type="accept", conversation_id=conversation_id)
            await b.expect("conversation")
            await b.send(type="reassign", conversation_id=conversation_id, agent="bob")
            assert (await b.expect("error"))["code"] == "not_allowed"
            async with agent_client(hub, alice) as (a, _):
                await a.send(type="presence", status="away")
                await a.send(type="reassign", conversation_id=conversation_id, agent="alice")
                await a.expect("reassigned", conversation_id=conversation_id)
                removed = await b.expect("conversation_removed")
                assert removed["reason"] == "reassigned"
                await a.send(type="presence", status="available")
                offer = await a.expect("offer", conversation_id=conversation_id)
                assert offer["preview"] == "stuck?"


async def test_abandonment_is_counted_only_for_customers_who_stay_away(
    sqlite_url: str, tmp_path: Path
) -> None:
    settings = make_settings(sqlite_url, tmp_path, dispatch={"abandon_after": "500ms"})
    async with running_hub(settings) as hub:  # no agent online: everything waits
        async with chat_client(hub) as (patient, welcome):
            await patient.send(type="message", client_id="1", text="hello?")
            await patient.expect("ack")
        # a reload: back within the window (and staying), not abandoned
        async with chat_client(hub, token=welcome["token"]):
            async with chat_client(hub) as (leaver, _):
                await leaver.send(type="message", client_id="1", text="never mind")
                left = (await leaver.expect("ack"))["id"]
            # the second customer is gone for good: abandoned once their window (a timer of
            # the event loop, not the hub's clock) has run out. The first one's window, had it
            # not been cancelled by the reload, would have run out before it.
            gone = events.c.conversation_id == (
                select(messages.c.conversation_id).where(messages.c.id == left).scalar_subquery()
            )
            abandonment = events.c.kind == "conversation.abandoned"
            for _ in range(200):
                if await _count(hub, events, abandonment, gone):
                    break
                await asyncio.sleep(0.05)
            abandoned = await _count(hub, events, abandonment)
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"{hub.url}/metrics") as response,
            ):
                metrics = await response.text()
        assert abandoned == 1
        assert 'channelhub_abandoned_total{queue="general"} 1.0' in metrics


async def test_offer_timeout_moves_to_the_next_agent(sqlite_url: str, tmp_path: Path) -> None:
    settings = make_settings(sqlite_url, tmp_path, dispatch={"offer_timeout": "500ms"})
    async with running_hub(settings) as hub:
        alice = await login(hub, "alice", AGENT_PASSWORD)
        bob = await login(hub, "bob", AGENT_PASSWORD)
        async with (
            agent_client(hub, alice) as (a, _),
            agent_client(hub, bob) as (b, _),
            chat_client(hub) as (customer, _w),
        ):
            await customer.send(type="message", client_id="1", text="hello")
            await customer.expect("ack")
            offer = await a.expect("offer")  # alice has been idle longest
            revoked = await a.expect("offer_revoked", timeout=3)
            assert revoked["reason"] == "timeout"
            moved = await b.expect("offer", timeout=3)
            assert moved["conversation_id"] == offer["conversation_id"]


async def test_readyz_reports_an_unreachable_store(sqlite_url: str, tmp_path: Path) -> None:
    async with (
        running_hub(make_settings(sqlite_url, tmp_path)) as hub,
        aiohttp.ClientSession() as session,
    ):
        async with session.get(f"{hub.url}/readyz") as response:
            assert response.status == 200
        await hub.store.engine.dispose()
        database = Path(sqlite_url.removeprefix("sqlite+aiosqlite:///"))
        database.rename(database.with_suffix(".gone"))
        database.mkdir()  # a directory where the database file was: unusable
        async with session.get(f"{hub.url}/readyz") as response:
            assert response.status == 503
            assert (await response.json())["status"] == "unavailable"
        async with session.get(f"{hub.url}/healthz") as response:
            assert response.status == 200  # alive, just not ready
        database.rmdir()
        database.with_suffix(".gone").rename(database)
