"""What the agent console shows: stored rows and dispatch's notices as protocol frames.

Pure: records and notices in, JSON frames out (docs/agent-protocol.md is the reference). The one
impure piece is :class:`ConsoleFrames`, dispatch's audience, which hands each rendered frame to
the agent's sockets.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import msgspec

from hub.bus import CallUpdated, DeliveryUpdated, MessageStored
from hub.console.protocol import frame
from hub.dispatch.notices import (
    Assigned,
    Closed,
    MessageAdded,
    Notice,
    Offered,
    OfferRevoked,
    QueueState,
    Removed,
)
from hub.envelope import CallEvent
from hub.store.records import Conversation, ConversationSummary, Message

ComposeView = Callable[[Conversation], dict[str, Any]]
PREVIEW_CHARS = 280


def message_view(message: Message) -> dict[str, Any]:
    """The agent-facing shape of a stored message."""
    return {
        "id": message.id,
        "kind": message.kind,
        "direction": message.direction,
        "author": message.author,
        "automatic": is_automatic(message.direction, message.kind, message.author),
        "text": message.text,
        "subject": message.subject,
        "created_at": message.created_at,
        "delivery_status": message.delivery_status,
        "delivery_error": message.delivery_error,
        "attachments": list(message.attachments),
        "notes": list(message.notes),
    }


def is_automatic(direction: str, kind: str | None, author: str | None) -> bool:
    """A message the hub sent by itself (a rule's auto-reply): outbound, not a note, no agent."""
    return direction == "outbound" and kind in (None, "message") and author is None


def sla_due_at(
    conversation: Conversation | ConversationSummary, queue_sla: float | None = None
) -> float | None:
    """When the first answer is due: the rules' SLA, else the queue's, from when it queued."""
    sla = (conversation.decision or {}).get("sla_seconds")
    if sla is None:
        sla = queue_sla
    queued_at = conversation.queued_at or conversation.created_at
    return None if sla is None else float(queued_at) + float(sla)


def conversation_view(
    conversation: Conversation,
    compose: ComposeView | None = None,
    queue_sla: float | None = None,
) -> dict[str, Any]:
    """The agent-facing shape of a conversation with its customer and messages; ``compose``
    adds what the agent may send now (see hub.console.compose)."""
    decision = conversation.decision or {}
    view = {
        "id": conversation.id,
        "channel": conversation.channel,
        "inbox": conversation.inbox,
        "status": conversation.status,
        "queue": conversation.queue,
        "priority": conversation.priority,
        "assignee": conversation.assignee,
        "subject": conversation.subject,
        "created_at": conversation.created_at,
        "sla_due_at": sla_due_at(conversation, queue_sla),
        "customer": conversation.customer,
        "instructions": decision.get("instructions", []),
        "tags": decision.get("tags", []),
        "rules": decision.get("rules", []),
        "messages": [message_view(m) for m in conversation.messages],
    }
    if conversation.calls:
        view["calls"] = [call_item(event) for event in conversation.calls]
    if compose is not None:
        view["compose"] = compose(conversation)
    return view


def offer_view(
    conversation: Conversation, expires_at: float, queue_sla: float | None = None
) -> dict[str, Any]:
    """The fields of an ``offer`` frame (also the offers in a ``snapshot``)."""
    view = conversation_view(conversation, queue_sla=queue_sla)
    preview = next(
        (m["text"] for m in reversed(view["messages"]) if m["direction"] == "inbound"), ""
    )
    return {
        "conversation_id": view["id"],
        "expires_at": expires_at,
        "channel": view["channel"],
        "inbox": view["inbox"],
        "queue": view["queue"],
        "priority": view["priority"],
        "sla_due_at": view["sla_due_at"],
        "customer": view["customer"],
        "preview": preview[:PREVIEW_CHARS],
        "instructions": view["instructions"],
    }


def live_message_view(event: MessageStored) -> dict[str, Any]:
    """A message as its bus event carries it (so a live frame reads nothing from the store)."""
    return {
        "id": event.message_id,
        "kind": event.kind,
        "direction": event.direction,
        "author": event.author,
        "automatic": is_automatic(event.direction, event.kind, event.author),
        "text": event.text,
        "created_at": event.created_at,
        "delivery_status": "queued"
        if event.direction == "outbound" and event.kind == "message"
        else None,
        # a fax's pages, an email's files, what went wrong: carried by the event
        "attachments": [msgspec.structs.asdict(a) for a in event.attachments],
        "notes": list(event.notes),
    }


def delivery_frame(event: DeliveryUpdated) -> bytes:
    """``delivery``: the channel reported on a reply."""
    return frame(
        "delivery",
        conversation_id=event.conversation_id,
        message_id=event.message_id,
        status=event.status,
        error=event.error,
    )


def call_item(event: CallEvent) -> dict[str, Any]:
    """A phone call's timeline event as the console shows it (``calls``, ``call``)."""
    shown = msgspec.structs.asdict(event)
    del shown["key"]  # the provider's report id: for deduplication only
    return shown


def call_frame(event: CallUpdated) -> bytes:
    """``call``: something happened to the call of a conversation the agent holds."""
    return frame("call", conversation_id=event.conversation_id, call=call_item(event.event))


def queue_state_frame(state: QueueState) -> bytes:
    return frame("queue_state", queues=state.queues, agents=state.agents)


class Sockets(Protocol):
    """An agent's open websockets (``hub.console.registry.AgentConnections``)."""

    async def send(self, agent: str, data: bytes) -> int: ...


class ConsoleFrames:
    """Dispatch's audience: renders each notice as its frame and queues it on the agent's
    sockets. ``compose`` adds to a held conversation what its channel lets the agent send;
    ``queue_sla`` is each queue's first-response target, for the SLA countdowns."""

    def __init__(
        self,
        sockets: Sockets,
        compose: ComposeView | None = None,
        queue_sla: Mapping[str, float | None] | None = None,
    ) -> None:
        self.sockets = sockets
        self.compose = compose
        self.queue_sla: Mapping[str, float | None] = queue_sla or {}
        # one renderer per notice type: a lookup, not a chain of isinstance checks
        self._renderers: dict[type[Any], Callable[[Any], bytes]] = {
            Offered: self._offered,
            OfferRevoked: self._offer_revoked,
            Assigned: self._assigned,
            Removed: self._removed,
            Closed: self._closed,
            MessageAdded: self._message_added,
            QueueState: queue_state_frame,
        }

    async def tell(self, agent: str, notice: Notice) -> None:
        await self.sockets.send(agent, self.render(notice))

    def render(self, notice: Notice) -> bytes:
        return self._renderers[type(notice)](notice)

    def _offered(self, notice: Offered) -> bytes:
        conversation = notice.conversation
        sla = self.queue_sla.get(conversation.queue or "")
        return frame("offer", **offer_view(conversation, notice.expires_at, sla))

    @staticmethod
    def _offer_revoked(notice: OfferRevoked) -> bytes:
        return frame("offer_revoked", conversation_id=notice.conversation_id, reason=notice.reason)

    def _assigned(self, notice: Assigned) -> bytes:
        conversation = notice.conversation
        sla = self.queue_sla.get(conversation.queue or "")
        return frame(
            "conversation", conversation=conversation_view(conversation, self.compose, sla)
        )

    @staticmethod
    def _removed(notice: Removed) -> bytes:
        return frame(
            "conversation_removed", conversation_id=notice.conversation_id, reason=notice.reason
        )

    @staticmethod
    def _closed(notice: Closed) -> bytes:
        return frame(
            "conversation_closed",
            conversation_id=notice.conversation_id,
            disposition=notice.disposition,
        )

    @staticmethod
    def _message_added(notice: MessageAdded) -> bytes:
        event = notice.event
        return frame(
            "message", conversation_id=event.conversation_id, message=live_message_view(event)
        )
