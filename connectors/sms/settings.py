"""Settings of an SMS/WhatsApp instance (the ``settings:`` block of a ``type: sms`` channel)."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from connectors.base import ConnectorSettings

TWILIO_API = "https://api.twilio.com"
#: where Twilio serves inbound media (MediaUrl) and redirects those requests to
TWILIO_MEDIA_HOSTS = ("api.twilio.com", "media.twiliocdn.com", "mms.twiliocdn.com")


class WhatsAppTemplate(BaseModel):
    """An approved WhatsApp template (a Twilio Content API item)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    content_sid: str = Field(
        pattern=r"^HX[0-9a-fA-F]{32}$", description="the template's ContentSid"
    )
    body: str = Field(
        min_length=1, max_length=1024, description="its text with {{1}}, {{2}} … as approved"
    )
    variables: tuple[str, ...] = Field(
        (), max_length=20, description="what the agent fills in for {{1}}, {{2}} …, in order"
    )


class SmsSettings(ConnectorSettings):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    account_sid: str = Field(
        min_length=2, max_length=64, pattern=r"^[A-Za-z0-9-]+$", description="AC… (or project id)"
    )
    auth_token: SecretStr = Field(description="signs webhooks and authenticates API calls")
    from_: str | None = Field(
        None, alias="from", pattern=r"^\+[1-9][0-9]{4,14}$", description="sending number, E.164"
    )
    messaging_service_sid: str | None = Field(
        None, pattern=r"^MG[0-9a-fA-F]{32}$", description="send through a Messaging Service"
    )
    whatsapp_from: str | None = Field(
        None,
        pattern=r"^\+[1-9][0-9]{4,14}$",
        description="WhatsApp sender number when it is not `from`",
    )
    public_url: str | None = Field(
        None,
        pattern=r"^https?://[^/?#]+(/[^?#]*)?$",
        description="base URL Twilio calls the hub at (behind proxies); default server.public_url",
    )
    api_base_url: str = Field(
        TWILIO_API,
        pattern=r"^https?://[^/?#]+(/[^?#]*)?$",
        description="REST API base: Twilio, a compatible provider or a test server",
    )
    media_hosts: tuple[str, ...] = Field(
        TWILIO_MEDIA_HOSTS, description="hosts inbound media may come from ('*.example.com' ok)"
    )
    media_allow_private: bool = Field(
        False,
        description="allow media from loopback/private addresses and plain http "
        "(a provider on your own network, tests); never on the internet",
    )
    status_callbacks: bool = Field(True, description="ask for delivery reports on replies")
    max_body_bytes: int = Field(64 * 1024, ge=1024, le=10 * 1024 * 1024)
    max_media_bytes: int = Field(5 * 1024 * 1024, ge=1024, le=100 * 1024 * 1024)
    max_media_count: int = Field(10, ge=0, le=20)
    media_timeout: float = Field(20.0, gt=0, le=300)
    send_timeout: float = Field(15.0, gt=0, le=120)
    whatsapp_templates: dict[str, WhatsAppTemplate] = Field(
        default_factory=dict, description="approved templates agents may pick, by name"
    )

    @model_validator(mode="after")
    def _sender(self) -> Self:
        if self.from_ is None and self.messaging_service_sid is None:
            raise ValueError("set `from` (a number) or `messaging_service_sid`")
        return self
