"""The agent workspace's additions on the websocket (issue 18): a conversation opened
read-only by whoever may read it, and the timeline's audit events on ``open``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from hub.auth import hash_password
from hub.store.schema import events
from tests.conftest import AGENT_PASSWORD, make_settings
from tests.helpers import agent_client, chat_client, client_id, login, running_hub

_HASH = hash_password(AGENT_PASSWORD)


def _settings(url: str, root: Path, **extra: Any) -> Any:
    rules = root / "rules.yaml"
    rules.write_text(
        "version: 1\ndefaults: {queue: general}\n"
        'rules:\n  - name: chat-to-general\n    when: channel == "webchat"\n'
        "    route: {queue: general}\n"
    )
    return make_settings(
        url,
        root,
        rules={"path": str(rules)},
        dispatch={"offer_timeout": "30s"},
        agents=[
            {"id": "alice", "name": "Alice", "password_hash": _HASH},
            {"id": "carol", "name": "Carol", "password_hash": _HASH, "queues": ["billing"]},
            {"id": "dave", "name": "Dave", "password_hash": _HASH, "queues": ["general"]},
            {"id": "sue", "name": "Sue", "password_hash": _HASH, "role": "supervisor"},
        ],
        **extra,
    )


async def test_open_read_only_for_whoever_may_read_it(sqlite_url: str, tmp_path: Path) -> None:
    async with running_hub(_settings(sqlite_url, tmp_path)) as hub:
        alice = await login(hub, "alice", AGENT_PASSWORD)
        async with (
            agent_client(hub, alice) as (agent, _),
            chat_client(hub) as (customer, _),
        ):
            await customer.send(type="message", client_id="1", text="Wo ist mein Paket?")
            offer = await agent.expect("offer")
            cid = offer["conversation_id"]
            await agent.send(type="accept", conversation_id=cid)
            await agent.expect("conversation")
            # the holder's own open: not read-only, with the events so far
            await agent.send(type="open", conversation_id=cid)
            own = (await agent.expect("conversation"))["conversation"]
            assert "read_only" not in own and own["compose"] is not None
            kinds = [event["kind"] for event in own["events"]]
            assert kinds[0] == "conversation.created"
            assert own["events"][0]["data"] == {"queue": "general", "rules": ["chat-to-general"]}
            assert "offer.sent" in kinds and kinds[-1] == "conversation.assigned"
            assert own["events"][-1]["agent"] == "alice"

            for reader in ("sue", "dave"):  # a supervisor; an agent serving the queue
                token = await login(hub, reader, AGENT_PASSWORD)
                async with agent_client(hub, token) as (other, _):
                    await other.send(type="open", conversation_id=cid)
                    seen = (await other.expect("conversation"))["conversation"]
                    assert seen["read_only"] is True and "compose" not in seen
                    assert seen["assignee"] == "alice"
                    assert seen["messages"][0]["text"] == "Wo ist mein Paket?"
                    assert [e["kind"] for e in seen["events"]] == kinds
                    # reading is not holding: no reply, note or close
                    await other.send(
                        type="reply", conversation_id=cid, client_id=client_id(), text="hi"
                    )
                    await other.expect("error", code="not_assigned")
                    await other.send(type="close", conversation_id=cid)
                    await other.expect("error", code="not_assigned")

            carol = await login(hub, "carol", AGENT_PASSWORD)  # serves billing only
            async with agent_client(hub, carol) as (other, _):
                for target in (cid, "no-such-conversation"):  # the same answer for both
                    await other.send(type="open", conversation_id=target)
                    refused = await other.expect("error", code="not_assigned")
                    assert refused["ref"] == target
                await other.send(type="open", conversation_id="x" * 300)
                await other.expect("error", code="bad_frame")
                await other.nothing("conversation", within=0.3)

        async with hub.store.read() as connection:
            viewed = (
                await connection.execute(
                    select(events.c.agent).where(events.c.kind == "conversation.viewed")
                )
            ).scalars()
            assert sorted(viewed) == ["dave", "sue"]


async def test_the_timeline_shows_a_transfer_with_its_note(sqlite_url: str, tmp_path: Path) -> None:
    async with running_hub(_settings(sqlite_url, tmp_path)) as hub:
        alice = await login(hub, "alice", AGENT_PASSWORD)
        sue = await login(hub, "sue", AGENT_PASSWORD)
        async with (
            agent_client(hub, alice) as (agent, _),
            chat_client(hub) as (customer, _),
        ):
            await customer.send(type="message", client_id="1", text="Rechnung falsch")
            cid = (await agent.expect("offer"))["conversation_id"]
            await agent.send(type="accept", conversation_id=cid)
            await agent.expect("conversation")
            await agent.send(
                type="transfer", conversation_id=cid, queue="billing", note="Bitte prüfen"
            )
            await agent.expect("conversation_removed")
        async with agent_client(hub, sue) as (supervisor, _):
            await supervisor.send(type="open", conversation_id=cid)
            seen = (await supervisor.expect("conversation"))["conversation"]
            transfer = next(e for e in seen["events"] if e["kind"] == "conversation.transferred")
            assert transfer["agent"] == "alice"
            assert transfer["data"]["queue"] == "billing"
            assert transfer["data"]["note"] == "Bitte prüfen"
            assert seen["read_only"] is True


async def _forged_mail(hub: Any, key: str) -> None:
    """Mail claiming to be from a known customer without proof (SPF/DKIM failed): a new
    prospect whose customer object lists the address as an unverified claim."""
    import time

    from hub.customers import csvimport
    from hub.envelope import Direction, Envelope, Identity
    from hub.keys import CUSTOMERS, PIPELINE
    from tests.test_customers import CUSTOMERS_CSV

    await hub.app[CUSTOMERS].import_file(csvimport.parse(CUSTOMERS_CSV.encode(), "c.csv"))
    await hub.app[PIPELINE].ingest(
        Envelope(
            channel="email",
            inbox="support",
            direction=Direction.INBOUND,
            idempotency_key=key,
            received_at=time.time(),
            sender_verified=False,
            sender=Identity(kind="email", address="anna@example.com"),
            text="Bitte an neue IBAN zahlen",
        )
    )


async def test_claims_are_confirmed_or_rejected_and_notes_kept(
    store_url: str, tmp_path: Path
) -> None:
    from hub.privacy.erase import erase_customer
    from hub.store.blobs import BlobStore
    from hub.store.schema import customer_notes

    async with running_hub(_settings(store_url, tmp_path)) as hub:
        alice = await login(hub, "alice", AGENT_PASSWORD)
        async with agent_client(hub, alice) as (agent, _):
            await _forged_mail(hub, "<forged@example.com>")
            cid = (await agent.expect("offer"))["conversation_id"]
            await agent.send(type="accept", conversation_id=cid)
            held = (await agent.expect("conversation"))["conversation"]
            (claim,) = held["customer"]["attributes"]["claims"]
            assert claim["verified"] is False and claim["address"] == "anna@example.com"

            # hostile or wrong claims: refused, nothing recorded
            await agent.send(
                type="claim",
                conversation_id=cid,
                kind="email",
                address="x@example.com",
                verdict="confirmed",
            )
            await agent.expect("error", code="not_found")
            await agent.send(
                type="claim",
                conversation_id=cid,
                kind="email",
                address="a" * 600,
                verdict="rejected",
            )
            await agent.expect("error", code="bad_frame")
            await agent.send(
                type="claim",
                conversation_id=cid,
                kind="email",
                address="anna@example.com",
                verdict="maybe",
            )
            await agent.expect("error", code="bad_frame")

            await agent.send(
                type="claim",
                conversation_id=cid,
                kind="email",
                address="anna@example.com",
                verdict="rejected",
            )
            judged = (await agent.expect("conversation"))["conversation"]
            (claim,) = judged["customer"]["attributes"]["claims"]
            assert claim["rejected"] is True and claim["verified"] is False
            assert claim["checked_by"] == "alice"
            verdict = judged["events"][-1]
            assert verdict["kind"] == "identity.claim_rejected" and verdict["agent"] == "alice"
            assert verdict["data"]["address"] == "anna@example.com"

            await agent.send(type="customer_note", conversation_id=cid, text="Ruft oft an")
            noted = (await agent.expect("conversation"))["conversation"]
            assert [(n["author"], n["text"]) for n in noted["customer_notes"]] == [
                ("alice", "Ruft oft an")
            ]
            await agent.send(type="customer_note", conversation_id=cid, text="x" * 5001)
            await agent.expect("error", code="too_long")
            await agent.send(type="customer_note", conversation_id=cid, text="  ")
            await agent.expect("error", code="bad_frame")

            sue = await login(hub, "sue", AGENT_PASSWORD)  # may read, does not hold
            async with agent_client(hub, sue) as (other, _):
                await other.send(type="customer_note", conversation_id=cid, text="hi")
                await other.expect("error", code="not_assigned")
                await other.send(
                    type="claim",
                    conversation_id=cid,
                    kind="email",
                    address="anna@example.com",
                    verdict="confirmed",
                )
                await other.expect("error", code="not_assigned")
                await other.send(type="open", conversation_id=cid)
                seen = (await other.expect("conversation"))["conversation"]
                assert [n["text"] for n in seen["customer_notes"]] == ["Ruft oft an"]

        # erasing the person takes their notes with them
        customer_id = judged["customer"]["id"]
        await erase_customer(
            hub.store, BlobStore(tmp_path / "blobs"), customer_id, actor="dpo", close_open=True
        )
        async with hub.store.read() as connection:
            left = (await connection.execute(select(customer_notes))).all()
        assert left == []
