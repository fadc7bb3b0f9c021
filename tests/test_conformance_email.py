"""Email against the public conformance kit: mail handed to its SMTP door (aiosmtpd) as a
sending server would, replies through a real aiosmtpd relay (tests/smtp_sink.py). The IMAP door
acknowledges the same way (after ``receive`` returns) and is tested against Dovecot in
tests/test_email_imap.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiosmtplib

from connectors.base import ConnectorSettings
from connectors.email import EmailConnector
from connectors.email.settings import EmailSettings
from connectors.testing import ConnectorConformance, Harness, Hostile
from hub.envelope import Identity, Outbound
from tests.smtp_sink import Relay, running_relay
from tests.test_email_imap import mail

ADDRESS = "support@example.com"
MAX_MESSAGE = 64 * 1024


def _port(harness: Harness) -> int:
    connector = harness.connector
    if not isinstance(connector, EmailConnector) or connector.receiver is None:
        raise RuntimeError("the email connector's SMTP door is not open")
    port = connector.receiver.port
    if port is None:
        raise RuntimeError("the SMTP door has no port")
    return port


async def _smtp(harness: Harness, raw: bytes, recipient: str = ADDRESS) -> int:
    """Hand ``raw`` to the door as a sending server would; the reply code it ended with."""
    try:
        await aiosmtplib.send(
            raw,
            sender="customer@example.org",
            recipients=[recipient],
            hostname="127.0.0.1",
            port=_port(harness),
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        return exc.recipients[0].code
    except aiosmtplib.SMTPResponseException as exc:
        return exc.code
    return 250


class TestEmailConformance(ConnectorConformance):
    connector_class = EmailConnector
    entry_point = "email"
    instance = "support"
    relay: Relay

    @asynccontextmanager
    async def environment(self) -> AsyncIterator[None]:
        async with running_relay() as self.relay:
            yield

    def settings(self) -> ConnectorSettings:
        return EmailSettings.model_validate(
            {
                "address": ADDRESS,
                "parse_workers": 0,
                "smtp": {"host": "127.0.0.1", "port": self.relay.port, "security": "none"},
                "smtp_in": {
                    "host": "127.0.0.1",
                    "port": 0,
                    "recipients": [ADDRESS],
                    "max_message_bytes": MAX_MESSAGE,
                },
            }
        )

    async def deliver(self, harness: Harness, key: str) -> bool:
        raw = mail(1, **{"Message-ID": f"<{key}@example.org>", "Subject": f"sample {key}"})
        return await _smtp(harness, raw) == 250

    def hostile(self) -> list[Hostile]:
        # SMTP's refusal is a 5xx (permanent: the sending server does not retry it)
        return [
            Hostile(
                "a recipient this door does not accept",
                lambda h: _smtp(h, mail(2), "someone@elsewhere.test"),
                refused={550},
            ),
            Hostile(
                "a mail over max_message_bytes",
                lambda h: _smtp(h, mail(3) + b"x" * (MAX_MESSAGE + 1)),
                refused={552},
            ),
        ]

    def recipient(self) -> Identity:
        return Identity(kind="email", address="customer1@example.org")

    async def fail_next_send(self, harness: Harness, outbound: Outbound) -> Outbound:
        self.relay.answer = ["451 4.3.0 try again later"]
        return outbound
