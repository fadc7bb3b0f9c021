"""Handing a reply to the SMTP relay, with the relay's answer turned into a typed outcome.

4xx (and a relay that cannot be reached) is temporary: the outbox retries with backoff. 5xx is
permanent and shown to the agent with the relay's own words.
"""

from __future__ import annotations

import ssl
from email.message import EmailMessage

import aiosmtplib

from connectors.base import SendError
from connectors.shared.mail.settings import SmtpOutSettings


class SmtpSender:
    def __init__(self, settings: SmtpOutSettings, tls_context: ssl.SSLContext | None = None):
        self.settings = settings
        self.tls_context = tls_context or (
            ssl.create_default_context(cafile=settings.ca_file) if settings.ca_file else None
        )

    async def send(self, message: EmailMessage, sender: str, recipient: str) -> None:
        """Deliver ``message`` to ``recipient``; raise :class:`SendError` if the relay refuses."""
        settings = self.settings
        try:
            responses, _ = await aiosmtplib.send(
                message,
                sender=sender,
                recipients=[recipient],
                hostname=settings.host,
                port=settings.effective_port,
                username=settings.username,
                password=settings.password.get_secret_value() if settings.password else None,
                use_tls=settings.security == "tls",
                start_tls=settings.security == "starttls",
                tls_context=self.tls_context,
                timeout=settings.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refusal = exc.recipients[0] if exc.recipients else None
            code = refusal.code if refusal is not None else 550
            text = refusal.message if refusal is not None else str(exc)
            raise _refused(code, text) from None
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise SendError(
                f"the relay refused our login ({exc.code} {exc.message}); check smtp.username "
                "and smtp.password",
                code="smtp_auth",
                retryable=False,
            ) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise _refused(exc.code, exc.message) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise SendError(
                f"relay {settings.host}:{settings.effective_port} unreachable: {exc}",
                code="smtp_unreachable",
            ) from None
        refused = {rcpt: r for rcpt, r in responses.items() if r.code >= 400}
        if refused:
            response = next(iter(refused.values()))
            raise _refused(response.code, response.message)


def _refused(code: int, text: str) -> SendError:
    text = " ".join(str(text).split())[:300]
    return SendError(
        f"the relay answered {code} {text}",
        code=f"smtp_{code}",
        retryable=400 <= code < 500,
    )
