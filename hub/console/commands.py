"""What an authenticated agent's frames do, once the socket's session is checked.

Accepting, declining, transferring and closing go to dispatch; replies and notes are stored
(with the outbox row, in one transaction) and announced on the bus; ``open`` and ``preview``
read. Each returns the frame to answer with, or None when dispatch's own notice is the answer.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from connectors.base import CallError
from hub import uploads
from hub.bus import MESSAGES, OUTBOX, Bus, MessageStored, OutboxReady
from hub.console import timeline
from hub.console.compose import ComposeAdvisor, ReplyRefused
from hub.console.protocol import (
    Accept,
    Auth,
    CallBack,
    CallHold,
    Claim,
    Close,
    Command,
    CustomerNote,
    Decline,
    Note,
    Open,
    Ping,
    Preview,
    ProtocolError,
    Reassign,
    Reply,
    SetPresence,
    Transfer,
    frame,
)
from hub.console.views import conversation_view, message_view
from hub.dispatch.core import Presence
from hub.dispatch.service import DispatchService
from hub.envelope import Attachment
from hub.errors import Forbidden, NotFound
from hub.permissions import Action, ensure
from hub.scope import scope_of
from hub.settings import AgentSettings
from hub.store.audit import conversation_events
from hub.store.records import Conversation
from hub.store.store import Store


class CallControl(Protocol):
    """What agents' commands ask of the hub's calls: ``hub.calls.Calls``, which builds on the
    console's frames and so is named here by what it does, not imported."""

    async def call_back(self, agent: str, conversation: Conversation) -> None: ...

    async def hold(self, agent: str, conversation: Conversation, on: bool) -> None: ...


