"""The fax connector's pure modules, table-driven: no gateway, no network, no clock."""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from connectors.base import SendError
from connectors.fax import parse, parse_email, parse_sinch, parse_telnyx
from connectors.fax.worker import Examined, PageResult
from hub.envelope import Attachment, DeliveryStatus

MAX_DOC = 1000
BOUNDARY = "xYzZY"


def _form(*parts: tuple[str, bytes]) -> bytes:
    chunks = []
    for name, data in parts:
        chunks.append(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + data
            + b"\r\n"
        )
    return b"".join(chunks) + f"--{BOUNDARY}--\r\n".encode()


MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


@pytest.mark.parametrize(
    ("kind", "header", "body", "error"),
    [
        ("application/json", "application/json", b"{", "not JSON"),
        ("application/json", "application/json", b"[" * 50_000 + b"]" * 50_000, "nested"),
        ("application/json", "application/json", b"[1]", "must be an object"),
        ("application/json", "application/json", b'{"file": "not base64!"}', "not base64"),
        (MULTIPART.split(";")[0], "multipart/form-data", _form(("event", b"x")), "boundary"),
        (MULTIPART.split(";")[0], MULTIPART, b"no delimiter at all", "bad multipart"),
        (MULTIPART.split(";")[0], MULTIPART, _form(("event", b"\xff\xfe")), "not UTF-8"),
    ],
)
def test_sinch_webhook_bodies_refused(kind: str, header: str, body: bytes, error: str) -> None:
    with pytest.raises(parse_sinch.BadWebhook, match=error):
        parse_sinch.webhook_fields(kind, header, body, MAX_DOC)


def test_sinch_documents_over_the_limit_are_too_large() -> None:
    big = b"%PDF" + b"x" * MAX_DOC
    encoded = json.dumps({"file": base64.b64encode(big).decode()}).encode()
    with pytest.raises(parse_sinch.TooLarge) as json_case:
        parse_sinch.webhook_fields("application/json", "application/json", encoded, MAX_DOC)
    assert (json_case.value.limit, json_case.value.size, json_case.value.message) == (
        MAX_DOC,
        len(big),
        None,
    )
    with pytest.raises(parse_sinch.TooLarge) as form_case:
        parse_sinch.webhook_fields("multipart/form-data", MULTIPART, _form(("file", big)), MAX_DOC)
    assert form_case.value.limit == MAX_DOC and form_case.value.message


def test_sinch_webhook_fields_and_event() -> None:
    fax = {"id": "fx1", "from": "+4930123456", "to": "+4930901820", "numberOfPages": 2}
    body = _form(
        ("event", b"INCOMING_FAX"), ("fax", json.dumps(fax).encode()), ("file", b"%PDF-1.4")
    )
    fields, file = parse_sinch.webhook_fields("multipart/form-data", MULTIPART, body, MAX_DOC)
    event, parsed = parse_sinch.parse_event(fields, file)
    received = parse_sinch.incoming(parsed, file, "2026-11-30T09:00:00Z")
    assert (event, received.fax_id, received.pages_declared, received.data) == (
        "INCOMING_FAX",
        "fx1",
        2,
        b"%PDF-1.4",
    )
    with pytest.raises(parse_sinch.BadWebhook, match="unknown event"):
        parse_sinch.parse_event({"event": "FAX_DELETED", "fax": fax}, None)
    with pytest.raises(parse_sinch.BadWebhook, match="with an id"):
        parse_sinch.parse_event({"event": "INCOMING_FAX", "fax": "[]"}, None)


