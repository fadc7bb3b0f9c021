"""Settings of a web chat instance (the ``settings:`` block of a ``type: webchat`` channel)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from connectors.base import ConnectorSettings


class WebChatSettings(ConnectorSettings):
    title: str = Field("Chat with us", max_length=80, description="header of the chat window")
    welcome: str = Field(
        "Hello! How can we help you?", max_length=500, description="first line a visitor sees"
    )
    allowed_origins: tuple[str, ...] = Field(
        (), description="sites besides the hub itself that may embed the widget; '*' for any"
    )
    max_message_chars: int = Field(4000, ge=1, le=100_000)
    rate_per_second: float = Field(1.0, gt=0, description="sustained messages per visitor")
    burst: int = Field(10, ge=1, description="messages a visitor may send in a quick burst")
    history_limit: int = Field(200, ge=0, le=5000)
    max_sockets_per_visitor: int = Field(5, ge=1, le=100)
    compression: bool = Field(
        False,
        description="permessage-deflate on visitor sockets: chat frames are small, and each "
        "compressed socket holds ~100 KiB of zlib state",
    )
    identity_secret: SecretStr | None = Field(
        None,
        description="key the company's website signs logged-in customers' numbers with "
        "(HMAC-SHA256); unset: visitors are never linked to customers",
    )
