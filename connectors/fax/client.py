"""The interface every fax gateway client implements (Sinch, Telnyx, email), and what they share.

A gateway client does the provider's I/O and nothing about documents or the hub: it serves the
provider's webhooks (or reads its mail), turns them into :class:`~connectors.fax.parse.IncomingFax`
and :class:`~hub.envelope.Delivery` reports handed to :class:`Hooks`, and sends an
:class:`~connectors.fax.parse.OutgoingFax` the connector has already rendered. What the
provider's messages mean is decided in its pure module (``parse_<gateway>.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from connectors.base import ConnectorContext, Route, SendError
from connectors.fax.parse import IncomingFax, OutgoingFax
from connectors.shared.webhooks import json_object
from hub.envelope import Delivery


@dataclass(frozen=True, slots=True)
class Hooks:
    """What the connector lends its gateway client."""

    ctx: ConnectorContext
    receive: Callable[[IncomingFax], Awaitable[None]]  # returns once the fax is kept durably
    report: Callable[[str, Delivery], Awaitable[bool]]
    public_base: str  # where the gateway reaches this instance: …/channels/NAME
    media_url: Callable[[str, str], str]  # (blob ref, content type) -> signed URL
    already: Callable[[str], bool]  # this fax id was kept or stored lately (skip the download)


class Gateway(Protocol):
    name: str

    def routes(self) -> Sequence[Route]: ...

    async def start(self, hooks: Hooks) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, fax: OutgoingFax) -> Delivery:
        """Hand the fax to the provider; :class:`connectors.base.SendError` on failure."""
        ...

    def health(self) -> str | None: ...


async def get_json(
    hooks: Hooks, url: str, *, params: dict[str, str], headers: dict[str, str], seconds: float
) -> dict[str, Any]:
    """GET a provider's JSON (listing earlier faxes); :class:`SendError` (retryable) if that
    cannot be had, since sending blind could fax twice."""
    try:
        async with hooks.ctx.http.get(
            url, params=params, headers=headers, timeout=aiohttp.ClientTimeout(total=seconds)
        ) as response:
            if response.status != 200:
                raise SendError(
                    f"cannot check for an earlier send (HTTP {response.status})",
                    code="check_failed",
                )
            return json_object(await response.read())
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise SendError(f"gateway unreachable: {exc.__class__.__name__}", code="network") from None