class Commands:
    """Carries out agents' commands (``hub.console.protocol``) for the console."""

    def __init__(
        self,
        store: Store,
        bus: Bus,
        dispatch: DispatchService,
        compose: ComposeAdvisor,
        agents: dict[str, AgentSettings],
        *,
        upload_secret: bytes,
        clock: Callable[[], float] = time.time,
        dispositions: Sequence[str] = ("resolved",),
        view: Callable[[Conversation], dict[str, Any]] | None = None,
        calls: CallControl | None = None,
    ) -> None:
        """``upload_secret`` checks the tokens of files attached to a reply (hub.uploads);
        ``dispositions`` are the close reasons allowed (the first is the default); ``view``
        renders a held conversation for its agent."""
        self.dispositions = tuple(dispositions)
        self.view = view or (lambda conversation: conversation_view(conversation, compose.view))
        self.store = store
        self.bus = bus
        self.dispatch = dispatch
        self.compose = compose
        self.agents = agents
        self.upload_secret = upload_secret
        self.clock = clock
        self.calls = calls
        # one handler per command type: a lookup, not a chain of isinstance checks
        self._handlers: dict[type[Any], Callable[[str, Any], Awaitable[bytes | None]]] = {
            Ping: self._ping,
            Auth: self._auth,
            SetPresence: self._presence,
            Accept: self._accept,
            Decline: self._decline,
            Reply: self._reply,
            Note: self._reply,
            Transfer: self._transfer,
            Reassign: self._reassign,
            Close: self._close,
            Open: self._open,
            Preview: self._preview,
            CustomerNote: self._customer_note,
            Claim: self._claim,
            CallBack: self._call_back,
            CallHold: self._call_hold,
        }

    async def execute(self, agent: str, command: Command) -> bytes | None:
        """The frame answering ``command`` (None: dispatch's notice answers it)."""
        handler = self._handlers.get(type(command))
        if handler is None:
            raise ProtocolError("unknown_type", f"unhandled frame {type(command).__name__}")
        return await handler(agent, command)

    # -- one handler per command -------------------------------------------------------------

    async def _ping(self, agent: str, command: Ping) -> bytes | None:
        return frame("pong", ref=command.ref)

    async def _auth(self, agent: str, command: Auth) -> bytes | None:
        raise ProtocolError("invalid_state", "already authenticated")

    async def _presence(self, agent: str, command: SetPresence) -> bytes | None:
        await self.dispatch.set_presence(agent, Presence(command.status))
        return frame("presence", status=command.status)

    async def _accept(self, agent: str, command: Accept) -> bytes | None:
        await self.dispatch.accept(agent, command.conversation_id)
        return None  # the conversation frame follows from dispatch

    async def _decline(self, agent: str, command: Decline) -> bytes | None:
        await self.dispatch.decline(agent, command.conversation_id, command.reason)
        return None

    async def _transfer(self, agent: str, command: Transfer) -> bytes | None:
        await self.dispatch.transfer(
            agent,
            command.conversation_id,
            command.note,
            queue=command.queue,
            to_agent=command.agent,
        )
        return None

    async def _reassign(self, agent: str, command: Reassign) -> bytes | None:
        ensure(self.agents[agent].role, Action.REASSIGN)
        await self.dispatch.reassign(agent, command.conversation_id, command.agent)
        return frame("reassigned", conversation_id=command.conversation_id, agent=command.agent)

    async def _close(self, agent: str, command: Close) -> bytes | None:
        disposition = command.disposition or self.dispositions[0]
        if disposition not in self.dispositions:
            raise ProtocolError(
                "bad_disposition", f"disposition must be one of {', '.join(self.dispositions)}"
            )
        await self.dispatch.close(agent, command.conversation_id, disposition)
        return None

    async def _open(self, agent: str, command: Open) -> bytes | None:
        """The agent's own conversation, or read-only one they may read (``conversations.read``:
        supervisors any, agents those of the queues they serve); both with the timeline's
        events. Any other id, existing or not, answers ``not_assigned``."""
        cid = command.conversation_id
        held = self.dispatch.owner(cid) == agent
        try:
            conversation = await self.store.conversation(cid)
        except NotFound:
            raise Forbidden("this conversation is not assigned to you") from None
        if not held:
            settings = self.agents[agent]
            scope = scope_of(settings.role, agent, settings.queues, self.dispatch.queues)
            if not scope.covers(conversation.queue, conversation.assignee):
                raise Forbidden("this conversation is not assigned to you")
        async with self.store.read() as connection:
            rows = await conversation_events(connection, cid, timeline.SHOWN, timeline.LIMIT)
        view = self.view(conversation) if held else conversation_view(conversation)
        view["events"] = timeline.timeline_events(rows)
        view["customer_notes"] = await self.store.customer_notes(conversation.customer_id)
        if not held:
            view["read_only"] = True
            # like a customer read through the API: who looked at what, before it leaves
            await self.store.audit(
                "conversation.viewed", conversation_id=cid, agent=agent, data={"read_only": True}
            )
        return frame("conversation", conversation=view)

    async def _customer_note(self, agent: str, command: CustomerNote) -> bytes | None:
        """Keep a note on the customer; answered with the conversation as ``open`` shows it."""
        if self.dispatch.owner(command.conversation_id) != agent:
            raise Forbidden("this conversation is not assigned to you")
        await self.store.add_customer_note(command.conversation_id, agent, command.text)
        return await self._open(agent, Open(conversation_id=command.conversation_id))

    async def _claim(self, agent: str, command: Claim) -> bytes | None:
        """Record the agent's verdict on a claimed address (no merge: a supervisor merges);
        answered with the conversation as ``open`` shows it."""
        if self.dispatch.owner(command.conversation_id) != agent:
            raise Forbidden("this conversation is not assigned to you")
        await self.store.judge_claim(
            command.conversation_id,
            agent,
            command.kind,
            command.address,
            confirmed=command.verdict == "confirmed",
        )
        return await self._open(agent, Open(conversation_id=command.conversation_id))

    async def _preview(self, agent: str, command: Preview) -> bytes | None:
        if self.dispatch.owner(command.conversation_id) != agent:
            raise Forbidden("this conversation is not assigned to you")
        conversation = await self.store.conversation(command.conversation_id)
        return frame(
            "preview",
            conversation_id=command.conversation_id,
            characters=len(command.text),
            **self.compose.preview(conversation, command.text),
        )

    async def _call_back(self, agent: str, command: CallBack) -> bytes | None:
        if self.dispatch.owner(command.conversation_id) != agent:
            raise Forbidden("this conversation is not assigned to you")
        if self.calls is None:
            raise ProtocolError("call_failed", "this hub places no calls")
        conversation = await self.store.conversation(command.conversation_id)
        try:
            await self.calls.call_back(agent, conversation)
        except CallError as exc:
            raise ProtocolError("call_failed", str(exc)) from None
        return None  # the call's progress follows as `call` frames

    async def _call_hold(self, agent: str, command: CallHold) -> bytes | None:
        if self.dispatch.owner(command.conversation_id) != agent:
            raise Forbidden("this conversation is not assigned to you")
        if self.calls is None:
            raise ProtocolError("call_failed", "this hub places no calls")
        conversation = await self.store.conversation(command.conversation_id)
        try:
            await self.calls.hold(agent, conversation, command.hold)
        except CallError as exc:
            raise ProtocolError("call_failed", str(exc)) from None
        return None  # a `call` frame (held / resumed) follows

    def _uploads(self, agent: str, tokens: list[str]) -> tuple[Attachment, ...]:
        """The files an agent uploaded for this reply (``POST /api/uploads``)."""
        if len(tokens) > uploads.MAX_PER_REPLY:
            raise ReplyRefused("bad_attachment", f"at most {uploads.MAX_PER_REPLY} files per reply")
        try:
            return tuple(
                uploads.verify(self.upload_secret, token, agent, self.clock()) for token in tokens
            )
        except uploads.BadUpload as exc:
            raise ReplyRefused("bad_attachment", str(exc)) from None

    async def _reply(self, agent: str, command: Reply | Note) -> bytes:
        note = isinstance(command, Note)
        if self.dispatch.owner(command.conversation_id) != agent:
            raise Forbidden("this conversation is not assigned to you")
        text, template, via = command.text, None, None
        files: tuple[Attachment, ...] = ()
        if isinstance(command, Reply):
            # only another channel's route needs the customer's identities (the whole load)
            load = (
                self.store.conversation
                if command.via is not None
                else self.store.conversation_for_reply
            )
            conversation = await load(command.conversation_id)
            files = self._uploads(agent, command.attachments)
            if command.via is not None:  # answered on another channel the customer is known on
                if command.template is not None:
                    raise ReplyRefused(
                        "bad_via", "templates are sent on the conversation's channel"
                    )
                via = self.compose.route(conversation, command.via, command.to)
            else:
                text, template = self.compose.check(
                    conversation, command.text, command.template, command.variables
                )
            if files:
                self.compose.check_files(via.inbox if via else conversation.inbox)
        stored = await self.store.add_reply(
            command.conversation_id,
            agent=agent,
            client_id=command.client_id,
            text=text,
            note=note,
            template=template,
            via=(via.inbox, via.channel, via.recipient) if via is not None else None,
            files=files,
        )
        message = stored.message
        if not note:
            self.dispatch.replied(agent, command.conversation_id)
        if not stored.duplicate:
            await self.bus.publish(
                MESSAGES,
                MessageStored(
                    conversation_id=command.conversation_id,
                    message_id=message.id,
                    direction="outbound",
                    kind=message.kind,
                    status="assigned",
                    assignee=agent,
                    text=message.text,
                    author=agent,
                    created_at=message.created_at,
                ),
            )
            if not note:
                await self.bus.publish(OUTBOX, OutboxReady(message_id=message.id))
        return frame(
            "reply_ack",
            client_id=command.client_id,
            conversation_id=command.conversation_id,
            duplicate=stored.duplicate,
            message=message_view(message),
        )
