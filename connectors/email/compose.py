"""An :class:`~hub.envelope.Outbound` → the MIME mail we send. Pure.

Every header value that a customer could have influenced (their name, the subject they wrote,
the ids their client put in References) is cleaned to one line and re-encoded by the email
package, so nothing they write can add a header or a recipient.
"""

from __future__ import annotations

import email.utils
import html
import re
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage

from connectors.shared.mail import message_ids
from connectors.shared.mail.headers import clean
from hub.envelope import Outbound

MAX_REFERENCES = 20  # RFC 5322 allows trimming; keep the first and the newest
_ID = re.compile(r"^[^<>\s\x00-\x1f\x7f]{1,900}$")
_REPLY_PREFIX = re.compile(r"^\s*(re|aw|sv|antw)\s*:", re.I)
AUTO_REPLY_PREFIX = "auto:"


@dataclass(frozen=True, slots=True)
class Sender:
    address: str
    display_name: str | None = None
    reply_to: str | None = None


@dataclass(frozen=True, slots=True)
class File:
    name: str
    content_type: str
    data: bytes


def reply_subject(subject: str | None) -> str:
    """``Re: subject`` without stacking prefixes; ``(no subject)`` kept readable."""
    text = clean(subject or "", 300)
    if not text:
        return "Re: (no subject)"
    return text if _REPLY_PREFIX.match(text) else f"Re: {text}"


def _address(address: str, display_name: str | None) -> Address:
    local, _, domain = address.partition("@")
    return Address(display_name=clean(display_name or "", 120), username=local, domain=domain)


def _ids(values: list[str]) -> list[str]:
    valid = [value for value in values if _ID.match(value)]
    if len(valid) > MAX_REFERENCES:
        valid = [valid[0], *valid[-(MAX_REFERENCES - 1) :]]
    return valid


def is_auto_reply(outbound: Outbound) -> bool:
    """The hub queues rule auto-replies under ``auto:…`` idempotency keys."""
    return outbound.idempotency_key.startswith(AUTO_REPLY_PREFIX)


def build_reply(
    outbound: Outbound,
    sender: Sender,
    *,
    secret: bytes,
    id_domain: str,
    files: tuple[File, ...] = (),
) -> EmailMessage:
    """The mail answering the customer, threaded under what they wrote.

    Its Message-ID follows from the reply's idempotency key: sending again after a crash
    produces the same id, which receiving systems treat as the same mail."""
    if "@" not in outbound.recipient.address:
        raise ValueError(f"{outbound.recipient.address!r} is not an email address")
    message = EmailMessage()
    message["From"] = _address(sender.address, sender.display_name)
    message["To"] = _address(outbound.recipient.address, outbound.recipient.display_name)
    if sender.reply_to:
        message["Reply-To"] = _address(sender.reply_to, None)
    message["Subject"] = reply_subject(outbound.subject)
    message["Date"] = email.utils.formatdate(outbound.created_at or None, localtime=False)
    message_id = message_ids.make(
        secret, outbound.idempotency_key, outbound.conversation_id, id_domain
    )
    message["Message-ID"] = f"<{message_id}>"
    references = _ids(list(outbound.thread.references))
    parent = outbound.thread.in_reply_to
    if parent and _ID.match(parent):
        message["In-Reply-To"] = f"<{parent}>"
        if parent not in references:
            references = _ids([*references, parent])
    if references:
        message["References"] = " ".join(f"<{ref}>" for ref in references)
    if is_auto_reply(outbound):
        message["Auto-Submitted"] = "auto-replied"  # RFC 3834: peers must not answer it
        message["X-Auto-Response-Suppress"] = "All"
    message.set_content(outbound.text or "", cte="quoted-printable")
    message.add_alternative(render_html(outbound.text or ""), subtype="html")
    for item in files:
        maintype, _, subtype = item.content_type.partition("/")
        message.add_attachment(
            item.data,
            maintype=maintype or "application",
            subtype=subtype or "octet-stream",
            filename=clean(item.name, 200) or "attachment",
        )
    return message


def render_html(text: str) -> str:
    """The reply's text as a minimal HTML alternative (escaped, line breaks kept)."""
    body = html.escape(text).replace("\n", "<br>\n")
    return f'<!DOCTYPE html><html><body><div dir="auto">{body}</div></body></html>\n'


def message_id_of(message: EmailMessage) -> str:
    """The Message-ID we gave ``message``, without brackets."""
    return str(message["Message-ID"]).strip().strip("<>")
