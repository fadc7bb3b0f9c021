"""The email parser on our own hand-written fixtures (tests/data/email, see its README).

Each mail is parsed as the connector parses it, and the test asserts what reaches the agent:
sender, subject, text, attachments, threading, and the flags the hub acts on (automatic mail,
bounces, defects). These run everywhere, CI included; they need nothing outside the repository.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from connectors.shared.mail.reader import Options, ParsedMail, content_key, parse_mail

DATA = Path(__file__).resolve().parent / "data" / "email"
OPTIONS = Options(inbox="support", secret=b"inbox-secret", id_domain="example.com")

# the attachments the fixtures carry, by content
PDF_SHA256 = "d3f07b79f957d5599255c078f8a28b50bf04f8262964e070a123b0fd6fd94353"
LOGO_SHA256 = "e3550fd36eb119ef8f86a0b9a63be7112967697512c4b55be87a2165b48a2d04"
PHOTO_SHA256 = "9f1a73312b9ede0b7f0e20ffd13691995f382422721eff6d4f1216a239f9e9cc"


@dataclass(frozen=True)
class Seen:
    """What the agent sees of a mail: who, about what, the text, the files (name, type)."""

    sender: str
    name: str | None
    subject: str
    text: str
    files: tuple[tuple[str, str], ...] = ()
    to: tuple[str, ...] = ("support@example.com",)
    automatic: str | None = None  # why it counts as sent by a machine


SEEN = {
    "alternative.eml": Seen(
        "jana.krueger@example.org",
        "Jana Krueger",
        "Order 4711: wrong size delivered",
        "Hello,\n\nI ordered the rain jacket in size M (order 4711) but received size L.\n"
        "Can you send me a return label?\n\nThanks,\nJana",
        (("original.html", "text/html"),),
    ),
    "nested.eml": Seen(
        "k.brenner@example.net",
        "Karl Brenner",
        "Lieferschein 9823",
        "Guten Tag,\n\nanbei der Lieferschein zur Bestellung 9823. Die Palette kam beschädigt "
        "an.\n\nMit freundlichen Grüßen\nKarl Brenner\nBrenner Logistik GmbH",
        (
            ("original.html", "text/html"),
            ("part-1.png", "image/png"),
            ("Lieferschein-9823.pdf", "application/pdf"),
        ),
        to=("service@example.com",),
    ),
    "transfer_encodings.eml": Seen(
        "oezlem.sahin@example.org",
        "Özlem Şahin",
        "Kündigung Vertrag 55-1021",
        "Sehr geehrte Damen und Herren,\n\nich möchte meinen Vertrag Nr. 55-1021 zum "
        "nächstmöglichen Zeitpunkt kündigen und bitte um eine schriftliche Bestätigung an diese "
        "Adresse.\n\nFreundliche Grüße\nÖzlem Şahin",
        (("notiz.txt", "text/plain"),),
        to=("vertrag@example.com",),
    ),
    "iso_8859_1.eml": Seen(
        "j.mueller@example.de",
        "Jürgen Müller",
        "Größe der Lieferung falsch",
        "Hallo,\n\ndie gelieferten Schuhe haben Größe 44 statt 43.\n"
        "Bitte holen Sie sie in der Müllerstraße 12 ab.\n\nJürgen Müller",
        to=("kundenservice@example.com",),
    ),
    "windows_1252.eml": Seen(
        "claire.dubois@example.fr",
        "Claire Dubois",
        "Invoice 2026-118 \u2013 amount disputed",
        "Hello,\n\nyour invoice says “€ 1.240,00” but we agreed on € 1.040,00 \u2013 see the offer "
        "from 12 February.\n\nBest regards,\nClaire Dubois",
        to=("billing@example.com",),
    ),
    "shift_jis.eml": Seen(
        "taro.yamada@example.jp",
        "山田太郎",
        "配送状況の確認",
        "お問い合わせいたします。\n注文番号4711の商品がまだ届いていません。\n"
        "確認をお願いします。\n\n山田太郎",
    ),
    "broken_charsets.eml": Seen(
        "marta.nowak@example.pl",
        "Marta Nowak",
        "Zwrot towaru \u2013 zamówienie 3310",
        "Dzień dobry, chcę zwrócić zamówienie 3310.\n\n返品をお願いします。\n\nKosten: „50 €“",
    ),
    "encoded_words.eml": Seen(
        "bjorn.sorensen@example.dk",
        "Björn Sørensen",
        "Rücksendung von Artikel 123 \u2013 bitte prüfen",
        "Please check the return of item 123.\nBjorn",
        to=("muenchen@example.com", "orders@example.com", "andre@example.dk"),
    ),
    "rfc2231_filenames.eml": Seen(
        "buchhaltung@example.at",
        None,
        "Unterlagen",
        "Die Unterlagen im Anhang.",
        (
            ("Rechnung März 2026.pdf", "application/pdf"),
            ("請求書_0211.pdf", "application/pdf"),
            ("schaden foto.png", "image/png"),
        ),
        to=("billing@example.com",),
    ),
    "calendar_invite.eml": Seen(
        "lena.fischer@example.org",
        "Lena Fischer",
        "Invitation: Callback: contract renewal @ Tue 17 Mar 2026 10:00 (CET)",
        'You have been invited to "Callback: contract renewal" on Tue 17 Mar 2026, '
        "10:00-10:30 (CET).",
        (("part-1.calendar", "text/calendar"), ("invite.ics", "application/ics")),
    ),
    "bounce_dsn.eml": Seen(
        "MAILER-DAEMON@mx.example.net",
        "Mail Delivery System",
        "Undelivered Mail Returned to Sender",
        "This is the mail system at host mx.example.net.\n\nI'm sorry to have to inform you "
        "that your message could not\nbe delivered to one or more recipients.\n\n"
        "<kunde.alt@example.net>: host mx.example.net[192.0.2.25] said: 550 5.1.1\n"
        "    <kunde.alt@example.net>: Recipient address rejected: User unknown",
        automatic="Auto-Submitted: auto-replied",
    ),
    "auto_reply.eml": Seen(
        "tom.becker@example.org",
        "Tom Becker",
        "Automatic reply: Your ticket about order 6061",
        "I am out of the office until 23 February and will answer after my return.",
        automatic="Auto-Submitted: auto-replied",
    ),
    "no_date_no_message_id.eml": Seen(
        "scanner@example.org",
        None,
        "Scan from MFP-3",
        "Scanned page attached? No: this device sends text only.",
        to=("fax2mail@example.com",),
    ),
    "long_headers.eml": Seen(
        "noisy@example.org",
        "Noisy Sender",
        # folded over seven lines, unfolded to one, cut at 500 characters
        ("Complaint about delivery " + " ".join(f"word{i:03d}" for i in range(120)))[:500],
        "Short body after long headers.",
        to=tuple(f"team{i:03d}@example.com" for i in range(120)),
    ),
    "malformed_boundary.eml": Seen(
        "petra.lang@example.de",
        "Petra Lang",
        "Foto vom Schaden",
        "Hier das Foto vom Schaden am Paket.",
        # the part that says it is multipart but has no delimiter is kept as it came
        (("part-1.alternativ", "multipart/alternative"), ("schaden.png", "image/png")),
    ),
    "forwarded.eml": Seen(
        "sales@example.com",
        "Sales Desk",
        "Fwd: Quote request for 40 chairs",
        "Forwarding this to you, it is a service question.",
        (("Quote request for 40 chairs.eml", "message/rfc822"),),
    ),
    "html_only.eml": Seen(
        "leser@example.org",
        "Newsletter-Antwort",
        "Frage zu meinem Abo",
        "Mein Abo & meine Adresse haben sich geändert.\n\nNeue Adresse: Hauptstraße\xa05",
        (("original.html", "text/html"),),
    ),
    "reply_with_references.eml": Seen(
        "jana.krueger@example.org",
        "Jana Krueger",
        "Re: AW: Order 4711: wrong size delivered",
        "Thanks, the label arrived.\n\n> We have sent you a return label.",
    ),
}


def parse(name: str) -> ParsedMail:
    return parse_mail((DATA / name).read_bytes(), OPTIONS, 1_770_000_000.0)


def _file(parsed: ParsedMail, name: str) -> bytes:
    [data] = [part.data for part in parsed.parts if part.name == name]
    return data


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_every_fixture_is_described_and_checked() -> None:
    files = sorted(path.name for path in DATA.glob("*.eml"))
    assert files == sorted(SEEN)
    readme = (DATA / "README.md").read_text("utf-8")
    assert all(f"`{name}`" in readme for name in files)


@pytest.mark.parametrize("name", sorted(SEEN))
def test_what_the_agent_sees(name: str) -> None:
    seen = SEEN[name]
    parsed = parse(name)
    envelope = parsed.envelope
    assert envelope.channel == "email" and envelope.inbox == "support"
    assert (envelope.sender.address, envelope.sender.display_name) == (seen.sender, seen.name)
    assert envelope.subject == seen.subject
    assert envelope.text == seen.text
    assert tuple((part.name, part.content_type) for part in parsed.parts) == seen.files
    assert tuple(identity.address for identity in envelope.recipients) == seen.to
    assert envelope.auto_submitted is (seen.automatic is not None)
    assert envelope.metadata.get("auto_reason") == seen.automatic
    assert envelope.idempotency_key == content_key(
        (DATA / name).read_bytes(), envelope.provider_id, "support"
    )
    # a redelivery of the same bytes is the same message
    assert parse(name).envelope.idempotency_key == envelope.idempotency_key


def test_html_is_kept_sanitized_beside_the_plain_text() -> None:
    alternative = parse("alternative.eml")
    assert alternative.envelope.html is not None
    assert "<b>M</b>" in alternative.envelope.html
    assert _file(alternative, "original.html").startswith(b"<html><body><p>Hello,</p>")
    html_only = parse("html_only.eml").envelope
    assert html_only.html is not None and "<p>Mein Abo &amp; meine Adresse" in html_only.html
    assert "script" not in html_only.html and "alert" not in html_only.text
    assert "color: red" not in html_only.html + html_only.text


def test_nested_inline_image_and_attachment() -> None:
    parsed = parse("nested.eml")
    logo, pdf = parsed.parts[1], parsed.parts[2]
    assert (logo.inline, logo.content_id) == (True, "logo.4711@example.net")
    assert logo.data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", logo.data[16:24]) == (2, 2)  # IHDR: width, height
    assert _sha256(logo.data) == LOGO_SHA256
    assert (pdf.inline, pdf.content_id) == (False, None)
    assert _sha256(pdf.data) == PDF_SHA256
    # the HTML's cid: reference is not a URL the console may load
    assert parsed.envelope.html is not None and "cid:" not in parsed.envelope.html


def test_base64_and_quoted_printable_decode_byte_exact() -> None:
    parsed = parse("transfer_encodings.eml")
    assert _file(parsed, "notiz.txt") == (
        "Vertrag 55-1021\nKündigung eingereicht am 12.01.2026\n".encode()
    )
    # a quoted-printable soft line break joins the line; "=C3=A4" is one "ä"
    assert "zum nächstmöglichen Zeitpunkt kündigen" in parsed.envelope.text


def test_rfc2231_file_names_and_their_bytes() -> None:
    parsed = parse("rfc2231_filenames.eml")
    assert _sha256(_file(parsed, "Rechnung März 2026.pdf")) == PDF_SHA256
    assert _sha256(_file(parsed, "請求書_0211.pdf")) == PDF_SHA256
    assert _sha256(_file(parsed, "schaden foto.png")) == PHOTO_SHA256
    assert not any(part.inline for part in parsed.parts)


def test_calendar_invite_is_kept_as_files() -> None:
    parsed = parse("calendar_invite.eml")
    for name in ("part-1.calendar", "invite.ics"):
        data = _file(parsed, name)
        assert data.startswith(b"BEGIN:VCALENDAR\r\n")
        assert b"METHOD:REQUEST\r\n" in data
        assert b"SUMMARY:Callback: contract renewal\r\n" in data
    assert "BEGIN:VCALENDAR" not in parsed.envelope.text


def test_bounce_names_the_reply_that_failed() -> None:
    parsed = parse("bounce_dsn.eml")
    assert parsed.bounce is not None
    assert parsed.bounce.original_message_id == "reply-5120-1@support.example.com"
    assert parsed.bounce.recipient == "kunde.alt@example.net"
    assert parsed.bounce.status == "5.1.1"
    assert (parsed.bounce.diagnostic or "").startswith("smtp; 550 5.1.1")
    thread = parsed.envelope.thread
    assert thread.delivery_report
    assert thread.references == ("reply-5120-1@support.example.com",)
    assert parsed.envelope.metadata["bounce"]["status"] == "5.1.1"
    assert parsed.parts == ()  # the returned headers are not a file for the agent


def test_auto_reply_threads_to_our_reply() -> None:
    envelope = parse("auto_reply.eml").envelope
    assert envelope.thread.in_reply_to == "reply-6061-1@support.example.com"
    assert envelope.thread.references == ("reply-6061-1@support.example.com",)


def test_missing_date_and_message_id() -> None:
    envelope = parse("no_date_no_message_id.eml").envelope
    assert envelope.provider_id is None
    assert "date" not in envelope.metadata and "message_id" not in envelope.metadata
    assert envelope.received_at == 1_770_000_000.0  # when it came, not when it says it was sent


def test_long_headers_are_capped() -> None:
    envelope = parse("long_headers.eml").envelope
    assert len(envelope.subject or "") == 500
    thread = envelope.thread
    assert thread.in_reply_to == "thread-149@example.org"
    # a very long thread keeps its newest 100 references
    assert thread.references == tuple(f"thread-{i:03d}@example.org" for i in range(50, 150))
    assert "x" * 100 not in str(envelope.metadata)  # unknown headers are not carried along


def test_malformed_boundaries_lose_nothing() -> None:
    parsed = parse("malformed_boundary.eml")
    assert parsed.envelope.metadata["mime_defects"] == 2
    assert _file(parsed, "part-1.alternativ") == (
        b"This part says it is multipart but has no delimiter line at all.\r\n"
    )
    assert _sha256(_file(parsed, "schaden.png")) == PHOTO_SHA256


def test_forwarded_mail_is_one_file_with_its_own_attachment() -> None:
    parsed = parse("forwarded.eml")
    forwarded = message_from_bytes(
        _file(parsed, "Quote request for 40 chairs.eml"), policy=policy.default
    )
    assert forwarded["Subject"] == "Quote request for 40 chairs"
    assert forwarded["Message-ID"] == "<quote-40-chairs@example.net>"
    [pdf] = [part for part in forwarded.walk() if part.get_filename() == "floor-plan.pdf"]
    payload = pdf.get_payload(decode=True)
    assert isinstance(payload, bytes) and _sha256(payload) == PDF_SHA256
    # the forwarded mail's own attachment is not pulled out as a file of this mail
    assert [part.name for part in parsed.parts] == ["Quote request for 40 chairs.eml"]
    assert parsed.envelope.thread.references == ()


def test_reply_threading_headers() -> None:
    thread = parse("reply_with_references.eml").envelope.thread
    assert thread.in_reply_to == "reply-4711-2@support.example.com"
    assert thread.references == (
        "20260303091420.5521@mail.example.org",
        "reply-4711-1@support.example.com",
        "reply-4711-2@support.example.com",
    )
    assert thread.conversation is None  # none of them is a Message-ID the hub signed
