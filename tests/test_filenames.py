"""File names shown to agents: what a sender or an uploader wrote, without what disguises it
(issue 14 item 15: a right-to-left override stayed in displayed names). Pure, table-driven."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from connectors.shared.mail.mime import safe_filename
from connectors.shared.mail.reader import Options, parse_mail
from hub.uploads import filename

DISGUISES = [
    ("right-to-left override", "invoice\u202efdp.exe", "invoicefdp.exe"),
    ("left-to-right override", "a\u202db.pdf", "ab.pdf"),
    ("embeddings and pop", "\u202aa\u202bb\u202c.pdf", "ab.pdf"),
    ("isolates", "\u2066a\u2067b\u2068c\u2069.pdf", "abc.pdf"),
    ("marks", "\u200ea\u200fb\u061c.pdf", "ab.pdf"),
    ("zero width and BOM", "\ufeffre\u200bport.pdf", "report.pdf"),
    ("line separators", "a\u2028b\u2029.pdf", "ab.pdf"),
    ("only a control", "\u202e", None),
]


@pytest.mark.parametrize(("name", "given", "shown"), DISGUISES, ids=[d[0] for d in DISGUISES])
def test_mail_attachment_names_lose_bidi_and_invisible_controls(
    name: str, given: str, shown: str | None
) -> None:
    assert safe_filename(given, "fallback.bin") == (shown or "fallback.bin")


@pytest.mark.parametrize(("name", "given", "shown"), DISGUISES, ids=[d[0] for d in DISGUISES])
def test_upload_names_lose_bidi_and_invisible_controls(
    name: str, given: str, shown: str | None
) -> None:
    assert filename(given) == (shown or "file")


def test_names_keep_what_is_visible() -> None:
    assert safe_filename("Rechnung März 2026 (Kopie).pdf", "x") == "Rechnung März 2026 (Kopie).pdf"
    assert safe_filename("فاتورة.pdf", "x") == "فاتورة.pdf"  # right-to-left script itself stays
    assert safe_filename("../../etc/passwd", "x") == "passwd"
    assert safe_filename("a\x85b.pdf", "x") == "a_b.pdf"  # C1 controls like C0 ones


def test_a_mail_attachment_named_with_an_override_is_shown_without_it() -> None:
    message = EmailMessage()
    message["From"] = "a@example.com"
    message["To"] = "support@example.com"
    message["Subject"] = "invoice"
    message["Message-ID"] = "<rlo@example.com>"
    message.set_content("see attached")
    message.add_attachment(
        b"MZ\x90\x00",
        maintype="application",
        subtype="octet-stream",
        filename="invoice\u202efdp.exe",
    )
    parsed = parse_mail(
        message.as_bytes(), Options(inbox="support", secret=b"s" * 32, id_domain="example.com"), 0.0
    )
    [attachment] = parsed.parts  # stored by the connector under this name
    assert attachment.name == "invoicefdp.exe"
