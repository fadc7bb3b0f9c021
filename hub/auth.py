"""Agent login: argon2 password hashes from hub.yaml, opaque session tokens in the store."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Mapping

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from hub.errors import AuthError
from hub.settings import AgentSettings

SESSION_COOKIE = "channelhub_session"

_hasher = PasswordHasher()
# verifying against this keeps the time of "unknown user" equal to "wrong password"
_DUMMY_HASH = _hasher.hash("channelhub-dummy-password")


def hash_password(password: str) -> str:
    """An argon2id hash for hub.yaml's ``password_hash``."""
    return _hasher.hash(password)


def _verify(hashed: str, password: str) -> bool:
    try:
        return _hasher.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False


class LoginLimiter:
    """At most ``limit`` failed logins per client address in ``window`` seconds."""

    def __init__(self, limit: int = 10, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, deque[float]] = {}

    def allowed(self, client: str, now: float) -> bool:
        failures = self._failures.get(client)
        if not failures:
            return True
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[client]
        return len(failures) < self.limit

    def failed(self, client: str, now: float) -> None:
        self._failures.setdefault(client, deque()).append(now)


class Authenticator:
    def __init__(self, agents: Mapping[str, AgentSettings]) -> None:
        self.agents = agents
        self.limiter = LoginLimiter()

    async def check_password(self, username: str, password: str, client: str) -> AgentSettings:
        """The agent for valid credentials; AuthError otherwise (also when rate limited)."""
        now = time.monotonic()
        if not self.limiter.allowed(client, now):
            raise AuthError("too many failed logins; wait a minute")
        agent = self.agents.get(username)
        hashed = agent.password_hash.get_secret_value() if agent else _DUMMY_HASH
        # argon2 takes tens of milliseconds of CPU by design: keep it off the event loop
        ok = await asyncio.to_thread(_verify, hashed, password)
        if agent is None or not ok:
            self.limiter.failed(client, now)
            raise AuthError("unknown user or wrong password")
        return agent
