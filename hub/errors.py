"""The hub's one error hierarchy: callers catch these, users read their messages.

``ConfigError`` (an invalid ``hub.yaml`` or ``rules.yaml``, as ``path:line:col`` lines) is the
rules package's own, re-exported here: the YAML loader that raises it sits in ``rules`` so the
rules engine imports nothing from the hub. It is therefore not a :class:`HubError`.
"""

from __future__ import annotations

from connectors.base import Unavailable
from rules.errors import ConfigError as ConfigError


class HubError(Exception):
    """Base of every error the hub raises on purpose."""


class StoreError(HubError):
    """The store could not complete an operation; nothing was half written."""


class StoreUnavailable(StoreError, Unavailable):
    """The database cannot be reached or cannot write (down, failing over, out of disk, read
    only); nothing was done and the same request may succeed later. Clients are told
    ``unavailable`` (websocket frames) or 503 (HTTP)."""


class BusUnavailable(HubError):
    """The bus (Redis) cannot take an event now: unreachable, timing out, loading, read-only or
    out of memory. The event was not published; the caller refuses what it was acknowledging
    (503, no ack) so its source retries."""


class DispatchUnavailable(HubError):
    """The dispatch owner did not answer in time (a takeover in progress, the bus down): the
    agent's frame was not applied, or may not have been; it is retried by the client."""


class StoreConflict(StoreError):
    """A uniqueness rule refused a write (a concurrent writer got there first)."""


class ProviderIdTaken(StoreError):
    """A send's provider id is recorded for another reply already: one provider message belongs
    to one reply only, so the send that reported it did not send this reply."""


class LeaseLost(StoreError):
    """A dispatch write carried a fencing token that is not the lease's any more: another
    process took dispatch over, and this one must not assign (docs/scaling.md)."""


class NotFound(HubError):
    """A referenced record (conversation, message, agent) does not exist."""


class Forbidden(HubError):
    """The caller may not act on this record (e.g. a conversation assigned to someone else)."""


class InvalidState(HubError):
    """The action does not fit the record's current state (e.g. accepting an expired offer)."""


class AuthError(HubError):
    """Credentials or a session token were rejected."""


class NotAllowed(Forbidden):
    """The caller's role may not do this at all (see ``hub.permissions``)."""


class TooManyAttempts(AuthError):
    """Logins are slowed down for this account, device or address; retry after ``retry_after``
    seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after
