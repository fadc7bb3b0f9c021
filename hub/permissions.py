"""Who may read and do what: one pure policy table for the API and the agent websocket.

``may(role, action, related=…)`` is the only decision; handlers and websocket commands ask it
(or :func:`ensure`, which raises :class:`~hub.errors.NotAllowed`). Some grants are *related*:
a role may act only on records that relate to the caller (an agent reads the customers of the
conversations they hold, are offered or that wait in queues they serve). The caller works out
the relation, the table says whether it is needed. docs/api.md ("Who may read and do what")
is this table in words; a test keeps the two in step.

A new feature adds an :class:`Action` and one line to :data:`POLICY`, nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from hub.errors import NotAllowed


class Role(StrEnum):
    AGENT = "agent"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"


class Action(StrEnum):
    READ_CUSTOMER = "customer.read"
    MERGE_CUSTOMERS = "customer.merge"  # merge and unmerge
    READ_ATTACHMENT = "attachment.read"
    READ_RULES = "rules.read"
    VIEW_QUEUES = "queues.view"
    REASSIGN = "conversation.reassign"
    REVOKE_SESSIONS = "sessions.revoke"
    READ_REPORTS = "reports.read"
    EXPORT_CONVERSATIONS = "conversations.export"
    CUSTOMER_PRIVACY = "customer.privacy"  # GDPR export and erasure, retention runs
    DIFF_RULES = "rules.diff"  # replay stored traffic through a proposed rules file
    READ_CONVERSATIONS = "conversations.read"  # search, open read-only


@dataclass(frozen=True, slots=True)
class Grant:
    """Roles that may act on any record, and roles that may act on related records only."""

    anything: frozenset[Role]
    related: frozenset[Role] = frozenset()
    relation: str = ""  # what "related" means for this action, for people reading the table


_STAFF = frozenset({Role.SUPERVISOR, Role.ADMIN})
_ADMINS = frozenset({Role.ADMIN})
_EVERYONE = frozenset(Role)

POLICY = MappingProxyType(
    {
        Action.READ_CUSTOMER: Grant(
            _STAFF,
            frozenset({Role.AGENT}),
            "a conversation they hold, are offered, or that waits in a queue they serve",
        ),
        Action.MERGE_CUSTOMERS: Grant(_STAFF),
        Action.READ_ATTACHMENT: Grant(
            _STAFF, frozenset({Role.AGENT}), "a message of a conversation they hold"
        ),
        Action.READ_RULES: Grant(_EVERYONE),
        Action.VIEW_QUEUES: Grant(_STAFF),
        Action.REASSIGN: Grant(_STAFF),
        Action.REVOKE_SESSIONS: Grant(
            _ADMINS, frozenset({Role.AGENT, Role.SUPERVISOR}), "their own"
        ),
        Action.READ_REPORTS: Grant(_STAFF),
        Action.EXPORT_CONVERSATIONS: Grant(_STAFF),
        Action.CUSTOMER_PRIVACY: Grant(_ADMINS),
        Action.DIFF_RULES: Grant(_ADMINS),
        Action.READ_CONVERSATIONS: Grant(
            _STAFF,
            frozenset({Role.AGENT}),
            "conversations in a queue they serve or assigned to them",
        ),
    }
)


def may(role: Role, action: Action, *, related: bool = False) -> bool:
    """Whether ``role`` may do ``action``; ``related``: the record relates to the caller."""
    grant = POLICY[action]
    return role in grant.anything or (related and role in grant.related)


def needs_relation(role: Role, action: Action) -> bool:
    """True when ``role`` may do ``action`` only on related records: work out the relation."""
    grant = POLICY[action]
    return role not in grant.anything and role in grant.related


def ensure(role: Role, action: Action, *, related: bool = False) -> None:
    """Raise :class:`NotAllowed` unless :func:`may` says yes."""
    if not may(role, action, related=related):
        grant = POLICY[action]
        who = ", ".join(sorted(grant.anything)) or "nobody"
        scope = ""
        if grant.related:
            scope = f"; {', '.join(sorted(grant.related))} only for {grant.relation}"
        raise NotAllowed(f"{action} is for {who}{scope} (your role: {role})")
