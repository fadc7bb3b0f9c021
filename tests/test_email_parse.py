"""The pure email core: parsing recorded real mail, hostile mail, and composing replies."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import difflib
import email
import email.message
import re
import tracemalloc
from email import policy
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.email.compose import Sender, build_reply, reply_subject
from connectors.shared.mail import charsets, message_ids
from connectors.shared.mail.markup import html_to_text, html_too_complex
from connectors.shared.mail.reader import BadMail, Options, content_key, parse_mail, raw_key
from connectors.shared.mail.smtp_in import read_data, unstuff
from hub.envelope import Identity, Outbound, ThreadHints

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "email"
SECRET = b"inbox-secret"
OPTIONS = Options(inbox="support", secret=SECRET, id_domain="example.com")

# where we knowingly differ from Zammad's expectation, and why
ZAMMAD_DIFFERS = {
    "mail003": "the .yml and .box were saved from different commits (the greeting differs)",
    "mail017": "we cap the subject at 500 characters; the body differs between saved commits",
    "mail026": "Zammad shows no body; we show the text of the HTML part",
    "mail046": "Zammad shows the GBK display name as mojibake; we decode it (武兰成)",
    "mail071": "'power quadrant system@example.com' is no address; we keep it as from_header",
    "mail072": "the plain and HTML alternatives differ; Zammad reads the HTML (as cp1250)",
    "mail076": "Zammad keeps a stray '>' in the address and name; we do not",
    "mail085": "Zammad strips the quoted reply; we keep the whole text",
    "mail087": "'Test test@example.com' is no address; we keep it as from_header",
    "mail089": "the subject in the saved .box has a colon its .yml lacks",
    "mail117": "encoded words inside an address are not decoded (RFC 2047 5): no spoofing",
    "mail118": "encoded words inside an address are not decoded (RFC 2047 5): no spoofing",
}


class _RubyLoader(yaml.SafeLoader):
    pass


_RubyLoader.add_multi_constructor(
    "!",
    lambda loader, suffix, node: (
        loader.construct_mapping(node, deep=True)
        if isinstance(node, yaml.MappingNode)
        else loader.construct_scalar(node)
    ),  # type: ignore[arg-type]
)


def _corpus(folder: str, pattern: str) -> list[Path]:
    """The external corpus files where ../shared lies beside the checkout (never copied into the
    repository: its licences forbid it). Where it is absent these tests are not collected at all
    rather than skipped: tests/test_email_fixtures.py covers the parser with our own fixtures
    everywhere, CI included."""
    return sorted((CORPUS / folder).glob(pattern)) if (CORPUS / folder).is_dir() else []


def _words(text: str) -> str:
    return " ".join(re.sub(r"[^\w]+", " ", text).split()).casefold()


ZAMMAD = _corpus("zammad", "*.box")
CHATWOOT = _corpus("chatwoot", "*.eml")


@pytest.mark.parametrize("box", ZAMMAD, ids=lambda p: p.stem[:20])
def test_zammad_corpus(box: Path) -> None:
    parsed = parse_mail(box.read_bytes(), OPTIONS, 0.0)
    expected_path = box.with_suffix(".yml")
    if not expected_path.exists():
        return
    expected: dict[str, Any] = yaml.load(expected_path.read_text("utf-8"), Loader=_RubyLoader)
    envelope = parsed.envelope
    name = box.stem.split("-")[0]
    if name in ZAMMAD_DIFFERS:
        return
    if "from_email" in expected:
        assert envelope.sender.address.lower() == str(expected["from_email"]).lower().rstrip(".")
    if expected.get("from_display_name"):
        assert envelope.sender.display_name == expected["from_display_name"]
    if "subject" in expected:
        assert (envelope.subject or "") == str(expected["subject"] or "").strip()
    if "body" in expected:
        body = str(expected["body"] or "")
        if body.strip() == "no visible content":
            body = ""
        if expected.get("content_type") == "text/html" or "<" in body:
            body = html_to_text(body)
        want, got = _words(body), _words(envelope.text)
        if want or got:
            ratio = difflib.SequenceMatcher(None, want[:3000], got[:3000]).ratio()
            assert ratio > 0.9 or (want and want in got), (want[:200], got[:200])


@pytest.mark.parametrize("eml", CHATWOOT, ids=lambda p: p.stem[:20])
def test_chatwoot_corpus_parses(eml: Path) -> None:
    parsed = parse_mail(eml.read_bytes(), OPTIONS, 0.0)
    assert parsed.envelope.idempotency_key.startswith("email:")
    if eml.stem.startswith("bounced"):
        assert parsed.envelope.auto_submitted


if not ZAMMAD:  # absent corpus: nothing collected (see _corpus)
    del test_zammad_corpus
if not CHATWOOT:
    del test_chatwoot_corpus_parses


def raw(headers: str, body: str = "Hello") -> bytes:
    return (headers.strip().replace("\n", "\r\n") + "\r\n\r\n" + body).encode()


def test_basic_fields_and_identity() -> None:
    parsed = parse_mail(
        raw(
            """
