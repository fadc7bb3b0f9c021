"""Settings of a phone number (the ``settings:`` block of a ``type: voice`` channel)."""

from __future__ import annotations

from enum import StrEnum
from typing import Self

from pydantic import ConfigDict, Field, SecretStr, model_validator

from connectors.base import ConnectorSettings

TWILIO_API = "https://api.twilio.com"
#: where Twilio serves recordings (RecordingUrl) and redirects those requests to
TWILIO_MEDIA_HOSTS = ("api.twilio.com",)
_URL = r"^https?://[^/?#]+(/[^?#]*)?$"
_E164 = r"^\+[1-9][0-9]{4,14}$"


class AfterWait(StrEnum):
    """What a caller gets when nobody answered within ``max_wait`` (or outside hours)."""

    VOICEMAIL = "voicemail"
    CALLBACK = "callback"


class VoiceSettings(ConnectorSettings):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    account_sid: str = Field(
        min_length=2, max_length=64, pattern=r"^[A-Za-z0-9-]+$", description="AC… (or project id)"
    )
    auth_token: SecretStr = Field(description="signs webhooks and authenticates API calls")
    from_: str = Field(
        alias="from", pattern=_E164, description="caller ID of outbound calls (agents, callbacks)"
    )
    public_url: str | None = Field(
        None,
        pattern=_URL,
        description="base URL Twilio calls the hub at (behind proxies); default server.public_url",
    )
    api_base_url: str = Field(
        TWILIO_API, pattern=_URL, description="REST API base: Twilio, compatible or a test server"
    )
    language: str = Field(
        "en-US", max_length=16, description="language of the prompts (<Say language>) by default"
    )
    country_languages: dict[str, str] = Field(
        default_factory=dict,
        description="caller's country (Twilio's FromCountry, e.g. DE) -> prompt language",
    )
    greeting: dict[str, str] = Field(
        default_factory=lambda: {"en-US": "Thank you for calling. Please hold."},
        description="language -> greeting said before the caller waits ('' for none)",
    )
    hold_message: dict[str, str] = Field(
        default_factory=lambda: {
            "en-US": "You are number {position} in line. Press 1 to leave a voicemail, "
            "or 2 to be called back."
        },
        description="language -> said while waiting; {position} is the caller's place",
    )
    closed_message: dict[str, str] = Field(
        default_factory=lambda: {"en-US": "We are closed right now."},
        description="language -> said outside business hours, before voicemail or callback",
    )
    voicemail_prompt: dict[str, str] = Field(
        default_factory=lambda: {"en-US": "Please leave a message after the tone."},
        description="language -> said before recording a voicemail",
    )
    callback_message: dict[str, str] = Field(
        default_factory=lambda: {"en-US": "Thank you. We will call you back. Goodbye."},
        description="language -> said when a callback is requested",
    )
    hold_music_url: str | None = Field(
        None, pattern=_URL, description="audio played while waiting (<Play>), after the message"
    )
    business_hours: str | None = Field(
        None, description="a calendar of hub.yaml's business_hours; outside it: after_hours"
    )
    after_hours: AfterWait = Field(AfterWait.VOICEMAIL, description="voicemail or callback")
    max_wait: float = Field(300.0, gt=0, le=3600, description="seconds in line before after_wait")
    after_wait: AfterWait = Field(AfterWait.VOICEMAIL, description="voicemail or callback")
    voicemail_max_length: int = Field(120, ge=5, le=3600, description="seconds of a voicemail")
    transcribe: bool = Field(False, description="ask the provider to transcribe voicemails")
    record_calls: bool = Field(False, description="record answered calls (announce it!)")
    recording_announcement: dict[str, str] = Field(
        default_factory=lambda: {"en-US": "This call may be recorded."},
        description="language -> said before the greeting when record_calls is on",
    )
    agent_ring_timeout: int = Field(
        20, ge=5, le=120, description="seconds the agent's device rings before the call fails"
    )
    media_hosts: tuple[str, ...] = Field(
        TWILIO_MEDIA_HOSTS, description="hosts recordings may come from ('*.example.com' ok)"
    )
    media_allow_private: bool = Field(
        False,
        description="allow recordings from loopback/private addresses and plain http "
        "(a provider on your own network, tests); never on the internet",
    )
    max_body_bytes: int = Field(64 * 1024, ge=1024, le=10 * 1024 * 1024)
    max_recording_bytes: int = Field(20 * 1024 * 1024, ge=1024, le=500 * 1024 * 1024)
    media_timeout: float = Field(30.0, gt=0, le=300)
    send_timeout: float = Field(10.0, gt=0, le=120)

    @model_validator(mode="after")
    def _languages(self) -> Self:
        if self.language not in self.greeting and self.greeting:
            raise ValueError(f"greeting has no text for the default language {self.language!r}")
        return self

    def text(self, table: dict[str, str], language: str) -> str:
        """The prompt of ``table`` in ``language``, else in the default language, else ''."""
        return table.get(language) or table.get(self.language) or next(iter(table.values()), "")
