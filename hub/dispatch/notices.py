"""What dispatch tells an agent, as typed values.

Dispatch decides who is told what and when; how it looks on the agent's websocket is the
console's business (``hub.console.views`` renders each notice as a protocol frame). Each notice
names the frame it becomes in docs/agent-protocol.md.
"""

from __future__ import annotations

from typing import Any, Protocol

import msgspec

from hub.bus import MessageStored
from hub.store.records import Conversation


class Offered(msgspec.Struct, frozen=True):
    """``offer``: take this conversation before ``expires_at``."""

    conversation: Conversation  # with its customer and messages
    expires_at: float


class OfferRevoked(msgspec.Struct, frozen=True):
    """``offer_revoked``: an offer is gone (timeout, taken elsewhere, presence change)."""

    conversation_id: str
    reason: str


class Assigned(msgspec.Struct, frozen=True):
    """``conversation``: the agent holds this conversation now."""

    conversation: Conversation


class Removed(msgspec.Struct, frozen=True):
    """``conversation_removed``: the agent no longer holds it (requeued, transferred)."""

    conversation_id: str
    reason: str


class Closed(msgspec.Struct, frozen=True):
    """``conversation_closed``: the agent's close is stored."""

    conversation_id: str
    disposition: str


class MessageAdded(msgspec.Struct, frozen=True):
    """``message``: a new message in a conversation the agent holds."""

    event: MessageStored


class QueueState(msgspec.Struct, frozen=True):
    """``queue_state``: the live board supervisors see."""

    queues: list[dict[str, Any]]
    agents: list[dict[str, Any]]


Notice = Offered | OfferRevoked | Assigned | Removed | Closed | MessageAdded | QueueState


class Audience(Protocol):
    """Where dispatch's notices go (the console's sockets, or a test's collector)."""

    async def tell(self, agent: str, notice: Notice) -> None: ...