From: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <Juergen@Example.ORG>
To: Support <support@example.com>, other@example.com
Cc: boss@example.org
Subject: =?iso-8859-1?q?Bestellung_f=FCr_M=FCnchen?=
Message-ID: <abc@example.org>
Reply-To: orders@example.org
"""
        ),
        OPTIONS,
        5.0,
    )
    envelope = parsed.envelope
    assert envelope.sender == Identity(
        kind="email", address="Juergen@example.org", display_name="Jürgen Müller"
    )
    assert envelope.subject == "Bestellung für München"
    assert [r.address for r in envelope.recipients] == [
        "support@example.com",
        "other@example.com",
        "boss@example.org",
    ]
    assert envelope.provider_id == "abc@example.org"
    assert envelope.metadata["reply_to"] == "orders@example.org"
    assert not envelope.auto_submitted and envelope.sender_verified


@pytest.mark.parametrize(
    "header",
    [
        "Auto-Submitted: auto-replied",
        "Precedence: bulk",
        "Precedence: list",
        "List-Id: <news.example.org>",
        "List-Unsubscribe: <mailto:x@example.org>",
        "X-Autoreply: yes",
        "X-Loop: support@example.com",
        "Return-Path: <>",
    ],
)
def test_automated_mail_is_flagged(header: str) -> None:
    parsed = parse_mail(raw(f"From: a@example.org\n{header}"), OPTIONS, 0)
    assert parsed.envelope.auto_submitted
    assert parsed.envelope.metadata["auto_reason"]


def test_mailer_daemon_and_auto_submitted_no() -> None:
    assert parse_mail(raw("From: MAILER-DAEMON@x.org"), OPTIONS, 0).envelope.auto_submitted
    human = parse_mail(raw("From: a@x.org\nAuto-Submitted: no"), OPTIONS, 0)
    assert not human.envelope.auto_submitted


def test_authentication_results_only_from_trusted_servers() -> None:
    failing = (
        "From: ceo@example.com\n"
        "Authentication-Results: mx.ours.test; spf=fail smtp.mailfrom=example.com;"
        " dkim=none; dmarc=fail header.from=example.com"
    )
    trusted = dataclasses.replace(OPTIONS, **{"trusted_authserv_ids": ("mx.ours.test",)})
    flagged = parse_mail(raw(failing), trusted, 0).envelope
    assert not flagged.sender_verified
    assert flagged.metadata["authentication"]["dmarc"] == "fail"
    passing = failing.replace("dmarc=fail", "dmarc=pass")
    assert parse_mail(raw(passing), trusted, 0).envelope.sender_verified
    assert parse_mail(raw(failing), OPTIONS, 0).envelope.sender_verified  # nothing trusted


def test_no_result_from_a_trusted_server_is_unverified() -> None:
    """Issue 14 item 10: with trusted_authserv_ids set, a mail without their
    Authentication-Results was believed (fail open); it did not pass their checks."""
    trusted = dataclasses.replace(OPTIONS, **{"trusted_authserv_ids": ("mx.ours.test",)})
    bare = parse_mail(raw("From: ceo@example.com"), trusted, 0).envelope
    assert not bare.sender_verified
    assert bare.metadata["authentication"]["problem"].startswith("no Authentication-Results")
    # a header written by anyone else is ignored: as if there were none
    forged = raw(
        "From: ceo@example.com\nAuthentication-Results: mx.attacker.test; spf=pass"
        " smtp.mailfrom=example.com; dkim=pass; dmarc=pass header.from=example.com"
    )
    assert not parse_mail(forged, trusted, 0).envelope.sender_verified
    checked_nothing = raw("From: ceo@example.com\nAuthentication-Results: mx.ours.test; none")
    assert not parse_mail(checked_nothing, trusted, 0).envelope.sender_verified
    assert parse_mail(raw("From: ceo@example.com"), OPTIONS, 0).envelope.sender_verified


def test_our_message_ids_name_their_conversation_only_when_genuine() -> None:
    ours = message_ids.make(SECRET, "reply:alice:c1:k1", "01abc", "example.com")
    assert ours == message_ids.make(SECRET, "reply:alice:c1:k1", "01abc", "example.com")
    assert message_ids.conversation_of(SECRET, ours, "example.com") == "01abc"
    assert message_ids.conversation_of(b"other", ours, "example.com") is None
    forged = ours.replace("01abc", "01abd")
    assert message_ids.conversation_of(SECRET, forged, "example.com") is None
    parsed = parse_mail(
        raw(f"From: a@x.org\nIn-Reply-To: <{ours}>\nReferences: <x@y> <{forged}>"), OPTIONS, 0
    )
    assert parsed.envelope.thread.conversation == "01abc"
    assert forged not in parsed.envelope.thread.references
    assert parsed.envelope.metadata["forged_references"] == [forged]


def test_subject_threading_key() -> None:
    subject_options = dataclasses.replace(OPTIONS, **{"subject_threading": True})
    first = parse_mail(raw("From: a@x.org\nSubject: Invoice 7"), subject_options, 0)
    again = parse_mail(raw("From: A@x.org\nSubject: AW: Re: invoice  7"), subject_options, 0)
    other = parse_mail(raw("From: b@x.org\nSubject: Invoice 7"), subject_options, 0)
    assert first.envelope.thread.session == again.envelope.thread.session
    assert first.envelope.thread.session != other.envelope.thread.session
    assert parse_mail(raw("From: a@x.org\nSubject: x"), OPTIONS, 0).envelope.thread.session is None


def test_idempotency_key_survives_relays_but_not_content_changes() -> None:
    base = raw("From: a@x.org\nMessage-ID: <1@x.org>", "Hi\r\nthere")
    relayed = b"Received: from relay\r\n" + base.replace(b"\r\n", b"\n")
    assert content_key(base, "1@x.org", "s") == content_key(relayed, "1@x.org", "s")
    assert content_key(base, "1@x.org", "s") != content_key(base + b"!", "1@x.org", "s")
    assert content_key(base, "1@x.org", "s") != content_key(base, "1@x.org", "other-inbox")


def test_attachments_get_safe_names_and_html_is_sanitized() -> None:
    message = email.message.EmailMessage()
    message["From"] = "a@x.org"
    message["Subject"] = "<script>alert(1)</script>"
    message.set_content("see attached")
    message.add_alternative(
        '<p onclick="steal()">Hi<script>alert(1)</script><img src=x onerror=alert(2)></p>',
        subtype="html",
    )
    message.add_attachment(
        b"%PDF-1.4", maintype="application", subtype="pdf", filename="../../etc/passwd"
    )
    message.add_attachment(b"x", maintype="text", subtype="plain", filename='a<img src=x>".txt')
    parsed = parse_mail(message.as_bytes(), OPTIONS, 0)
    names = [part.name for part in parsed.parts]
    assert names[0] == "original.html"
    assert "passwd" in names and all("/" not in name and "<" not in name for name in names)
    html = parsed.envelope.html or ""
    assert "script" not in html and "onclick" not in html and "onerror" not in html
    assert parsed.envelope.subject == "<script>alert(1)</script>"  # text, escaped by the UI


def _nested(depth: int) -> bytes:
    return "".join(
        f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n' for i in range(depth)
    ).encode()


def _parts(count: int) -> bytes:
    return (
        b'From: a@x.org\r\nContent-Type: multipart/mixed; boundary="z"\r\n\r\n'
        + b"--z\r\nContent-Type: application/octet-stream\r\n\r\nx\r\n" * count
        + b"--z--\r\n"
    )


# Each hostile mail, and the limit the parser must enforce and report on it. The work is
# bounded by counts, not by a stopwatch (a time limit failed under load): how many MIME parts
# the standard library's parser built (MIME work grows with them; past the limits, the mail
# is not walked at all: one part, the headers) and the peak memory.
HOSTILE: list[tuple[str, bytes, int, dict[str, Any]]] = [
    (
        "deep",
        b"From: a@x.org\r\n" + _nested(1000) + b"Content-Type: text/plain\r\n\r\nbottom\r\n",
        1,
        {"too_complex": "more than 200 multipart boundaries", "parts": ["original.eml"]},
    ),
    (
        "deep, under the boundary limit",
        b"From: a@x.org\r\n" + _nested(40) + b"Content-Type: text/plain\r\n\r\nbottom\r\n",
        41,
        {"truncated": True, "text": ""},  # the walk stops at 30 levels: "bottom" is not reached
    ),
    (
        "huge header",
        b"From: a@x.org\r\nSubject: " + b"A" * 2_000_000 + b"\r\n\r\nx",
        1,
        {"subject": "A" * 500, "text": "x"},
    ),
    (
        "many headers",
        b"".join(b"X-H%d: v\r\n" % i for i in range(50_000)) + b"\r\nx",
        1,
        {"sender": "unknown@invalid", "text": "x"},
    ),
    (
        "bad base64",
        b"From: a@x.org\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: "
        b"base64\r\nContent-Disposition: attachment; filename=a.pdf\r\n\r\n!!!@@@###===\r\n",
        1,
        {"parts": ["a.pdf"], "mime_defects": 1},
    ),
    (
        "bad charset",
        b"From: a@x.org\r\nContent-Type: text/plain; charset=x-klingon\r\n\r\n\xff\xfe\xfa",
        1,
        {"text": "\xff\xfe\xfa".encode("latin-1").decode("cp1252")},  # the last resort
    ),
    (
        "crlf name",  # the line break ends From there: no address, no Bcc
        b'From: "Eve\r\nBcc: all@x.org" <eve@x.org>\r\n\r\nhi',
        1,
        {"sender": "unknown@invalid", "recipients": [], "from_header": '"Eve'},
    ),
    ("no headers", b"just text without any header\r\n", 1, {"sender": "unknown@invalid"}),
    (
        "many parts",
        _parts(5000),
        1,
        {"too_complex": "5,001 MIME delimiter lines, more than 2,000", "parts": ["original.eml"]},
    ),
    (
        "many parts, under the delimiter limit",
        _parts(1500),
        1501,
        {"truncated": True, "part_count": OPTIONS.max_attachments},
    ),
]


@pytest.mark.parametrize(
    ("data", "built", "expected"),
    [pytest.param(data, built, expected, id=label) for label, data, built, expected in HOSTILE],
)
def test_hostile_mime_is_bounded(
    data: bytes, built: int, expected: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    counted = [0]
    init = email.message.Message.__init__

    def counting(message: email.message.Message, *args: Any, **kwargs: Any) -> None:
        counted[0] += 1
        init(message, *args, **kwargs)

    monkeypatch.setattr(email.message.Message, "__init__", counting)
    tracemalloc.start()
    try:
        parsed = parse_mail(data, OPTIONS, 0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert counted[0] == built
    assert peak < 200 * 1024 * 1024
    envelope = parsed.envelope
    assert "\r" not in (envelope.subject or "") and "\n" not in (envelope.subject or "")
    assert len(parsed.parts) <= OPTIONS.max_attachments
    metadata = envelope.metadata
    if "too_complex" in expected:
        assert metadata["too_complex"] == expected["too_complex"]
        assert metadata["truncated"] is True
        assert envelope.text.startswith("[This mail is too complex to show")
    else:
        assert "too_complex" not in metadata
    assert metadata.get("truncated", False) is expected.get("truncated", "too_complex" in expected)
    if "parts" in expected:
        assert [part.name for part in parsed.parts] == expected["parts"]
    if "part_count" in expected:
        assert len(parsed.parts) == expected["part_count"]
    for field in ("subject", "text"):
        if field in expected:
            assert getattr(envelope, field) == expected[field]
    if "sender" in expected:
        assert envelope.sender.address == expected["sender"]
    if "recipients" in expected:
        assert list(envelope.recipients) == expected["recipients"]
    for key in ("mime_defects", "from_header"):
        if key in expected:
            assert metadata[key] == expected[key]


def test_empty_and_oversized_mail_are_refused() -> None:
    with pytest.raises(BadMail):
        parse_mail(b"  \r\n", OPTIONS, 0)
    small = dataclasses.replace(OPTIONS, **{"max_bytes": 1024})
    with pytest.raises(BadMail):
        parse_mail(b"From: a@x.org\r\n\r\n" + b"x" * 2000, small, 0)


def test_bounce_names_the_failed_mail() -> None:
    from tests.test_email import dsn

    parsed = parse_mail(dsn("ch.x@example.com", "c@example.org"), OPTIONS, 0)
    assert parsed.bounce is not None
    assert parsed.bounce.original_message_id == "ch.x@example.com"
    assert parsed.bounce.status == "5.1.1"
    assert "user unknown" in (parsed.bounce.diagnostic or "")
    assert parsed.envelope.auto_submitted
    assert "ch.x@example.com" in parsed.envelope.thread.references


def _outbound(**fields: Any) -> Outbound:
    base: dict[str, Any] = {
        "message_id": "m1",
        "conversation_id": "01conv",
        "inbox": "support",
        "idempotency_key": "reply:alice:01conv:1",
        "recipient": Identity(kind="email", address="c@example.org", display_name="Cust"),
        "text": "Thanks!\nBye",
        "subject": "Order 5",
        "thread": ThreadHints(in_reply_to="q@example.org", references=("p@example.org",)),
    }
    base.update(fields)
    return Outbound(**base)


def test_reply_headers_threading_and_no_injection() -> None:
    hostile = _outbound(
        recipient=Identity(
            kind="email", address="c@example.org", display_name="Eve\r\nBcc: all@evil.test"
        ),
        subject="Hi\r\nBcc: all@evil.test",
        thread=ThreadHints(in_reply_to="q@example.org\r\nBcc: x", references=("p@example.org",)),
    )
    message = build_reply(
        hostile, Sender("support@example.com", "Support"), secret=SECRET, id_domain="example.com"
    )
    data = message.as_bytes()
    assert b"\nBcc:" not in data and b"\r\nBcc:" not in data
    parsed = email.message_from_bytes(data, policy=policy.default)
    assert "In-Reply-To" not in parsed  # the broken id was dropped, not passed through
    good = build_reply(
        _outbound(),
        Sender("support@example.com", None, "help@example.com"),
        secret=SECRET,
        id_domain="example.com",
    )
    assert good["In-Reply-To"] == "<q@example.org>"
    assert str(good["References"]) == "<p@example.org> <q@example.org>"
    assert good["Subject"] == "Re: Order 5" and good["Reply-To"] == "help@example.com"
    again = build_reply(
        _outbound(), Sender("support@example.com"), secret=SECRET, id_domain="example.com"
    )
    assert good["Message-ID"] == again["Message-ID"]  # a resend is the same mail
    auto = build_reply(
        _outbound(idempotency_key="auto:m0"),
        Sender("support@example.com"),
        secret=SECRET,
        id_domain="example.com",
    )
    assert auto["Auto-Submitted"] == "auto-replied"
    assert reply_subject("RE: x") == "RE: x" and reply_subject(None) == "Re: (no subject)"


def test_envelope_cli_prints_what_rules_see(tmp_path: Path, capsys: Any) -> None:
    import json

    from hub.cli.main import main

    path = tmp_path / "mail.eml"
    path.write_bytes(raw("From: Ann <ann@example.org>\nSubject: Refund please", "Money back"))
    assert main(["envelope", str(path), "--inbox", "support"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["inbox"] == "support" and shown["channel"] == "email"
    assert shown["sender"]["address"] == "ann@example.org"
    assert shown["subject"] == "Refund please" and shown["text"] == "Money back"
    assert main(["envelope", str(tmp_path / "missing.eml")]) == 1
    assert "missing.eml" in capsys.readouterr().err


def _html_mail(markup: str) -> bytes:
    return (
        "From: a@example.org\r\nSubject: html\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        + markup
    ).encode()


def test_html_too_deep_to_sanitize_is_kept_aside_not_parsed() -> None:
    """Issue 14 item 8: 40,000 nested <div> lines (600 KB) cost the sanitizer ~30 s; such HTML
    is recognized before it starts: text only, the markup kept as original.html."""
    markup = "".join(f"<div>line {n:05}\r\n" for n in range(40_000))
    parsed = parse_mail(_html_mail(markup), OPTIONS, 0)
    envelope = parsed.envelope
    assert envelope.html is None
    assert "nested more than 256" in envelope.metadata["html_not_shown"]
    assert envelope.text.startswith("line 00000\nline 00001")
    assert parsed.parts[0].name == "original.html"
    assert parsed.parts[0].data.decode().startswith("<div>line 00000")


@pytest.mark.parametrize(
    ("markup", "complex_"),
    [
        ("<table><tr><td>" * 60 + "x" + "</td></tr></table>" * 60, False),  # Outlook-deep
        ("<p>para\n" * 50_000, False),  # unclosed paragraphs do not nest
        ("<li>item<br>\n" * 50_000, False),
        ("<div>" * 200 + "<span>x</span>" * 50_000 + "</div>" * 200, False),
        ("<div>" * 300 + "x" + "</div>" * 300, True),
        ("<blockquote><div>" * 200, True),
        ("<b>" * 100 + "x" * 4_000_001, True),  # too long whatever its shape
    ],
)
def test_html_complexity_bound(markup: str, complex_: bool) -> None:
    assert (html_too_complex(markup) is not None) is complex_
    text = html_to_text(markup)  # bounded either way, never the sanitizer on deep markup
    assert "<" not in text[:1000]


def test_mime_structures_no_real_mail_has_are_not_walked() -> None:
    """Issue 14 item 8: 3 million short lines or 100,000 empty parts cost the stdlib parser
    seconds and hundreds of MB; they are counted first and the mail is kept whole."""
    lines = raw("From: b@example.org\nSubject: lines", "a\r\n" * 3_000_000)
    parsed = parse_mail(lines, dataclasses.replace(OPTIONS, max_bytes=20_000_000), 0)
    assert "3,000,00" in parsed.envelope.metadata["too_complex"]
    assert parsed.envelope.sender.address == "b@example.org"
    assert parsed.envelope.text.startswith("a\na\na\n")  # a single text part is still read
    assert parsed.envelope.metadata["truncated"]

    parts = (
        b'From: c@example.org\r\nSubject: parts\r\nContent-Type: multipart/mixed; boundary="z"'
        b"\r\n\r\n" + b"--z\r\n\r\n" * 100_000 + b"--z--\r\n"
    )
    parsed = parse_mail(parts, OPTIONS, 0)
    envelope = parsed.envelope
    assert "MIME delimiter lines" in envelope.metadata["too_complex"]
    assert envelope.sender.address == "c@example.org" and envelope.subject == "parts"
    assert "too complex to show" in envelope.text
    [original] = parsed.parts
    assert original.name == "original.eml" and original.data == parts

    # an ordinary multipart mail is walked as before
    normal = email.message.EmailMessage()
    normal["From"] = "d@example.org"
    normal.set_content("hello\n" * 1000)
    normal.add_attachment(b"x" * 100, maintype="application", subtype="pdf", filename="a.pdf")
    walked = parse_mail(normal.as_bytes(), OPTIONS, 0)
    assert "too_complex" not in walked.envelope.metadata
    assert [part.name for part in walked.parts] == ["a.pdf"]


def test_an_unparsed_mail_is_keyed_by_all_of_it() -> None:
    """Issue 14 item 8: two customers' unreadable mails with the same body collapsed into one
    (the key hashed the body only) and the second was lost after SMTP said 250."""
    anna = raw("From: anna@example.org\nSubject: invoice", "Please send my invoice.")
    ben = raw("From: ben@example.net\nSubject: invoice", "Please send my invoice.")
    assert content_key(anna, None, "s") == content_key(ben, None, "s")  # what it was
    assert raw_key(anna, "s") != raw_key(ben, "s")
    assert raw_key(anna, "s") == raw_key(anna.replace(b"\r\n", b"\n"), "s")  # redelivered


def _reader(*pieces: bytes, eof: bool = True) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=1001)  # aiosmtpd's line limit
    for piece in pieces:
        reader.feed_data(piece)
    if eof:
        reader.feed_eof()
    return reader


async def test_smtp_data_is_found_and_unstuffed_however_it_is_split() -> None:
    """DATA is read in chunks (no per-line work): the end line and the stuffed dots are found
    wherever the chunks split the stream."""
    wire = b"Subject: x\r\n\r\nline\r\n..leading dot\r\n..\r\n.\r\nQUIT\r\n"
    for cut in range(1, len(wire)):
        reader = _reader(eof=False)
        reader.feed_data(wire[:cut])
        asyncio.get_running_loop().call_soon(reader.feed_data, wire[cut:])
        data = await read_data(reader, None)
        assert data is not None, cut
        assert data.content == b"Subject: x\r\n\r\nline\r\n.leading dot\r\n.\r\n", cut
        # what the client sent after the end of data is left for the next command
        assert await reader.readuntil(b"\r\n") == b"QUIT\r\n", cut


async def test_smtp_data_edges() -> None:
    empty = await read_data(_reader(b".\r\n"), None)
    assert empty is not None and empty.content == b""
    leading = await read_data(_reader(b"..x\r\n.\r\n"), None)
    assert leading is not None and leading.content == b".x\r\n"
    assert await read_data(_reader(b"no end\r\n"), None) is None  # the client went away
    big = await read_data(_reader(b"x" * 5000 + b"\r\n" + b"y\r\n" * 10_000 + b".\r\n"), 1000)
    assert big is not None and big.content is None and big.size > 1000  # 552, read to the end
    assert unstuff(b"..a\r\n..\r\nb\r\n") == b".a\r\n.\r\nb\r\n"


def test_iso2022jp_subject_with_outlook_extension_characters() -> None:
    """Issue 14 item 11: ①, № (NEC row 13, as Outlook writes ISO-2022-JP) left the subject
    undecoded while the body decoded."""
    jis = b"\x1b$B-!$NAw$j\x1b(B No.\x1b$B-b\x1b(B5"  # ①の送り No.№5
    encoded = "=?ISO-2022-JP?B?" + base64.b64encode(jis).decode() + "?="
    mail = (
        f"From: a@example.org\r\nSubject: {encoded}\r\n"
        "Content-Type: text/plain; charset=ISO-2022-JP\r\n\r\n"
    ).encode() + jis
    envelope = parse_mail(mail, OPTIONS, 0).envelope
    assert envelope.subject == "①の送り No.№5"
    assert envelope.text == "①の送り No.№5"
    # raw JIS in a header (no encoded word), as old mailers send it
    raw_subject = b"From: a@example.org\r\nSubject: " + jis + b"\r\n\r\nx"
    assert parse_mail(raw_subject, OPTIONS, 0).envelope.subject == "①の送り No.№5"


def test_hebrew_iso_8859_8_i_label() -> None:
    """Issue 14 item 11: ``iso-8859-8-i`` (logical-order Hebrew) was not recognised."""
    hebrew = "שלום, ההזמנה שלי"
    word = "=?iso-8859-8-i?B?" + base64.b64encode(hebrew.encode("iso8859_8")).decode() + "?="
    mail = (
        f"From: a@example.org\r\nSubject: {word}\r\n"
        'Content-Type: text/plain; charset="iso-8859-8-i"\r\n\r\n'
    ).encode() + hebrew.encode("iso8859_8")
    envelope = parse_mail(mail, OPTIONS, 0).envelope
    assert envelope.subject == hebrew and envelope.text == hebrew


@pytest.mark.parametrize(
    ("label", "text", "python"),
    [
        ("ISO-8859-8-I", "שלום", "iso8859_8"),
        ("logical", "שלום", "iso8859_8"),
        ("iso-8859-6-i", "مرحبا", "iso8859_6"),
        ("windows-874", "สวัสดี", "cp874"),
        ("ks_c_5601-1989", "안녕하세요", "cp949"),
        ("x-mac-cyrillic", "Привет", "mac_cyrillic"),
        ("koi8-ru", "Привіт", "koi8_u"),
        ("x-x-big5", "訂單", "big5hkscs"),
        ("windows-31j", "①注文", "cp932"),
        ("ISO-8859-1", "Grüße \u2013 €5", "cp1252"),  # browsers read Latin-1 as Windows-1252
        (' "gb2312" ', "订单𠀀", "gb18030"),
    ],
)
def test_whatwg_labels(label: str, text: str, python: str) -> None:
    assert charsets.codec(label) == python
    assert charsets.decode(text.encode(python), label) == text


def test_from_with_two_addresses_and_no_comma_is_unparseable() -> None:
    """Issue 14 item 11: ``From: a@example.com b@example.com`` was attributed to the
    Return-Path address; the documented rule is unknown@invalid with the header kept."""
    envelope = parse_mail(
        raw("From: a@example.com b@example.com\nReturn-Path: <bounces@lists.example.net>"),
        OPTIONS,
        0,
    ).envelope
    assert envelope.sender.address == "unknown@invalid"
    assert envelope.metadata["from_header"] == "a@example.com b@example.com"
    # a mail with no From at all still falls back to the envelope-ish headers (bounces)
    missing = parse_mail(raw("Return-Path: <x@example.net>"), OPTIONS, 0).envelope
    assert missing.sender.address == "x@example.net"
