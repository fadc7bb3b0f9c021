"""Settings of an email inbox (the ``settings:`` block of a ``type: email`` channel)."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from connectors.base import ConnectorSettings
from connectors.shared.mail.settings import Block, ImapSettings, SmtpInSettings, SmtpOutSettings


class AutoReplyCap(Block):
    """At most ``count`` automatic replies to one sender per ``window`` seconds."""

    count: int = Field(3, ge=0, le=1000)
    window: float = Field(3600.0, gt=0, le=7 * 86400.0)


class EmailSettings(ConnectorSettings):
    address: str = Field(
        min_length=3,
        max_length=320,
        pattern=r"^[^@\s<>]+@[^@\s<>]+$",
        description="the inbox's address: the From of replies",
    )
    display_name: str | None = Field(None, max_length=120, description="From display name")
    reply_to: str | None = Field(
        None, pattern=r"^[^@\s<>]+@[^@\s<>]+$", description="Reply-To of replies"
    )
    message_id_domain: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9.-]+$",
        description="domain of our Message-IDs (default: the address's domain)",
    )
    imap: ImapSettings | None = None
    smtp: SmtpOutSettings | None = None
    smtp_in: SmtpInSettings | None = None
    subject_threading: bool = Field(
        False,
        description="when no header links a mail to a conversation, thread by sender and "
        "subject (Re:/Fwd: stripped) into an open one",
    )
    closed_reply: Literal["reopen", "new"] = Field(
        "reopen", description="a reply to a closed conversation reopens it or starts a new one"
    )
    trusted_authserv_ids: tuple[str, ...] = Field(
        (),
        description="authserv-ids of your receiving servers whose Authentication-Results "
        "are believed (empty: the header is ignored and no sender is doubted; set: a mail "
        "with no DMARC, SPF or DKIM result from one of them counts as unverified)",
    )
    auto_reply_cap: AutoReplyCap = AutoReplyCap()
    max_message_bytes: int = Field(25 * 1024 * 1024, ge=1024, le=200 * 1024 * 1024)
    max_attachments: int = Field(50, ge=0, le=500)
    parse_workers: int = Field(
        2, ge=0, le=32, description="processes parsing MIME off the event loop (0: in a thread)"
    )
    parse_timeout: float = Field(30.0, gt=0, le=600.0)

    @model_validator(mode="after")
    def _some_transport(self) -> Self:
        if self.imap is None and self.smtp_in is None:
            raise ValueError("configure imap, smtp_in or both: otherwise no mail arrives")
        return self

    @property
    def id_domain(self) -> str:
        return self.message_id_domain or self.address.rsplit("@", 1)[1].lower()
