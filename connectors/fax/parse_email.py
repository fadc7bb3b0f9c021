"""Fax-to-email and email-to-fax, the mail a fax service sends and takes. Pure.

Fax servers and providers that speak mail (HylaFAX+ ``faxrcvd``, Sinch's ``…@sinchfax.com``,
most fax providers) deliver a received fax as a mail: the sender's number is found in the
Subject (then the From header, then the text) with ``number_pattern``, and the first PDF or
TIFF attachment is the fax. A reply is a mail to ``{number}@gateway_domain`` with the
rendered PDF attached. The mail itself is read by the shared mail reader
(:mod:`connectors.shared.mail.reader`); the I/O is :mod:`connectors.fax.client_email`.
"""

from __future__ import annotations

import dataclasses
import re
from email.message import EmailMessage
from email.utils import formatdate

from connectors.base import SendError
from connectors.fax.documents import sniff
from connectors.fax.parse import IncomingFax, OutgoingFax, reply_ref
from connectors.shared.mail import reader

_DIGITS = re.compile(r"[^0-9+]")


def fax_of_mail(
    raw: bytes, options: reader.Options, pattern: str, received_at: float
) -> IncomingFax:
    """The fax a gateway's mail carries (runs in the worker pool); BadMail if ``raw`` is not
    a mail at all."""
    parsed = reader.parse_mail(raw, options, received_at)
    envelope = parsed.envelope
    subject = envelope.subject or ""
    from_header = f"{envelope.sender.display_name or ''} {envelope.sender.address}"
    number = ""
    for text in (subject, from_header, envelope.text[:2000]):
        found = re.search(pattern, text)
        if found and found.group("number"):
            number = _DIGITS.sub("", found.group("number"))
            break
    document = next((p for p in parsed.parts if sniff(p.data) is not None), None)
    return IncomingFax(
        fax_id=envelope.idempotency_key.removeprefix("email:"),
        from_number=number or "anonymous",
        to_number="",
        data=document.data if document is not None else None,
        problem=None if document is not None else "the mail carries no PDF or TIFF document",
        metadata={
            "mail_subject": subject[:300],
            "mail_from": envelope.sender.address[:320],
            **({"message_id": envelope.provider_id} if envelope.provider_id else {}),
        },
    )


def unreadable(raw: bytes, inbox: str, error: reader.BadMail) -> IncomingFax:
    """What arrives for a mail that is not a mail at all: keyed by all of its bytes (two
    unreadable mails with the same body are two faxes), with the reason."""
    return IncomingFax(
        fax_id=reader.raw_key(raw, inbox).removeprefix("email:"),
        from_number="anonymous",
        to_number="",
        data=None,
        problem=f"the mail could not be read: {error}",
    )


def oversized(fax: IncomingFax, size: int) -> IncomingFax:
    """``fax`` read from the header of a mail over the line's size cap: no document, and why."""
    return dataclasses.replace(
        fax,
        data=None,
        problem=f"the mail is {size / 1e6:.1f} MB, over this line's limit; "
        "it was left in the mailbox",
    )


def reply_mail(fax: OutgoingFax, address: str, gateway_domain: str) -> tuple[EmailMessage, str]:
    """The mail that faxes ``fax`` through the gateway, from ``address``, and its Message-ID
    (without brackets); :class:`SendError` if the number cannot be written as
    ``{digits}@gateway_domain``."""
    number = fax.to_number.lstrip("+")
    if not number.isdigit():
        raise SendError(
            f"{fax.to_number!r} is not a fax number", code="bad_recipient", retryable=False
        )
    message = EmailMessage()
    message["From"] = address
    message["To"] = f"{number}@{gateway_domain}"
    message["Subject"] = (fax.subject or "Fax").replace("\r", " ").replace("\n", " ")[:200]
    message["Date"] = formatdate(fax.created_at, usegmt=True)
    domain = address.rpartition("@")[2] or "localhost"
    # from the whole key, hashed: the same on a retry (the relay sees one mail) and never
    # shared by two replies (a cut or cleaned key was, e.g. behind a long agent id)
    message_id = f"fax.{reply_ref(fax.key)}@{domain}"
    message["Message-ID"] = f"<{message_id}>"
    message.set_content(f"Fax to {fax.to_number}, {fax.pages} page(s), attached.\n")
    message.add_attachment(fax.pdf, maintype="application", subtype="pdf", filename="fax.pdf")
    return message, message_id
