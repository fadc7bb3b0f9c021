"""Phone calls between dispatch and the voice connectors: when an agent takes a call, the
connector brings the caller to the agent's device; a "call back" does the same the other way.

Dispatch knows nothing about calls: :class:`CallingAudience` stands between it and the
console, and when an ``Assigned`` notice is about a conversation of a channel with calls
(``capabilities.calls``) it asks that channel's connector to connect the agent, in the
background, so no other notice waits for the provider. What fails is told to the agent as an
``error`` frame (``call_failed``) and lands in the call's timeline.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from connectors.base import AgentDevice, CallError, Connector
from hub.console.protocol import error_frame
from hub.dispatch.notices import Assigned, Audience, Notice
from hub.settings import AgentSettings
from hub.store.records import Conversation

log = logging.getLogger(__name__)

Send = Callable[[str, bytes], Awaitable[int]]


class Calls:
    """The hub's side of calls: which connector, which device, and telling the agent."""

    def __init__(
        self,
        connectors: Mapping[str, Connector],
        agents: Mapping[str, AgentSettings],
        send: Send,
    ) -> None:
        self.connectors = connectors
        self.agents = agents
        self.send = send
        self._tasks: set[asyncio.Task[None]] = set()

    def connector_for(self, conversation: Conversation) -> Connector | None:
        connector = self.connectors.get(conversation.inbox)
        if connector is None or not connector.capabilities.calls:
            return None
        return connector

    def device(self, agent: str) -> AgentDevice:
        settings = self.agents.get(agent)
        if settings is None or not settings.phone:
            raise CallError(
                f"agent {agent} has no phone in hub.yaml (agents[].phone: a number or sip: "
                "address): the call cannot be put through",
                code="no_device",
            )
        return AgentDevice(agent=agent, address=settings.phone)

    async def connect(self, agent: str, conversation: Conversation) -> None:
        """Bring the call of ``conversation`` to ``agent``, who just took it."""
        connector = self.connector_for(conversation)
        if connector is None or conversation.thread_key is None:
            return
        try:
            await connector.connect_agent(
                conversation.id, conversation.thread_key, self.device(agent)
            )
        except CallError as exc:
            log.warning("call of %s not put through to %s: %s", conversation.id, agent, exc)
            await self.send(agent, error_frame("call_failed", str(exc), conversation.id))
        except Exception:
            log.exception("call of %s not put through to %s", conversation.id, agent)
            await self.send(
                agent,
                error_frame("call_failed", "the call could not be put through", conversation.id),
            )

    async def call_back(self, agent: str, conversation: Conversation) -> None:
        """Call the conversation's customer and ``agent`` and bridge them; CallError why not."""
        connector = self.connector_for(conversation)
        if connector is None or conversation.thread_key is None:
            raise CallError("this conversation's channel cannot place calls", code="not_a_call")
        if conversation.recipient is None or conversation.recipient.kind != "phone":
            raise CallError("the customer has no phone number here", code="not_a_number")
        await connector.call_back(
            conversation.id, conversation.thread_key, conversation.recipient, self.device(agent)
        )

    async def hold(self, agent: str, conversation: Conversation, on: bool) -> None:
        """Hold or resume the caller of ``conversation``, which ``agent`` holds."""
        connector = self.connector_for(conversation)
        if connector is None or conversation.thread_key is None:
            raise CallError("this conversation is not a call", code="not_a_call")
        await connector.hold_call(conversation.id, conversation.thread_key, agent, on)

    def spawn_connect(self, agent: str, conversation: Conversation) -> None:
        task = asyncio.create_task(self.connect(agent, conversation), name="call-connect")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class CallingAudience:
    """Dispatch's audience that also puts a taken call through (see the module)."""

    def __init__(self, inner: Audience, calls: Calls) -> None:
        self.inner = inner
        self.calls = calls

    async def tell(self, agent: str, notice: Notice) -> None:
        await self.inner.tell(agent, notice)
        if isinstance(notice, Assigned) and self.calls.connector_for(notice.conversation):
            self.calls.spawn_connect(agent, notice.conversation)
