"""Settings of the mail transports: an IMAP mailbox, an SMTP relay, an SMTP server of our own.

Blocks of a connector's settings (``imap:``, ``smtp:``, ``smtp_in:`` of an email inbox or of a
fax line's ``email`` gateway); the connector's own model holds them.
"""

from __future__ import annotations

import datetime
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

Security = Literal["tls", "starttls", "none"]


class Block(BaseModel):
    """A settings block: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ImapSettings(Block):
    """Where inbound mail is read: one connection per mailbox, IDLE for push."""

    host: str = Field(min_length=1, max_length=255)
    port: int | None = Field(None, ge=1, le=65535, description="default 993 (tls) or 143")
    security: Security = Field("tls", description="tls, starttls, or none (loopback only)")
    username: str = Field(min_length=1, max_length=320)
    ca_file: str | None = Field(None, description="PEM file of CAs to trust (a private CA)")
    password: SecretStr | None = Field(None, description="LOGIN password")
    oauth2_token: SecretStr | None = Field(None, description="XOAUTH2 access token instead")
    mailbox: str = Field("INBOX", min_length=1, max_length=200)
    move_to: str | None = Field(
        None, max_length=200, description="move stored mail here instead of marking it \\Seen"
    )
    backfill: Literal["none", "all"] | datetime.date = Field(
        "none",
        description="on first connect: none (only mail arriving from now on), all, or a date "
        "(mail since that day)",
    )
    idle_renew: float = Field(
        25 * 60.0, gt=0, le=29 * 60.0, description="re-issue IDLE after (RFC 2177: < 29 min)"
    )
    poll_interval: float = Field(
        300.0, gt=0, le=3600.0, description="safety poll even when IDLE is quiet"
    )
    timeout: float = Field(30.0, gt=0, le=300.0, description="per command")
    fetch_batch: int = Field(20, ge=1, le=500, description="messages per FETCH")
    reconnect_max: float = Field(300.0, ge=1, le=3600.0, description="longest backoff")

    @model_validator(mode="after")
    def _credentials(self) -> Self:
        if (self.password is None) == (self.oauth2_token is None):
            raise ValueError("give exactly one of password or oauth2_token")
        return self

    @property
    def effective_port(self) -> int:
        return self.port or (993 if self.security == "tls" else 143)


class SmtpOutSettings(Block):
    """The relay replies leave through."""

    host: str = Field(min_length=1, max_length=255)
    port: int | None = Field(None, ge=1, le=65535, description="default 465 (tls) or 587")
    security: Security = Field("starttls")
    ca_file: str | None = Field(None, description="PEM file of CAs to trust (a private CA)")
    username: str | None = Field(None, max_length=320)
    password: SecretStr | None = None
    timeout: float = Field(30.0, gt=0, le=300.0)

    @property
    def effective_port(self) -> int:
        return self.port or (465 if self.security == "tls" else 587)


class SmtpInSettings(Block):
    """An SMTP server of our own, for an MX record or a forwarder pointed at the hub."""

    host: str = Field("127.0.0.1", min_length=1, max_length=255)
    port: int = Field(2525, ge=0, le=65535, description="0 picks a free port (tests)")
    recipients: tuple[str, ...] = Field(
        min_length=1, description="addresses (or @domain) accepted; anything else is refused"
    )
    max_message_bytes: int = Field(25 * 1024 * 1024, ge=1024, le=200 * 1024 * 1024)
