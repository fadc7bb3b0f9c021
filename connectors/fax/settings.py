"""Settings of a fax line (the ``settings:`` block of a ``type: fax`` channel).

One instance is one fax number behind one gateway: ``sinch``, ``telnyx`` or ``email``
(fax-to-email / email-to-fax). The gateway's own block carries its credentials and base URL.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from connectors.base import ConnectorSettings
from connectors.shared.mail.settings import ImapSettings, SmtpInSettings, SmtpOutSettings

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _networks(values: tuple[str, ...]) -> tuple[str, ...]:
    for value in values:
        ipaddress.ip_network(value, strict=False)  # ValueError names the bad entry
    return values


class SinchSettings(_Block):
    """Sinch Fax API v3 (formerly Phaxio)."""

    project_id: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9-]+$")
    key_id: str = Field(min_length=1, max_length=200, description="access key id (Basic user)")
    key_secret: SecretStr = Field(description="access key secret (Basic password)")
    webhook_username: str = Field(
        min_length=1, max_length=200, description="the user in the webhook URL you give Sinch"
    )
    webhook_password: SecretStr = Field(description="the password in that URL (>= 16 chars)")
    allowed_sources: tuple[str, ...] = Field(
        (), description="CIDRs webhooks may come from; empty: any (the password still applies)"
    )
    trusted_proxies: tuple[str, ...] = Field(
        (), description="CIDRs of your reverse proxies, whose X-Forwarded-For is believed"
    )
    api_base_url: str = Field(
        "https://fax.api.sinch.com",
        description="REST base: Sinch, a regional endpoint or a test server",
    )
    send_timeout: float = Field(60.0, gt=0, le=600)

    _sources = field_validator("allowed_sources", "trusted_proxies")(_networks)

    @field_validator("webhook_password")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("use at least 16 characters: it is the only webhook credential")
        return value


class TelnyxSettings(_Block):
    """Telnyx Programmable Fax."""

    api_key: SecretStr = Field(description="API v2 key (Bearer)")
    public_key: str = Field(
        min_length=40, max_length=60, description="the account's Ed25519 public key (base64)"
    )
    connection_id: str = Field(min_length=1, max_length=100, description="the Fax Application id")
    api_base_url: str = Field("https://api.telnyx.com", description="REST base or a test server")
    media_hosts: tuple[str, ...] = Field(
        ("*",),
        description="hosts media_url may point at (*.example.com for subdomains); the default "
        "* is any public host (private addresses are refused unless media_allow_private)",
    )
    media_allow_private: bool = Field(False, description="tests only: allow loopback media")
    tolerance: float = Field(300.0, ge=10, le=900, description="webhook replay window, seconds")
    send_timeout: float = Field(60.0, gt=0, le=600)


class MailGatewaySettings(_Block):
    """Fax-to-email in and email-to-fax out, through the shared mail transport.

    ``number_pattern`` is a regular expression with a group named ``number`` searched in the
    Subject, then in the From header (HylaFAX+ ``faxrcvd``: "Facsimile received from
    +49 30 1234567"; Sinch: "Fax from +4930…")."""

    imap: ImapSettings | None = None
    smtp_in: SmtpInSettings | None = None
    smtp: SmtpOutSettings | None = Field(None, description="relay for email-to-fax")
    address: str = Field(
        min_length=3, max_length=320, description="our address (From of email-to-fax mail)"
    )
    gateway_domain: str | None = Field(
        None,
        max_length=255,
        pattern=r"^[A-Za-z0-9.-]+$",
        description="email-to-fax: faxes go to {number}@gateway_domain",
    )
    number_pattern: str = Field(
        r"(?i)(?:from|von|absender)\s*:?\s*(?P<number>\+?[0-9][0-9 ()/.-]{5,24}[0-9])",
        max_length=500,
    )
    max_message_bytes: int = Field(25 * 1024 * 1024, ge=1024, le=200 * 1024 * 1024)

    @field_validator("number_pattern")
    @classmethod
    def _has_number_group(cls, value: str) -> str:
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        if "number" not in compiled.groupindex:
            raise ValueError("the pattern needs a group named 'number': (?P<number>…)")
        return value

    @model_validator(mode="after")
    def _some_door(self) -> Self:
        if self.imap is None and self.smtp_in is None:
            raise ValueError("give imap or smtp_in (where fax mail arrives)")
        return self


class OcrSettings(_Block):
    enabled: bool = True
    languages: str = Field(
        "deu+eng", pattern=r"^[A-Za-z_]{3,20}(\+[A-Za-z_]{3,20}){0,5}$", description="tesseract -l"
    )
    timeout: float = Field(60.0, gt=0, le=600, description="per page")
    workers: int = Field(1, ge=0, le=16, description="processes for documents and OCR; 0: thread")


class LetterSettings(_Block):
    """How an agent's reply looks on paper."""

    company: str = Field("", max_length=200, description="header line on every page")
    header_lines: tuple[str, ...] = Field((), max_length=6, description="address, phone, …")
    cover_page: bool = Field(False, description="a cover page (to, from, date, pages) first")
    font: str | None = Field(
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        description="TrueType font for the text (Unicode); missing: Helvetica (Latin-1 only)",
    )


class FaxSettings(ConnectorSettings):
    gateway: Literal["sinch", "telnyx", "email"]
    number: str = Field(description="this line's fax number, E.164 (+49301234567)")
    sinch: SinchSettings | None = None
    telnyx: TelnyxSettings | None = None
    email: MailGatewaySettings | None = None
    public_url: str | None = Field(
        None, description="URL the gateway reaches this hub at; default: the server's"
    )
    ocr: OcrSettings = OcrSettings()
    letter: LetterSettings = LetterSettings()
    max_document_bytes: int = Field(30 * 1024 * 1024, ge=1024, le=500 * 1024 * 1024)
    max_pages: int = Field(100, ge=1, le=2000, description="pages read (previews and OCR)")
    max_page_pixels: int = Field(
        40_000_000, ge=100_000, le=200_000_000, description="per page image (bomb guard)"
    )
    max_document_pixels: int = Field(
        500_000_000,
        ge=1_000_000,
        le=20_000_000_000,
        description="all pages together; pages past it are not read (the original is kept)",
    )
    document_seconds: float = Field(
        300.0,
        gt=0,
        le=3600,
        description="reading one document (pages, previews, OCR); pages not begun by then "
        "are not read",
    )
    preview_width: int = Field(850, ge=100, le=2500, description="PNG preview width, pixels")

    @field_validator("number")
    @classmethod
    def _e164(cls, value: str) -> str:
        compact = re.sub(r"[\s()/.-]", "", value)
        if not E164.match(compact):
            raise ValueError("give the number in E.164 form, e.g. +49301234567")
        return compact

    @model_validator(mode="after")
    def _gateway_block(self) -> Self:
        block = getattr(self, self.gateway)
        if block is None:
            raise ValueError(f"gateway {self.gateway!r} needs its {self.gateway}: block")
        others = [g for g in ("sinch", "telnyx", "email") if g != self.gateway]
        extra = [g for g in others if getattr(self, g) is not None]
        if extra:
            raise ValueError(f"gateway is {self.gateway!r}; remove the {', '.join(extra)} block")
        return self
