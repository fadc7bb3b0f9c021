"""The agent websocket ``/ws/agent``: authenticate, snapshot, then commands and live events."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import secrets
import time
from collections.abc import Callable, Collection
from typing import Any, Protocol

from aiohttp import WSMsgType, web

from hub.bus import DELIVERIES, Bus, CallUpdated, DeliveryUpdated, Subscription
from hub.console import protocol
from hub.console.commands import CallControl, Commands
from hub.console.compose import ComposeAdvisor, ReplyRefused
from hub.console.link import AgentLink, Dropped, SendBudget
from hub.console.protocol import Auth, Command, Ping, ProtocolError, error_frame, frame
from hub.console.registry import AgentConnections
from hub.console.views import (
    Sockets,
    call_frame,
    conversation_view,
    delivery_frame,
    offer_view,
    queue_state_frame,
)
from hub.dispatch.service import DispatchService
from hub.errors import (
    DispatchUnavailable,
    Forbidden,
    HubError,
    InvalidState,
    NotAllowed,
    NotFound,
    StoreUnavailable,
)
from hub.metrics import Metrics
from hub.permissions import Action, may
from hub.sessions import Ended, Principal, Sessions, request_token
from hub.settings import AgentSettings, CannedResponse
from hub.store.records import Conversation
from hub.store.store import Store
from hub.websec import origin_allowed

log = logging.getLogger(__name__)

AUTH_TIMEOUT = 10.0
SESSION_PURGE_EVERY = 3600.0  # forget expired session rows this often

_ENDED_TEXT = {
    Ended.LOGGED_OUT: "logged out; log in again",
    Ended.EXPIRED: "the session expired; log in again",
    Ended.CREDENTIALS_CHANGED: "the password changed; log in again",
    Ended.AGENT_REMOVED: "this agent is no longer configured",
    Ended.REVOKED: "the session was revoked; log in again",
}


def _ended_frame(code: str, reason: Ended) -> bytes:
    return frame("error", code=code, message=_ENDED_TEXT[reason], ref=None, reason=reason.value)


class _Unchecked(enum.Enum):
    UNCHECKED = "unchecked"


_UNCHECKED = _Unchecked.UNCHECKED


class _Verdict(enum.Enum):
    LIVE = "live"
    ENDED = "ended"
    UNCHECKED = "unchecked"  # the store could not say


HARD_FRAME_LIMIT = 1024 * 1024  # beyond this aiohttp closes with 1009; below it we answer
DEFAULT_DISPOSITIONS = ("resolved", "no-action", "escalated")


class Seat(Protocol):
    """Dispatch on another node (``hub.cluster.relay.Relay``): the distributed mode."""

    async def attach(self, agent: str) -> list[bytes]: ...

    async def detach(self, agent: str) -> None: ...

    async def command(self, agent: str, text: str) -> list[bytes]: ...


class Console:
    """Serves agents' websockets: sign-in, the snapshot, their commands (``Commands``), and
    delivery reports; dispatch's notices reach the same sockets through ``connections``."""

    def __init__(
        self,
        store: Store,
        bus: Bus,
        dispatch: DispatchService,
        connections: AgentConnections,
        agents: dict[str, AgentSettings],
        metrics: Metrics,
        allowed_origins: tuple[str, ...],
        compose: ComposeAdvisor | None = None,
        *,
        sessions: Sessions | None = None,
        session_check_interval: float = 5.0,
        compress: bool = False,
        upload_secret: bytes = b"",
        clock: Callable[[], float] = time.time,
        budget: SendBudget | None = None,
        dispositions: tuple[str, ...] = DEFAULT_DISPOSITIONS,
        wrap_up: float = 0.0,
        canned: tuple[CannedResponse, ...] = (),
        calls: CallControl | None = None,
    ) -> None:
        """``dispositions`` are the close reasons agents may choose (the first is the default),
        ``wrap_up`` the seconds after a close before new work, ``canned`` the canned
        responses (each agent gets those of the queues it serves)."""
        self.canned = canned
        self.dispositions = dispositions
        self.wrap_up = wrap_up
        self.budget = budget or SendBudget()
        self.upload_secret = upload_secret or secrets.token_bytes(32)
        self.clock = clock
        self.sessions = sessions or Sessions(store, agents, clock=clock)
        self.sessions.on_end(self._sessions_ended)
        self.session_check_interval = session_check_interval
        self.compress = compress
        # every authenticated socket and the session it runs on; a socket whose session ended
        # leaves this map (and the registry) at once, before its close handshake
        self._live: dict[AgentLink, Principal] = {}
        # when the store last confirmed each socket's session: frames within
        # session_check_interval of it run without reading the store again
        self._confirmed: dict[AgentLink, float] = {}
        self.store = store
        self.compose = compose or ComposeAdvisor({})
        self.bus = bus
        self.dispatch = dispatch
        self.connections = connections
        self.agents = agents
        self.metrics = metrics
        self.allowed_origins = allowed_origins
        self.commands = Commands(
            store,
            bus,
            dispatch,
            self.compose,
            agents,
            upload_secret=self.upload_secret,
            clock=clock,
            dispositions=dispositions,
            view=self.conversation_view,
            calls=calls,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._subscription: Subscription | None = None
        #: the distributed mode: agents' frames run at the dispatch owner, through this
        self.relay: Seat | None = None
        #: where dispatch's frames go (the distributed mode: to whichever node holds a socket)
        self.route: Sockets = connections

    def start(self) -> None:
        self._subscription = self.bus.subscribe(DELIVERIES)  # broadcast: every node's agents
        self._tasks = [
            asyncio.create_task(self._follow_deliveries(), name="console-deliveries"),
            asyncio.create_task(self._watch_sessions(), name="console-sessions"),
        ]

    async def stop(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _follow_deliveries(self) -> None:
        assert self._subscription is not None
        async for received in self._subscription:
            event = received.event
            if isinstance(event, DeliveryUpdated):
                agent = self.dispatch.owner(event.conversation_id)
                if agent is not None:
                    await self.route.send(agent, delivery_frame(event))
            elif isinstance(event, CallUpdated):
                agent = self.dispatch.owner(event.conversation_id)
                if agent is not None:
                    await self.route.send(agent, call_frame(event))
            await received.ack()

    # -- the websocket ---------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if not origin_allowed(request, self.allowed_origins):
            raise web.HTTPForbidden(text="origin not allowed")
        socket = web.WebSocketResponse(
            max_msg_size=HARD_FRAME_LIMIT, heartbeat=30.0, compress=self.compress
        )
        await socket.prepare(request)
        link = AgentLink(
            socket,
            request.transport,
            self.budget,
            name=str(request.remote),
            on_drop=self._dropped,
        )
        try:
            await self._serve(request, link)
        finally:
            await link.finish()  # queued frames and a requested close go out, or it is dropped
        return socket

    def _dropped(self, reason: Dropped) -> None:
        self.metrics.agent_sockets_dropped.labels(str(reason)).inc()

    async def _serve(self, request: web.Request, link: AgentLink) -> None:
        principal = await self._authenticate(request, link)
        if principal is None:
            return
        agent = principal.id
        link.name = f"{agent}@{request.remote}"
        self._live[link] = principal
        self._confirmed[link] = self.clock()
        self.connections.add(agent, link)
        self.metrics.agents_connected.set(sum(1 for a in self.agents if self.connections.count(a)))
        try:
            try:
                await self._greet(link, principal)
            except (StoreUnavailable, DispatchUnavailable) as exc:  # no snapshot: out of sync
                log.error("no snapshot for %s: %s", agent, exc)
                what = "dispatch" if isinstance(exc, DispatchUnavailable) else "the store"
                link.send(error_frame("unavailable", f"{what} is unavailable; connect again later"))
                link.close(1013, b"store unavailable; try again later")
                return
            async for message in link.socket:
                if message.type is WSMsgType.TEXT:
                    if not await self._on_frame(agent, link, message.data):
                        break
                elif message.type is WSMsgType.BINARY:
                    verdict = await self._session_verdict(link, None)
                    if verdict is _Verdict.ENDED:
                        break
                    if verdict is _Verdict.LIVE:
                        link.send(error_frame("bad_frame", "frames must be text JSON"))
                elif message.type is WSMsgType.ERROR:
                    break
        finally:
            self._live.pop(link, None)
            self._confirmed.pop(link, None)
            self.connections.remove(agent, link)
            self.metrics.agents_connected.set(
                sum(1 for a in self.agents if self.connections.count(a))
            )
            with contextlib.suppress(HubError):
                if self.relay is not None:
                    await self.relay.detach(agent)
                else:
                    await self.dispatch.disconnected(agent)

    async def _greet(self, link: AgentLink, principal: Principal) -> None:
        """``hello``, then the ``snapshot`` (and supervisors' ``queue_state``)."""
        agent = principal.id
        link.send(
            frame(
                "hello",
                protocol=protocol.PROTOCOL_VERSION,
                agent={
                    "id": agent,
                    "name": principal.agent.name,
                    "role": principal.role,
                    "supervisor": may(principal.role, Action.VIEW_QUEUES),
                },
                # what the console offers in its menus: close reasons, transfer targets
                dispositions=list(self.dispositions),
                queues=list(self.dispatch.queues),
                agents=[{"id": a.id, "name": a.name} for a in self.agents.values()],
                wrap_up=self.wrap_up,
                canned=self._canned_for(principal.agent),
            ),
        )
        if self.relay is not None:
            frames = await self.relay.attach(agent)
        else:
            await self.dispatch.connected(agent)
            frames = await self.state_frames(agent)
        for data in frames:
            link.send(data)

    async def state_frames(self, agent: str) -> list[bytes]:
        """What a new socket of a connected agent gets: the ``snapshot`` (and supervisors'
        ``queue_state``)."""
        frames = [await self._snapshot(agent)]
        settings = self.agents.get(agent)
        if settings is not None and may(settings.role, Action.VIEW_QUEUES):
            frames.append(queue_state_frame(self.dispatch.queue_state()))
        return frames

    def _canned_for(self, agent: AgentSettings) -> list[dict[str, Any]]:
        """The canned responses of the queues the agent serves (all queues: every one)."""
        serves = set(agent.queues)
        return [
            {"name": r.name, "text": r.text, "queues": list(r.queues)}
            for r in self.canned
            if not r.queues or not serves or serves & set(r.queues)
        ]

    async def _authenticate(self, request: web.Request, link: AgentLink) -> Principal | None:
        token = request_token(request)
        found = await self._lookup(link, token) if token else None
        while found is None:
            try:
                message = await link.socket.receive(timeout=AUTH_TIMEOUT)
            except TimeoutError:
                link.send(error_frame("auth_timeout", "authenticate first"))
                link.close(4401, b"authentication timeout")
                return None
            if message.type is not WSMsgType.TEXT:
                link.close(4401, b"authentication required")
                return None
            try:
                command = protocol.parse_command(message.data)
            except ProtocolError as exc:
                link.send(error_frame(exc.code, exc.message))
                continue
            if not isinstance(command, Auth) or not command.token:
                link.send(error_frame("not_authenticated", "send an auth frame with a token"))
                continue
            found = await self._lookup(link, command.token)
        if found is _UNCHECKED:
            link.close(1013, b"store unavailable; try again later")
            return None
        if isinstance(found, Ended):
            link.send(_ended_frame("auth_failed", found))
            link.close(4401, b"authentication failed")
            return None
        assert isinstance(found, Principal)
        return found

    async def _lookup(self, link: AgentLink, token: str) -> Principal | Ended | _Unchecked:
        try:
            return await self.sessions.lookup(token)
        except StoreUnavailable as exc:
            log.error("cannot check an agent session: %s", exc)
            link.send(error_frame("unavailable", "the store is unavailable; connect again later"))
            return _UNCHECKED

    # -- session revocation -----------------------------------------------------------------

    async def _session_verdict(self, link: AgentLink, ref: str | None) -> _Verdict:
        """Whether the socket's session still counts before acting on a frame (``ref``: its
        client or conversation id); end the socket if it is gone.

        Sessions ended in this process end their sockets at once (``_sessions_ended``) and an
        expiry is judged here from the clock; what only the store knows (a logout by another
        hub process) is re-read when the last confirmation is older than
        ``session_check_interval``, so such a session is refused within that bound without a
        read per frame. A store that cannot answer skips the frame (``unavailable`` with that
        ``ref``), never runs it."""
        principal = self._live.get(link)
        if principal is None:  # ended while the frame was on its way
            return _Verdict.ENDED
        now = self.clock()
        if principal.expires_at <= now:
            self._end(link, Ended.EXPIRED)
            return _Verdict.ENDED
        if now - self._confirmed.get(link, float("-inf")) < self.session_check_interval:
            return _Verdict.LIVE
        try:
            verdict = (await self.sessions.check([principal.token_hash]))[principal.token_hash]
        except StoreUnavailable as exc:
            log.error("cannot check the session of %s: %s", principal.id, exc)
            link.send(
                error_frame("unavailable", "the store is unavailable; nothing was applied", ref)
            )
            return _Verdict.UNCHECKED
        if isinstance(verdict, Ended):
            self._end(link, verdict)
            return _Verdict.ENDED
        self._confirmed[link] = now
        return _Verdict.LIVE

    async def _sessions_ended(self, token_hashes: Collection[str], reason: Ended) -> None:
        ended = set(token_hashes)
        for link, principal in list(self._live.items()):
            if principal.token_hash in ended:
                self._end(link, reason)

    async def _watch_sessions(self) -> None:
        """Close sockets whose session expired, was logged out elsewhere or no longer matches
        the agent's credentials, within ``session_check_interval``."""
        purged_at = 0.0
        while True:
            await asyncio.sleep(self.session_check_interval)
            try:
                live = dict(self._live)
                if live:
                    checked_at = self.clock()
                    verdicts = await self.sessions.check({p.token_hash for p in live.values()})
                    for link, principal in live.items():
                        verdict = verdicts[principal.token_hash]
                        if link not in self._live:
                            continue
                        if isinstance(verdict, Ended):
                            self._end(link, verdict)
                        else:
                            self._confirmed[link] = max(
                                self._confirmed.get(link, checked_at), checked_at
                            )
                if self.clock() - purged_at >= SESSION_PURGE_EVERY:
                    purged_at = self.clock()
                    await self.store.purge_sessions(purged_at)
            except HubError as exc:
                log.warning("checking agent sessions failed (retrying): %s", exc)
            except Exception:
                log.exception("checking agent sessions failed (retrying)")

    def _end(self, link: AgentLink, reason: Ended) -> None:
        """Stop sending to the socket now; tell the client why and close it (4401) from its
        own writer, so a client slow to answer the close holds nobody up."""
        principal = self._live.pop(link, None)
        self._confirmed.pop(link, None)
        if principal is None:
            return
        self.connections.remove(principal.id, link)
        log.info("agent %s: session ended (%s), closing the console", principal.id, reason)
        link.send(_ended_frame("session_ended", reason))
        link.close(4401, f"session ended: {reason}".encode())

    async def _snapshot(self, agent: str) -> bytes:
        offers = []
        for conversation_id, expires_at in self.dispatch.offers_for(agent):
            conversation = await self.store.conversation(conversation_id)
            sla = self.dispatch.queue_sla.get(conversation.queue or "")
            offers.append(offer_view(conversation, expires_at, sla))
        conversations = [
            self.conversation_view(await self.store.conversation(conversation_id))
            for conversation_id in self.dispatch.assigned_to(agent)
        ]
        return frame(
            "snapshot",
            offers=offers,
            conversations=conversations,
            presence=self.dispatch.presence_of(agent),
        )

    def conversation_view(self, conversation: Conversation) -> dict[str, Any]:
        """A held conversation as its agent sees it: with what may be sent and its SLA."""
        return conversation_view(
            conversation,
            self.compose.view,
            self.dispatch.queue_sla.get(conversation.queue or ""),
        )

    async def _on_frame(self, agent: str, link: AgentLink, data: str) -> bool:
        """Answer one text frame; False when the socket's session turned out to be over."""
        ref: str | None = None
        try:
            command: Command | ProtocolError = protocol.parse_command(data)
            ref = getattr(command, "client_id", None) or getattr(command, "conversation_id", None)
        except ProtocolError as exc:
            command = exc
        verdict = await self._session_verdict(link, ref)
        if verdict is not _Verdict.LIVE:
            return verdict is _Verdict.UNCHECKED
        if self.relay is not None and not isinstance(command, ProtocolError | Ping):
            try:
                answers = await self.relay.command(agent, data)
            except DispatchUnavailable as exc:
                log.error("no answer from dispatch for %s: %s", agent, exc)
                answers = [error_frame("unavailable", "dispatch is unavailable; retry", ref)]
            for answer in answers:
                link.send(answer)
            return True
        reply = await self._execute(agent, command, ref)
        if reply is not None:
            link.send(reply)
        return True

    async def run(self, agent: str, text: str) -> bytes | None:
        """A frame an agent's socket on another node sent (its session checked there)."""
        ref: str | None = None
        try:
            command: Command | ProtocolError = protocol.parse_command(text)
            ref = getattr(command, "client_id", None) or getattr(command, "conversation_id", None)
        except ProtocolError as exc:
            command = exc
        return await self._execute(agent, command, ref)

    async def _execute(
        self, agent: str, command: Command | ProtocolError, ref: str | None
    ) -> bytes | None:
        """Carry ``command`` out; the frame answering it (errors as error frames)."""
        try:
            if isinstance(command, ProtocolError):
                raise command
            reply = await self.commands.execute(agent, command)
        except ProtocolError as exc:
            reply = error_frame(exc.code, exc.message, ref)
        except NotFound as exc:
            reply = error_frame("not_found", str(exc), ref)
        except NotAllowed as exc:
            reply = error_frame("not_allowed", str(exc), ref)
        except Forbidden as exc:
            reply = error_frame("not_assigned", str(exc), ref)
        except InvalidState as exc:
            reply = error_frame("invalid_state", str(exc), ref)
        except ReplyRefused as exc:
            reply = error_frame(exc.code, exc.message, ref)
        except StoreUnavailable as exc:
            log.error("store unavailable for %s: %s", agent, exc)
            reply = error_frame("unavailable", "the store is unavailable; retry", ref)
        except Exception:
            log.exception("agent frame from %s failed", agent)
            reply = error_frame("internal", "internal error; the frame was not applied", ref)
        return reply