@pytest.mark.parametrize(
    ("remote", "forwarded", "allowed", "proxies", "expected"),
    [
        ("203.0.113.5", "", (), (), True),  # no allow-list: anyone (the password still holds)
        ("203.0.113.5", "", ("203.0.113.0/24",), (), True),
        ("198.51.100.7", "", ("203.0.113.0/24",), (), False),
        ("198.51.100.7", "203.0.113.5", ("203.0.113.0/24",), (), False),  # untrusted XFF
        ("10.0.0.2", "203.0.113.5", ("203.0.113.0/24",), ("10.0.0.0/8",), True),
        ("10.0.0.2", "203.0.113.5, 10.0.0.9", ("203.0.113.0/24",), ("10.0.0.0/8",), True),
        ("10.0.0.2", "not-an-ip", ("203.0.113.0/24",), ("10.0.0.0/8",), False),
        (None, "", ("203.0.113.0/24",), (), False),
    ],
)
def test_sinch_sources(
    remote: str | None,
    forwarded: str,
    allowed: tuple[str, ...],
    proxies: tuple[str, ...],
    expected: bool,
) -> None:
    assert parse_sinch.source_allowed(remote, forwarded, allowed, proxies) is expected


def test_sinch_callback_url_and_earlier_fax() -> None:
    callback = parse_sinch.callback_url("https://hub.example/channels/fax", "u:x", "p@ss", "k 1")
    assert callback == "https://u%3Ax:p%40ss@hub.example/channels/fax/webhook?ref=k%201"
    masked = "https://***:***@hub.example/channels/fax/webhook?ref=k%201"
    listing: dict[str, Any] = {
        "faxes": [
            {"id": "old", "callbackUrl": masked, "createTime": "2020-01-01T00:00:00Z"},
            {"id": "other", "callbackUrl": masked.replace("k%201", "k%202")},
            {"id": "mine", "callbackUrl": masked, "createTime": "2026-11-30T09:00:00Z"},
        ]
    }
    earlier = parse_sinch.earlier_fax(listing, callback, 1_795_000_000.0)
    assert earlier is not None and earlier.provider_id == "mine"
    assert parse_sinch.credentials_match("Basic abc", "Basic abc")
    assert not parse_sinch.credentials_match("Basic abd", "Basic abc")


@pytest.mark.parametrize(
    ("status", "answer", "code", "retryable"),
    [
        (429, {"message": "slow down"}, "429", True),
        (503, {}, "503", True),
        (
            400,
            {"error": {"code": "INVALID_NUMBER", "message": "bad number"}},
            "INVALID_NUMBER",
            False,
        ),
        (200, {}, "bad_answer", True),
    ],
)
def test_sinch_send_answers(
    status: int, answer: dict[str, Any], code: str, retryable: bool
) -> None:
    with pytest.raises(SendError) as caught:
        parse_sinch.sent(status, answer)
    assert (caught.value.code, caught.value.retryable) == (code, retryable)
    assert parse_sinch.sent(200, {"id": "fx9"}).provider_id == "fx9"


def test_telnyx_signatures_and_replays() -> None:
    private = Ed25519PrivateKey.generate()
    raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    key = parse_telnyx.public_key(base64.b64encode(raw).decode())
    body, now = b'{"data": {}}', 1_800_000_000.0
    stamp = str(int(now))
    signature = base64.b64encode(private.sign(stamp.encode() + b"|" + body)).decode()
    parse_telnyx.verify(key, signature, stamp, body, now, 300)
    cases = [
        (None, stamp, body, now, "required"),
        (signature, "12ab", body, now, "Unix time"),
        (signature, stamp, body, now + 301, "too old"),
        (signature, stamp, body + b" ", now, "does not verify"),
        ("not base64!", stamp, body, now, "does not verify"),
    ]
    for sig, ts, data, at, error in cases:
        with pytest.raises(parse_telnyx.BadSignature, match=error):
            parse_telnyx.verify(key, sig, ts, data, at, 300)
    with pytest.raises(ValueError, match="public_key"):
        parse_telnyx.public_key("not a key")
    replays = parse_telnyx.Replays(tolerance=300, remember=2)
    replays.check("a", now)
    with pytest.raises(parse_telnyx.BadSignature, match="replay"):
        replays.check("a", now + 1)
    replays.forget("a")
    replays.check("a", now + 2)  # a request not handled may come again
    replays.check("b", now + 400)  # "a" has left the window
    replays.check("a", now + 401)


@pytest.mark.parametrize(
    "body",
    [b"{", b"[]", b'{"data": []}', b'{"data": {"event_type": 1, "payload": {}}}'],
)
def test_telnyx_malformed_events(body: bytes) -> None:
    with pytest.raises(ValueError):
        parse_telnyx.event_of(body)


