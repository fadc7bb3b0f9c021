"""Phone calls end to end: the real hub, the loopback Twilio (Voice REST API, recordings) and
webhooks signed with the SDK's RequestValidator, as Twilio signs them.

A call comes in → TwiML (parsed) → offer → accept → the caller redirected into the
conversation's conference and the agent's phone called into it (seen by the fake) → status
callbacks → the timeline; voicemail with its recording and transcript; callbacks; transfer.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from hub.store.schema import conversations, events, messages
from tests.conftest import AGENT_PASSWORD
from tests.fake_twilio import ACCOUNT_SID, FakeTwilio, fake_twilio
from tests.helpers import agent_client, login, running_hub
from tests.voice_helpers import (
    ALICE_PHONE,
    BOB_SIP,
    CALLER,
    PUBLIC,
    call_fields,
    call_sid,
    local,
    post,
    twiml,
    voice_settings,
)

pytestmark = pytest.mark.integration


async def _count(hub: Any, table: Any, *where: Any) -> int:
    async with hub.store.engine.connect() as connection:
        query = select(func.count()).select_from(table)
        for clause in where:
            query = query.where(clause)
        return int((await connection.execute(query)).scalar_one())


async def _until(check: Any, what: str) -> None:
    for _ in range(200):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never: {what}")


def _conference_of(document: str) -> str:
    [conference] = twiml(document).iter("Conference")
    return conference.text or ""


async def _incoming(session: aiohttp.ClientSession, hub: Any, sid: str, **extra: str) -> Any:
    status, text = await post(session, hub, "/voice", call_fields(sid, **extra))
    assert status == 200, text
    return twiml(text)


async def test_call_offered_accepted_bridged_and_timed(store_url: str, tmp_path: Path) -> None:
    async with fake_twilio() as fake:
        voice = fake.voice
        async with (
            running_hub(voice_settings(store_url, tmp_path, fake)) as hub,
            aiohttp.ClientSession() as session,
        ):
            token = await login(hub, "alice", AGENT_PASSWORD)
            async with agent_client(hub, token) as (agent, _):
                sid = call_sid()
                answer = await _incoming(session, hub, sid)
                say = answer.find("Say")
                assert say is not None and say.text == "Danke für Ihren Anruf."
                assert say.get("language") == "de-DE"
                enqueue = answer.find("Enqueue")
                assert enqueue is not None and enqueue.text == "channelhub-voice"
                wait_url = enqueue.get("waitUrl") or ""
                # Twilio retries a webhook it got no answer to: same answer, one conversation
                again = await _incoming(session, hub, sid)
                assert again.find("Enqueue") is not None
                assert await _count(hub, conversations) == 1

                status, text = await post(
                    session,
                    hub,
                    local(wait_url),
                    {**call_fields(sid), "QueuePosition": "3", "QueueTime": "12"},
                )
                assert status == 200, text
                gather = twiml(text).find("Gather")
                assert gather is not None and gather.get("numDigits") == "1"
                assert (gather.findtext("Say") or "") == "Sie sind Nummer 3."

                offer = await agent.expect("offer")
                assert offer["channel"] == "voice"
                assert offer["customer"]["identities"][0]["address"] == CALLER
                await agent.send(type="accept", conversation_id=offer["conversation_id"])
                conversation = (await agent.expect("conversation"))["conversation"]
                conversation_id = conversation["id"]

                await _until(lambda: len(voice.placed) == 1, "the agent's phone is called")
                [(redirected, update)] = voice.updates
                assert redirected == sid
                assert _conference_of(update["Twiml"]) == conversation_id
                placed = voice.placed[0]
                assert placed["To"] == ALICE_PHONE
                assert _conference_of(placed["Twiml"]) == conversation_id
                assert voice.conferences[conversation_id] == [sid, placed["Sid"]]

                status_url = placed["StatusCallback"]
                answered = {**call_fields(placed["Sid"]), "CallStatus": "in-progress"}
                for _ in range(2):  # a repeated status callback records nothing new
                    status, text = await post(session, hub, local(status_url), answered)
                    assert status == 204, text
                frame = await agent.expect("call", conversation_id=conversation_id)
                assert frame["call"]["state"] == "answered"
                assert frame["call"]["agent"] == "alice"
                voice.hub = (hub.url, PUBLIC)  # Twilio reports holds as conference events
                for hold, state in ((True, "held"), (False, "resumed"), (True, "held")):
                    await agent.send(type="call_hold", conversation_id=conversation_id, hold=hold)
                    frame = await agent.expect("call", conversation_id=conversation_id)
                    assert frame["call"]["state"] == state
                assert [(call, on) for _, call, on in voice.holds] == [
                    (sid, "true"),
                    (sid, "false"),
                    (sid, "true"),
                ]
                path, event = voice.reported[-1]  # the same event again: recorded once
                status, _ = await post(session, hub, path.removeprefix("/channels/voice"), event)
                assert status == 204
                ended = {**call_fields(sid), "CallStatus": "completed", "CallDuration": "42"}
                status, _ = await post(session, hub, "/status", ended)
                assert status == 204
                frame = await agent.expect("call", conversation_id=conversation_id)
                assert (frame["call"]["state"], frame["call"]["duration"]) == ("ended", 42)
                await agent.nothing("call", within=0.3)
                assert await _count(hub, events, events.c.kind == "call.answered") == 1
                assert await _count(hub, events, events.c.kind == "call.held") == 2

                await agent.send(type="open", conversation_id=conversation_id)
                shown = (await agent.expect("conversation"))["conversation"]
                assert [c["state"] for c in shown["calls"]] == [
                    "answered",
                    "held",
                    "resumed",
                    "held",
                    "ended",
                ]


async def test_voicemail_after_max_wait_and_a_call_back(sqlite_url: str, tmp_path: Path) -> None:
    async with fake_twilio() as fake:
        voice = fake.voice
        async with (
            running_hub(voice_settings(sqlite_url, tmp_path, fake)) as hub,
            aiohttp.ClientSession() as session,
        ):
            sid = call_sid()
            answer = await _incoming(session, hub, sid)
            enqueue = answer.find("Enqueue")
            assert enqueue is not None
            status, text = await post(
                session,
                hub,
                local(enqueue.get("waitUrl") or ""),
                {**call_fields(sid), "QueuePosition": "1", "QueueTime": "121"},
            )
            assert twiml(text).find("Leave") is not None
            status, text = await post(
                session,
                hub,
                local(enqueue.get("action") or ""),
                {**call_fields(sid), "QueueResult": "leave", "QueueTime": "121"},
            )
            assert status == 200, text
            record = twiml(text).find("Record")
            assert record is not None and record.get("maxLength") == "120"
            assert record.get("transcribe") == "true"
            recording = {
                "AccountSid": ACCOUNT_SID,
                "CallSid": sid,
                "RecordingSid": "RE" + "a" * 32,
                "RecordingUrl": voice.recording_url("RE" + "a" * 32),
                "RecordingStatus": "completed",
                "RecordingDuration": "17",
                "RecordingChannels": "1",
                "RecordingSource": "RecordVerb",
            }
            for _ in range(2):  # a repeated callback fetches and stores nothing again
                status, text = await post(
                    session, hub, local(record.get("recordingStatusCallback") or ""), recording
                )
                assert status == 204, text
            assert voice.recording_hits == 1
            transcript = {
                **call_fields(sid),
                "TranscriptionSid": "TR" + "b" * 32,
                "TranscriptionStatus": "completed",
                "TranscriptionText": "Please call me about order 4711.",
                "RecordingSid": "RE" + "a" * 32,
            }
            status, _ = await post(
                session, hub, local(record.get("transcribeCallback") or ""), transcript
            )
            assert status == 204
            assert await _count(hub, conversations) == 1
            assert await _count(hub, messages) == 3

            voice.ended.add(sid)  # the caller hung up after the voicemail
            token = await login(hub, "bob", AGENT_PASSWORD)
            async with agent_client(hub, token) as (agent, _):
                offer = await agent.expect("offer")
                await agent.send(type="accept", conversation_id=offer["conversation_id"])
                conversation = (await agent.expect("conversation"))["conversation"]
                texts = [m["text"] for m in conversation["messages"]]
                assert texts[1:] == [
                    "Voicemail, 17 s",
                    "Voicemail transcript: Please call me about order 4711.",
                ]
                [audio] = conversation["messages"][1]["attachments"]
                assert audio["content_type"].startswith("audio/")
                # the redirect into the conference fails: the caller is gone
                error = await agent.expect("error", code="call_failed")
                assert "call back" in error["message"]
                await agent.send(type="call_back", conversation_id=conversation["id"])
                await _until(lambda: len(voice.placed) == 2, "agent and customer called")
                bob_leg, customer_leg = voice.placed
                assert (bob_leg["To"], customer_leg["To"]) == (BOB_SIP, CALLER)
                assert _conference_of(customer_leg["Twiml"]) == conversation["id"]
                failed = await agent.expect("call", conversation_id=conversation["id"])
                assert failed["call"]["state"] == "failed"  # in the timeline, too
                frame = await agent.expect("call", conversation_id=conversation["id"])
                assert frame["call"]["state"] == "callback_dialed"


async def test_key_press_callback_and_an_abandoned_call(sqlite_url: str, tmp_path: Path) -> None:
    async with (
        fake_twilio() as fake,
        running_hub(voice_settings(sqlite_url, tmp_path, fake)) as hub,
        aiohttp.ClientSession() as session,
    ):
        sid = call_sid()
        enqueue = (await _incoming(session, hub, sid)).find("Enqueue")
        assert enqueue is not None
        wait = twiml(
            (
                await post(
                    session,
                    hub,
                    local(enqueue.get("waitUrl") or ""),
                    {**call_fields(sid), "QueuePosition": "1", "QueueTime": "5"},
                )
            )[1]
        )
        gather = wait.find("Gather")
        assert gather is not None
        status, text = await post(
            session, hub, local(gather.get("action") or ""), {**call_fields(sid), "Digits": "2"}
        )
        assert twiml(text).find("Leave") is not None
        status, text = await post(
            session,
            hub,
            local(enqueue.get("action") or ""),
            {**call_fields(sid), "QueueResult": "leave", "QueueTime": "9"},
        )
        answer = twiml(text)
        assert answer.find("Hangup") is not None and answer.find("Record") is None
        assert await _count(hub, messages) == 2
        assert await _count(hub, events, events.c.kind == "call.callback_requested") == 1

        gone = call_sid()
        enqueue = (await _incoming(session, hub, gone)).find("Enqueue")
        assert enqueue is not None
        status, _ = await post(
            session,
            hub,
            local(enqueue.get("action") or ""),
            {**call_fields(gone), "QueueResult": "hangup", "QueueTime": "30"},
        )
        assert status == 200
        assert await _count(hub, events, events.c.kind == "call.abandoned") == 1


async def test_transfer_to_a_colleague_moves_the_call(sqlite_url: str, tmp_path: Path) -> None:
    async with fake_twilio() as fake:
        voice = fake.voice
        voice.script.append((503, 20503, "Service Unavailable"))  # the first redirect: retried
        async with (
            running_hub(voice_settings(sqlite_url, tmp_path, fake)) as hub,
            aiohttp.ClientSession() as session,
        ):
            alice_token = await login(hub, "alice", AGENT_PASSWORD)
            bob_token = await login(hub, "bob", AGENT_PASSWORD)
            async with agent_client(hub, alice_token) as (alice, _):
                await _incoming(session, hub, call_sid())
                offer = await alice.expect("offer")
                conversation_id = offer["conversation_id"]
                await alice.send(type="accept", conversation_id=conversation_id)
                await alice.expect("conversation")
                await _until(lambda: len(voice.placed) == 1, "alice's phone is called")
                alice_leg = voice.placed[0]["Sid"]
                async with agent_client(hub, bob_token) as (bob, _):
                    await alice.send(type="transfer", conversation_id=conversation_id, agent="bob")
                    await alice.expect("conversation_removed", conversation_id=conversation_id)
                    await bob.expect("offer", conversation_id=conversation_id)
                    await bob.send(type="accept", conversation_id=conversation_id)
                    await bob.expect("conversation")
                    await _until(lambda: len(voice.placed) == 2, "bob's phone is called")
                    assert voice.placed[1]["To"] == BOB_SIP
                    await _until(lambda: alice_leg in voice.ended, "alice's leg hung up")
                    frame = await bob.expect("call", conversation_id=conversation_id)
                    assert (frame["call"]["state"], frame["call"]["agent"]) == (
                        "transferred",
                        "bob",
                    )
                assert len([u for u in voice.updates if "Twiml" in u[1]]) == 1  # caller moved once


async def _refused(
    session: aiohttp.ClientSession,
    hub: Any,
    fake: FakeTwilio,
    fields: dict[str, str],
    **headers: str,
) -> tuple[int, str]:
    from tests.fake_twilio import signature
    from tests.voice_helpers import PUBLIC

    signed = headers.pop("signature", None) or signature(PUBLIC + "/channels/voice/voice", fields)
    async with session.post(
        hub.url + "/channels/voice/voice",
        data=fields,
        headers={"X-Twilio-Signature": signed, **headers},
    ) as answer:
        return answer.status, await answer.text()


async def test_hostile_webhooks_store_nothing(sqlite_url: str, tmp_path: Path) -> None:
    async with (
        fake_twilio() as fake,
        running_hub(voice_settings(sqlite_url, tmp_path, fake)) as hub,
        aiohttp.ClientSession() as session,
    ):
        fields = call_fields(call_sid())
        status, text = await _refused(session, hub, fake, fields, signature="forged")
        assert (status, text) == (403, "X-Twilio-Signature does not match")
        no_sid = {k: v for k, v in fields.items() if k != "CallSid"}
        status, text = await _refused(session, hub, fake, no_sid)
        assert (status, text) == (400, "CallSid is missing or malformed")
        bad_caller = {**fields, "From": "<script>alert(1)</script>"}
        status, text = await _refused(session, hub, fake, bad_caller)
        assert (status, text) == (400, "From is missing or malformed")
        huge = {**fields, "CallerName": "x" * 70_000}
        status, _ = await _refused(session, hub, fake, huge)
        assert status == 413
        other = {**fields, "AccountSid": "AC" + "9" * 32}
        status, text = await _refused(session, hub, fake, other)
        assert (status, text) == (403, "AccountSid is not this inbox's account")
        assert await _count(hub, messages) == 0

        # the same call's webhook five times at once: one conversation, five equal answers
        same = call_sid()
        answers = await asyncio.gather(
            *(post(session, hub, "/voice", call_fields(same)) for _ in range(5))
        )
        assert {status for status, _ in answers} == {200}
        assert len({text for _, text in answers}) == 1
        assert await _count(hub, conversations) == 1
        assert await _count(hub, messages) == 1

        # a recording URL off the provider is never fetched: the voicemail says why
        sid = same
        for rec, url in (
            ("RE" + "c" * 32, "https://169.254.169.254/latest/meta-data/rec"),
            ("RE" + "d" * 32, "https://evil.example.com/rec"),
        ):
            status, text = await post(
                session,
                hub,
                "/recording?c=%2B4915112345678&k=voicemail",
                {
                    "AccountSid": ACCOUNT_SID,
                    "CallSid": sid,
                    "RecordingSid": rec,
                    "RecordingUrl": url,
                    "RecordingStatus": "completed",
                    "RecordingDuration": "3",
                },
            )
            assert status == 204, text
        assert fake.voice.recording_hits == 0
        async with hub.store.engine.connect() as connection:
            rows = (
                await connection.execute(
                    select(messages.c.envelope).order_by(messages.c.created_at)
                )
            ).all()
        assert len(rows) == 3
        assert all("not on media_hosts" in str(row.envelope) for row in rows[1:])


async def test_declined_call_goes_to_the_next_agent(sqlite_url: str, tmp_path: Path) -> None:
    async with fake_twilio() as fake:
        voice = fake.voice
        async with (
            running_hub(voice_settings(sqlite_url, tmp_path, fake)) as hub,
            aiohttp.ClientSession() as session,
        ):
            alice_token = await login(hub, "alice", AGENT_PASSWORD)
            bob_token = await login(hub, "bob", AGENT_PASSWORD)
            async with agent_client(hub, alice_token) as (alice, _):
                await _incoming(session, hub, call_sid())
                offer = await alice.expect("offer")
                async with agent_client(hub, bob_token) as (bob, _):
                    await alice.send(
                        type="decline", conversation_id=offer["conversation_id"], reason="busy"
                    )
                    await bob.expect("offer", conversation_id=offer["conversation_id"])
                    await bob.send(type="accept", conversation_id=offer["conversation_id"])
                    await bob.expect("conversation")
                    await _until(lambda: len(voice.placed) == 1, "bob's phone is called")
                    assert voice.placed[0]["To"] == BOB_SIP


async def test_outside_business_hours_straight_to_voicemail(
    sqlite_url: str, tmp_path: Path
) -> None:
    async with fake_twilio() as fake:
        settings = voice_settings(
            sqlite_url,
            tmp_path,
            fake,
            hub={"business_hours": {"never": {"weekly": {}}}},
            business_hours="never",
        )
        async with (
            running_hub(settings) as hub,
            aiohttp.ClientSession() as session,
        ):
            answer = await _incoming(session, hub, call_sid())
            assert answer.find("Enqueue") is None
            assert [say.text for say in answer.iter("Say")][1] == "We are closed right now."
            assert answer.find("Record") is not None
            assert await _count(hub, conversations) == 1  # the call is work all the same


async def test_an_unknown_calendar_stops_the_start(sqlite_url: str, tmp_path: Path) -> None:
    async with fake_twilio() as fake:
        settings = voice_settings(sqlite_url, tmp_path, fake, business_hours="nope")
        with pytest.raises(ValueError, match="business_hours 'nope' is not a calendar"):
            async with running_hub(settings):
                pass
