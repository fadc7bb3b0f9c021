"""The voice wire format and TwiML, pure: table-driven, no network."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest

from connectors.shared.twilio_webhooks import BadWebhook
from connectors.voice import parse, twiml
from connectors.voice.settings import VoiceSettings
from tests.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER
from tests.voice_helpers import call_fields

SID = "CA" + "1" * 32


def grouped(fields: dict[str, str]) -> dict[str, list[str]]:
    return {key: [value] for key, value in fields.items()}


def settings(**extra: Any) -> VoiceSettings:
    return VoiceSettings.model_validate(
        {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "from": FROM_NUMBER, **extra}
    )


URLS = twiml.Urls(
    wait="https://h/channels/v/wait?l=en-US",
    choice="https://h/channels/v/choice",
    queue_result="https://h/channels/v/queue-result",
    recorded="https://h/channels/v/recorded",
    recording="https://h/channels/v/recording",
    transcription="https://h/channels/v/transcription",
)


def test_an_incoming_call_is_a_voice_envelope_keyed_by_its_call_sid() -> None:
    call = parse.incoming_call(
        grouped(call_fields(SID)),
        inbox="v",
        account_sid=ACCOUNT_SID,
        received_at=1.0,
        language="de-DE",
    )
    envelope = call.envelope
    assert (envelope.channel, envelope.sender.kind, envelope.sender.address) == (
        "voice",
        "phone",
        "+4915112345678",
    )
    assert envelope.idempotency_key == f"twilio-call:{SID}"
    assert envelope.thread.session == f"call:{SID}"
    assert parse.call_sid_of(envelope.thread.session) == SID
    assert envelope.metadata["FromCountry"] == "DE"
    assert "AccountSid" not in envelope.metadata


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"CallSid": ""}, "CallSid is missing"),
        ({"CallSid": "CA../../etc"}, "CallSid is missing or malformed"),
        ({"From": ""}, "From is missing"),
        ({"From": "+49 151 <b>"}, "From is missing or malformed"),
        ({"AccountSid": "AC" + "9" * 32}, "AccountSid is not"),
        ({"Direction": "outbound-dial"}, "not an inbound call"),
    ],
)
def test_malformed_calls_are_refused_with_a_reason(change: dict[str, str], reason: str) -> None:
    with pytest.raises(BadWebhook, match=reason):
        parse.incoming_call(
            grouped({**call_fields(SID), **change}),
            inbox="v",
            account_sid=ACCOUNT_SID,
            received_at=1.0,
            language="en-US",
        )


@pytest.mark.parametrize(
    ("caller", "kind"),
    [("anonymous", "sip"), ("sip:alice@example.com", "sip"), ("+12025550123", "phone")],
)
def test_withheld_and_sip_callers_are_kept(caller: str, kind: str) -> None:
    call = parse.incoming_call(
        grouped(call_fields(SID, caller=caller)),
        inbox="v",
        account_sid=ACCOUNT_SID,
        received_at=1.0,
        language="en-US",
    )
    assert (call.envelope.sender.kind, call.envelope.sender.address) == (kind, caller)


def test_huge_fields_are_cut_in_metadata() -> None:
    fields = {**call_fields(SID), "CallerName": "x" * 5000, **{f"X{i}": "y" for i in range(500)}}
    call = parse.incoming_call(
        grouped(fields), inbox="v", account_sid=ACCOUNT_SID, received_at=1.0, language="en-US"
    )
    assert len(call.envelope.metadata) <= 41
    assert len(call.envelope.sender.display_name or "") == 200


@pytest.mark.parametrize(
    ("status", "agent", "state", "duration"),
    [
        ("ringing", None, "ringing", None),
        ("in-progress", None, None, None),  # our own TwiML answered: not an agent
        ("in-progress", "alice", "answered", None),
        ("completed", None, "ended", 42),
        ("no-answer", "bob", "failed", None),
        ("initiated", "bob", None, None),
    ],
)
def test_status_callbacks_become_timeline_events(
    status: str, agent: str | None, state: str | None, duration: int | None
) -> None:
    fields = grouped({**call_fields(SID), "CallStatus": status, "CallDuration": "42"})
    event = parse.status_event(fields, 5.0, agent=agent)
    assert (event.state if event else None) == state
    if event is not None:
        assert (event.agent, event.duration) == (agent, duration)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"CallStatus": "exploded"}, "unknown CallStatus"),
        ({"CallStatus": "completed", "CallDuration": "long"}, "CallDuration is not a number"),
    ],
)
def test_bad_status_callbacks(fields: dict[str, str], reason: str) -> None:
    with pytest.raises(BadWebhook, match=reason):
        parse.status_event(grouped({**call_fields(SID), **fields}), 1.0)


def test_recordings_and_their_media_url() -> None:
    fields = {
        "CallSid": SID,
        "RecordingSid": "RE" + "2" * 32,
        "RecordingStatus": "completed",
        "RecordingUrl": "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE2",
        "RecordingDuration": "9",
    }
    found = parse.recording(grouped(fields))
    assert found is not None and found.duration == 9
    assert parse.recording_media_url(found.url).endswith("/RE2.wav")
    assert parse.recording(grouped({**fields, "RecordingStatus": "absent"})) is None
    with pytest.raises(BadWebhook, match="RecordingUrl"):
        parse.recording(grouped({**fields, "RecordingUrl": "h" * 3000}))


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"QueuePosition": "3", "QueueTime": "12"}, (3, 12.0)),
        ({}, (1, 0.0)),
    ],
)
def test_waiting(fields: dict[str, str], expected: tuple[int, float]) -> None:
    assert parse.waiting(grouped({"CallSid": SID, **fields})) == expected


def test_waiting_refuses_nonsense() -> None:
    with pytest.raises(BadWebhook):
        parse.waiting(grouped({"CallSid": SID, "QueuePosition": "-1"}))


def _xml(document: str) -> ET.Element:
    root = ET.fromstring(document)
    assert root.tag == "Response"
    return root


def test_answer_open_enqueues_with_greeting_in_the_callers_language() -> None:
    chosen = settings(greeting={"en-US": "Hello", "de-DE": "Hallo & willkommen <3"})
    root = _xml(twiml.answer(chosen, inbox="v", language="de-DE", urls=URLS, open_now=True))
    assert [child.tag for child in root] == ["Say", "Enqueue"]
    assert root[0].text == "Hallo & willkommen <3"  # escaped by the SDK, read back whole
    assert root[1].get("waitUrl") == URLS.wait and root[1].text == "channelhub-v"


@pytest.mark.parametrize(
    ("after", "tags"),
    [
        ("voicemail", ["Say", "Say", "Say", "Record", "Hangup"]),
        ("callback", ["Say", "Say", "Say", "Hangup"]),
    ],
)
def test_answer_closed_goes_to_what_follows_after_hours(after: str, tags: list[str]) -> None:
    chosen = settings(after_hours=after, voicemail_max_length=30)
    root = _xml(twiml.answer(chosen, inbox="v", language="en-US", urls=URLS, open_now=False))
    assert [child.tag for child in root] == tags
    record = root.find("Record")
    if record is not None:
        assert record.get("maxLength") == "30" and record.get("transcribe") is None


def test_recording_announcement_comes_first() -> None:
    chosen = settings(record_calls=True)
    root = _xml(twiml.answer(chosen, inbox="v", language="en-US", urls=URLS, open_now=True))
    assert root[0].text == "This call may be recorded."


def test_hold_leaves_after_max_wait_and_else_offers_keys() -> None:
    chosen = settings(max_wait=60)
    assert _xml(twiml.hold(chosen, language="en-US", position=2, waited=61, urls=URLS))[0].tag == (
        "Leave"
    )
    gather = _xml(twiml.hold(chosen, language="en-US", position=2, waited=5, urls=URLS))[0]
    assert gather.tag == "Gather" and gather.get("numDigits") == "1"
    assert "number 2 in line" in (gather.findtext("Say") or "")


def test_conference_legs() -> None:
    caller = _xml(
        twiml.conference(
            "conv1",
            caller=True,
            status_callback="https://h/c",
            recording_callback="https://h/r",
            hold_music_url=None,
        )
    )
    conference = caller.find("Dial/Conference")
    assert conference is not None and conference.text == "conv1"
    assert conference.get("endConferenceOnExit") == "true"
    assert conference.get("record") == "record-from-start"
    agent = _xml(
        twiml.conference(
            "conv1",
            caller=False,
            status_callback="https://h/c",
            recording_callback=None,
            hold_music_url=None,
        )
    ).find("Dial/Conference")
    assert agent is not None and agent.get("startConferenceOnEnter") == "true"
    assert agent.get("endConferenceOnExit") == "false"


@pytest.mark.parametrize(
    ("digits", "choice"), [("1", "voicemail"), ("2", "callback"), ("9", None), ("", None)]
)
def test_keys_while_waiting(digits: str, choice: str | None) -> None:
    assert parse.choice(grouped({"CallSid": SID, "Digits": digits})) == choice


def test_default_language_needs_a_greeting() -> None:
    with pytest.raises(ValueError, match="greeting has no text"):
        settings(language="fr-FR", greeting={"en-US": "Hello"})