def test_telnyx_events_and_answers() -> None:
    assert parse_telnyx.incoming({"fax_id": "f1", "page_count": -1}, "e1").pages_declared is None
    with pytest.raises(ValueError, match="fax_id"):
        parse_telnyx.incoming({}, "e1")
    failed = parse_telnyx.status_report("fax.failed", {"fax_id": "f1", "failure_reason": "busy"})
    assert failed is not None and failed[1].status is DeliveryStatus.FAILED
    assert parse_telnyx.status_report("fax.media.processed", {"fax_id": "f1"}) is None
    assert parse_telnyx.media_url_of({"data": {"media_url": "https://x/y"}}) == "https://x/y"
    assert parse_telnyx.media_url_of({"data": "nope"}) is None
    state = parse_telnyx.client_state("reply-1")
    listing = {"data": [{"id": "f0", "client_state": "other"}, {"id": "f1", "client_state": state}]}
    earlier = parse_telnyx.earlier_fax(listing, state, 1_800_000_000.0)
    assert earlier is not None and earlier.provider_id == "f1"
    with pytest.raises(SendError) as caught:
        parse_telnyx.sent(422, {"errors": [{"code": "10015", "detail": "bad to"}]})
    assert (caught.value.code, caught.value.retryable) == ("10015", False)


def test_reply_mail_for_email_to_fax() -> None:
    fax = parse.OutgoingFax(
        key="reply-1",
        to_number="+4930123456",
        from_number="+4930901820",
        pdf=b"%PDF-1.4",
        pages=1,
        ref="sha256:x",
        subject="Your order\r\nBcc: evil@example.com",
        attempt=1,
        created_at=1_800_000_000.0,
    )
    message, message_id = parse_email.reply_mail(fax, "fax@example.com", "fax.example.net")
    assert message["To"] == "4930123456@fax.example.net"
    assert "\n" not in str(message["Subject"]) and message["Bcc"] is None
    assert message_id == f"fax.{parse.reply_ref('reply-1')}@example.com"
    with pytest.raises(SendError, match="not a fax number"):
        parse_email.reply_mail(
            dataclasses.replace(fax, to_number="+49 30 1"), "fax@example.com", "fax.example.net"
        )


def test_fax_envelope() -> None:
    line = parse.Line(inbox="fax", number="+4930901820", gateway="sinch", ocr_enabled=True)
    document = Attachment(
        name="fax.pdf", content_type="application/pdf", size=8, sha256="0" * 64, blob_ref="r"
    )
    kept = parse.Pending(
        fax_id="fx1",
        from_number="+49 (30) 123-456",
        to_number="+4930901820",
        document=document,
        pages_declared=3,
        partial=True,
        received_at=1_800_000_000.0,
    )
    examined = Examined(
        kind="pdf",
        content_type="application/pdf",
        page_count=3,
        pages=(
            PageResult(1, "Order 4711", "text layer", b"png"),
            PageResult(2, "", "ocr", b"png", "timeout"),
        ),
    )
    envelope = parse.envelope(line, "fax:sinch:fx1", kept, examined, (document,))
    assert envelope.sender.address == "+4930123456"
    assert envelope.subject == "Fax from +4930123456 (3 pages)"
    assert envelope.thread.session == "+4930123456|+4930901820"
    assert envelope.metadata["ocr"] == "partly failed"
    assert envelope.metadata["problems"] == [
        "the gateway reports the fax as incomplete (the call broke off)",
        "text recognition failed on page(s) 2",
        "only the first 2 of 3 pages were read",
    ]
    unread = msgspec.structs.replace(kept, from_number="", partial=False)
    withheld = parse.envelope(
        line, "k", unread, None, (document,), ("the document is gone from the blob store",)
    )
    assert withheld.sender.address == "anonymous" and not withheld.sender_verified
    assert withheld.metadata["ocr"] == "no document"
    assert withheld.metadata["problems"][0] == "the document is gone from the blob store"
