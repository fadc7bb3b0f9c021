"""Sans-I/O protocol cores: the agent frames and the web chat frames and tokens."""

from __future__ import annotations

import json

import msgspec
import pytest

from connectors.webchat import parse
from hub.console.protocol import (
    Accept,
    Auth,
    ProtocolError,
    Reply,
    SetPresence,
    parse_command,
)
from hub.envelope import (
    Direction,
    Envelope,
    Identity,
    ThreadHints,
    decode_envelope,
    encode_envelope,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"type": "auth", "token": "t"}', Auth(token="t")),
        ('{"type": "presence", "status": "away"}', SetPresence(status="away")),
        ('{"type": "accept", "conversation_id": "c1"}', Accept(conversation_id="c1")),
        (
            '{"type": "reply", "conversation_id": "c1", "client_id": "r1", "text": "hi"}',
            Reply(conversation_id="c1", client_id="r1", text="hi"),
        ),
    ],
)
def test_agent_frames_parse(raw: str, expected: object) -> None:
    assert parse_command(raw) == expected


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("nope", "bad_frame"),
        ("[1, 2]", "bad_frame"),
        ('{"text": "no type"}', "bad_frame"),
        ('{"type": "explode"}', "unknown_type"),
        ('{"type": "accept"}', "bad_frame"),
        ('{"type": "accept", "conversation_id": 7}', "bad_frame"),
        ('{"type": "accept", "conversation_id": "c", "extra": 1}', "bad_frame"),
        ('{"type": "presence", "status": "offline"}', "bad_frame"),
        ('{"type": "transfer", "conversation_id": "c"}', "bad_frame"),
        ('{"type": "transfer", "conversation_id": "c", "queue": "q", "agent": "a"}', "bad_frame"),
        ('{"type": "reply", "conversation_id": "c", "client_id": "", "text": "x"}', "bad_frame"),
        ('{"type": "reply", "conversation_id": "c", "client_id": "r", "text": "  "}', "bad_frame"),
        (
            json.dumps(
                {"type": "reply", "conversation_id": "c", "client_id": "r", "text": "x" * 20_001}
            ),
            "too_long",
        ),
        (json.dumps({"type": "ping", "ref": "x" * 70_000}), "frame_too_large"),
    ],
)
def test_agent_frames_rejected_with_codes(raw: str, code: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_command(raw)
    assert caught.value.code == code


SECRET = b"0123456789abcdef0123456789abcdef"


def test_visitor_tokens_verify_and_resist_tampering() -> None:
    token, visitor = parse.issue_token(SECRET, bytes(range(16)))
    assert parse.verify_token(SECRET, token) == visitor
    assert parse.verify_token(b"another-instance-secret-xxxxxxxx", token) is None
    prefix, vid, mac = token.split(".")
    assert parse.verify_token(SECRET, f"{prefix}.{vid}x.{mac}") is None
    assert parse.verify_token(SECRET, f"{prefix}.{vid}.{mac[:-1]}A") is None
    assert parse.verify_token(SECRET, f"v2.{vid}.{mac}") is None
    assert parse.verify_token(SECRET, "") is None
    assert parse.verify_token(SECRET, "a" * 1000) is None
    with pytest.raises(ValueError):
        parse.issue_token(SECRET, b"short")


@pytest.mark.parametrize("bad", ["v1.abc.ééé", "v1.ä.AAAAAAAAAAAAAAAAAAAAAAAA", "ü"])
def test_non_ascii_visitor_tokens_are_unknown_not_a_crash(bad: str) -> None:
    assert parse.verify_token(SECRET, bad) is None


def test_non_ascii_customer_signature_is_invalid_not_a_crash() -> None:
    key, now = b"shared-with-the-website", 1_800_000_000.0
    expires = int(now) + 60
    good = parse.customer_signature(key, "K7", expires)
    hello = parse.Hello(customer="K7", expires=expires, signature=good)
    assert parse.vouched_customer(key, hello, now) == "K7"
    forged = parse.Hello(customer="K7", expires=expires, signature=good[:-1] + "é")
    assert parse.vouched_customer(key, forged, now) is None


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{", "bad_frame"),
        ('{"type": "message", "client_id": "a"}', "bad_frame"),
        ('{"type": "message", "client_id": "", "text": "x"}', "bad_frame"),
        ('{"type": "message", "client_id": "a", "text": " "}', "empty"),
        ('{"type": "message", "client_id": "a", "text": "toolong"}', "too_long"),
        ('{"type": "hello", "name": "' + "n" * 101 + '"}', "bad_frame"),
        ('{"type": "hello", "token": "t", "admin": true}', "bad_frame"),
    ],
)
def test_chat_frames_rejected(raw: str, code: str) -> None:
    with pytest.raises(parse.ChatProtocolError) as caught:
        parse.parse_frame(raw, max_chars=5)
    assert caught.value.code == code


def test_chat_envelope_is_idempotent_per_client_id() -> None:
    say = parse.Say(client_id="abc", text="<b>hi</b>")
    one = parse.to_envelope("web", "visitor1", say, now=100.0, name="Ann")
    two = parse.to_envelope("web", "visitor1", say, now=200.0, name="Ann")
    assert one.idempotency_key == two.idempotency_key == "webchat:web:visitor1:abc"
    assert one.sender == Identity(kind="webchat", address="visitor1", display_name="Ann")
    assert one.thread.session == "visitor1"
    assert one.html is None and one.text == "<b>hi</b>"  # text is never rendered as HTML
    other = parse.to_envelope("web", "visitor2", say, now=100.0, name=None)
    assert other.idempotency_key != one.idempotency_key


def test_envelope_round_trip_and_validation() -> None:
    envelope = Envelope(
        channel="email",
        inbox="support",
        direction=Direction.INBOUND,
        idempotency_key="<id@example.com>",
        sender=Identity(kind="email", address="ann@example.com", display_name="Ann"),
        received_at=1.5,
        thread=ThreadHints(in_reply_to="<a@x>", references=("<a@x>",)),
        subject="Order",
        text="Hello",
        metadata={"x": [1, 2]},
    )
    assert decode_envelope(encode_envelope(envelope)) == envelope
    with pytest.raises(AttributeError):
        envelope.text = "changed"  # type: ignore[misc]
    with pytest.raises(msgspec.ValidationError):
        decode_envelope(b'{"channel": "sms"}')
    with pytest.raises(msgspec.ValidationError):
        decode_envelope(encode_envelope(envelope).replace(b'"inbound"', b'"sideways"'))


def test_chat_hello_claims_are_unproven_identities() -> None:
    hello = parse.parse_frame(
        '{"type": "hello", "email": " ann@example.com ", "phone": ""}', max_chars=10
    )
    assert isinstance(hello, parse.Hello)
    assert parse.claims(hello) == (Identity(kind="email", address="ann@example.com"),)
    with pytest.raises(parse.ChatProtocolError):
        parse.parse_frame('{"type": "hello", "email": "' + "a" * 300 + '"}', max_chars=10)
