"""The ``settings:`` block of a ``type: echo`` channel in hub.yaml."""

from __future__ import annotations

from pydantic import Field, SecretStr

from connectors.base import ConnectorSettings


class EchoSettings(ConnectorSettings):
    """Unknown keys are errors and values are frozen (``ConnectorSettings``)."""

    api_url: str = Field(
        pattern=r"^https?://[^/?#]+(/[^?#]*)?$",
        description="base URL of the provider's API; replies go to {api_url}/v1/messages",
    )
    api_token: SecretStr = Field(description="Bearer token for the API")
    webhook_secret: SecretStr = Field(
        min_length=16, description="key the provider signs webhooks with (HMAC-SHA256)"
    )
    max_body_bytes: int = Field(64 * 1024, ge=1024, le=1024 * 1024)
    send_timeout: float = Field(10.0, gt=0, le=120)
