"""Agent login: argon2 password hashes from hub.yaml, and slowing down password guessing.

Three brakes, all in memory of this process (docs/api.md, "Login throttling"):

- per client address: at most 10 failures a minute;
- per account (also for names nobody has, so guessing does not reveal who exists): after 5
  failures each further one doubles a waiting time, from 2 seconds up to 10 minutes; a success
  clears it, an hour without failures forgets it;
- a browser that logged in as this agent before carries a signed *device* cookie: its attempts
  are slowed on their own, so an attacker who keeps an account slowed down does not lock its
  owner out on a known device.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from hub.errors import AuthError, TooManyAttempts
from hub.settings import AgentSettings

_hasher = PasswordHasher()
# verifying against this keeps the time of "unknown user" equal to "wrong password"
_DUMMY_HASH = _hasher.hash("channelhub-dummy-password")

DEVICE_COOKIE = "channelhub_device"
SECURE_DEVICE_COOKIE = "__Host-channelhub_device"
DEVICE_TTL = 180 * 86400.0


def hash_password(password: str) -> str:
    """An argon2id hash for hub.yaml's ``password_hash``."""
    return _hasher.hash(password)


def verify_password(hashed: str, password: str) -> bool:
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

    def retry_after(self, client: str, now: float) -> float:
        """Seconds until ``client`` may try again (0: now)."""
        failures = self._failures.get(client)
        if not failures:
            return 0.0
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[client]
            return 0.0
        if len(failures) < self.limit:
            return 0.0
        return failures[-self.limit] + self.window - now

    def failed(self, client: str, now: float) -> None:
        self._failures.setdefault(client, deque()).append(now)


@dataclass(slots=True)
class _Failures:
    count: int
    last: float
    until: float


class Backoff:
    """Exponential backoff per key: ``free`` failures, then ``base`` seconds doubling to ``cap``.

    Attempts while a key waits are refused without being counted, so the owner trying again
    does not make it worse. Keys without a failure for ``forget_after`` are forgotten; at most
    ``max_keys`` are kept (the least recently failed go first), which bounds the memory an
    attacker spraying made-up names can take.
    """

    def __init__(
        self,
        *,
        free: int = 5,
        base: float = 2.0,
        cap: float = 600.0,
        forget_after: float = 3600.0,
        max_keys: int = 50_000,
    ) -> None:
        self.free = free
        self.base = base
        self.cap = cap
        self.forget_after = forget_after
        self.max_keys = max_keys
        self._keys: OrderedDict[str, _Failures] = OrderedDict()

    def wait(self, key: str, now: float) -> float:
        """Seconds ``key`` must wait before its next attempt (0: now)."""
        entry = self._keys.get(key)
        if entry is None:
            return 0.0
        if now - entry.last >= self.forget_after:
            del self._keys[key]
            return 0.0
        return max(0.0, entry.until - now)

    def failed(self, key: str, now: float) -> None:
        entry = self._keys.pop(key, None)
        if entry is None or now - entry.last >= self.forget_after:
            entry = _Failures(0, now, now)
        entry.count += 1
        entry.last = now
        if entry.count > self.free:
            delay = min(self.cap, self.base * 2.0 ** min(entry.count - self.free - 1, 30))
            entry.until = now + delay
        self._keys[key] = entry
        while len(self._keys) > self.max_keys:
            self._keys.popitem(last=False)

    def succeeded(self, key: str) -> None:
        self._keys.pop(key, None)


class DeviceTokens:
    """Signed "this browser logged in as AGENT before" tokens (OWASP's device cookies)."""

    def __init__(self, secret: bytes, ttl: float = DEVICE_TTL) -> None:
        self._secret = secret
        self.ttl = ttl

    def _mac(self, username: str, issued: int) -> str:
        message = f"device:{username}:{issued}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:32]

    def issue(self, username: str, now: float) -> str:
        issued = int(now)
        return f"{issued}.{self._mac(username, issued)}"

    def check(self, token: str | None, username: str, now: float) -> str | None:
        """The device's key for throttling if ``token`` is ours for ``username`` and fresh."""
        if not token or len(token) > 64:
            return None
        issued_text, _, mac = token.partition(".")
        if not issued_text.isdigit():
            return None
        issued = int(issued_text)
        if not hmac.compare_digest(mac, self._mac(username, issued)):
            return None
        if not issued - 60 <= now <= issued + self.ttl:
            return None
        return mac


class Authenticator:
    def __init__(
        self,
        agents: Mapping[str, AgentSettings],
        *,
        device_secret: bytes,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.agents = agents
        self.clock = clock
        self.limiter = LoginLimiter()
        self.accounts = Backoff()
        self.devices = Backoff()
        self.device_tokens = DeviceTokens(device_secret)

    async def check_password(
        self, username: str, password: str, client: str, device: str | None = None
    ) -> AgentSettings:
        """The agent for valid credentials; :class:`TooManyAttempts` while slowed down,
        :class:`AuthError` for anything else."""
        now = self.clock()
        if wait := self.limiter.retry_after(client, now):
            raise TooManyAttempts("too many failed logins from your address", wait)
        device_key = self.device_tokens.check(device, username, now)
        throttle, key = (self.devices, device_key) if device_key else (self.accounts, username)
        if wait := throttle.wait(key, now):
            raise TooManyAttempts("too many failed logins for this account", wait)
        agent = self.agents.get(username)
        hashed = agent.password_hash.get_secret_value() if agent else _DUMMY_HASH
        # argon2 takes tens of milliseconds of CPU by design: keep it off the event loop
        ok = await asyncio.to_thread(verify_password, hashed, password)
        if agent is None or not ok:
            self.limiter.failed(client, now)
            throttle.failed(key, now)
            raise AuthError("unknown user or wrong password")
        throttle.succeeded(key)
        return agent

    def device_token(self, username: str) -> str:
        """A fresh device token for a browser that just logged in as ``username``."""
        return self.device_tokens.issue(username, self.clock())


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
