"""Agent sessions: which token belongs to whom, and when a session stops counting.

A session is valid while its row exists, has not expired, its agent is still configured, and
the agent's password hash is the one it was made with (the row keeps a fingerprint of it). The
decision is the pure :func:`judge`; :class:`Sessions` adds the store and tells listeners (the
agent websocket) which sessions ended, so open sockets close within seconds.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum

from aiohttp import web

from hub.permissions import Role
from hub.settings import AgentSettings
from hub.store.records import StoredSession
from hub.store.sessions import token_hash
from hub.store.store import Store

#: the cookie's name over plain HTTP, and over HTTPS (the prefix makes browsers insist on
#: Secure, Path=/ and no Domain, so a sibling subdomain cannot plant or read it)
SESSION_COOKIE = "channelhub_session"
SECURE_SESSION_COOKIE = "__Host-channelhub_session"


class Ended(StrEnum):
    """Why a session no longer counts (sent to the client in the ``session_ended`` error)."""

    LOGGED_OUT = "logged_out"
    EXPIRED = "expired"
    CREDENTIALS_CHANGED = "credentials_changed"
    AGENT_REMOVED = "agent_removed"
    REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is behind a request or a socket, through which session."""

    agent: AgentSettings
    token_hash: str
    expires_at: float

    @property
    def id(self) -> str:
        return self.agent.id

    @property
    def role(self) -> Role:
        return self.agent.role


def credential_fingerprint(agent: AgentSettings) -> str:
    """A short digest of the agent's password hash: changes whenever the password does."""
    hashed = agent.password_hash.get_secret_value()
    return hashlib.sha256(f"channelhub-credential:{hashed}".encode()).hexdigest()[:32]


def judge(
    row: StoredSession | None, agents: Mapping[str, AgentSettings], now: float
) -> Principal | Ended:
    """The principal of a stored session, or why it no longer counts."""
    if row is None:
        return Ended.LOGGED_OUT
    if row.expires_at <= now:
        return Ended.EXPIRED
    agent = agents.get(row.agent)
    if agent is None:
        return Ended.AGENT_REMOVED
    if row.credential != credential_fingerprint(agent):
        return Ended.CREDENTIALS_CHANGED
    return Principal(agent, row.token_hash, row.expires_at)


def request_token(request: web.Request) -> str | None:
    """The session token of a request: either cookie name, else ``Authorization: Bearer``."""
    for name in (SECURE_SESSION_COOKIE, SESSION_COOKIE):
        if token := request.cookies.get(name):
            return token
    header = request.headers.get("Authorization", "")
    return (header[7:] or None) if header.startswith("Bearer ") else None


EndListener = Callable[[Collection[str], Ended], Awaitable[None]]


class Sessions:
    """Create, resolve and end sessions; listeners hear about every session ended here."""

    def __init__(
        self,
        store: Store,
        agents: Mapping[str, AgentSettings],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.agents = agents
        self.clock = clock
        self._listeners: list[EndListener] = []

    def on_end(self, listener: EndListener) -> None:
        self._listeners.append(listener)

    async def create(self, agent: AgentSettings, ttl: float) -> str:
        return await self.store.create_session(agent.id, ttl, credential_fingerprint(agent))

    async def lookup(self, token: str) -> Principal | Ended:
        """The principal of a session token, or why it does not count."""
        key = token_hash(token)
        return (await self.check([key]))[key]

    async def resolve(self, token: str | None) -> Principal | None:
        """The principal of a live session token, or None."""
        if not token:
            return None
        result = await self.lookup(token)
        return result if isinstance(result, Principal) else None

    async def check(self, token_hashes: Collection[str]) -> dict[str, Principal | Ended]:
        """Judge several sessions with one read (the websocket's periodic re-check)."""
        rows = await self.store.sessions(token_hashes)
        now = self.clock()
        return {key: judge(rows.get(key), self.agents, now) for key in token_hashes}

    async def end(self, token: str, reason: Ended = Ended.LOGGED_OUT) -> None:
        """Log one session out (unknown tokens are ignored)."""
        removed = await self.store.delete_sessions(token_hash=token_hash(token), reason=reason)
        await self._tell(removed or [token_hash(token)], reason)

    async def end_all(self, agent: str, reason: Ended = Ended.REVOKED) -> int:
        """Log every session of ``agent`` out; returns how many there were."""
        removed = await self.store.delete_sessions(agent=agent, reason=reason)
        await self._tell(removed, reason)
        return len(removed)

    async def _tell(self, token_hashes: Collection[str], reason: Ended) -> None:
        for listener in self._listeners:
            await listener(token_hashes, reason)
