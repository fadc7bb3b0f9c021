"""The events between hub processes in the distributed mode (``hub.cluster``).

An agent's socket may be on any node while dispatch runs on one (the owner): commands travel
to the owner (:class:`AgentCall`, topic ``calls``, work group ``owner``), frames and answers
come back on the stream of the node holding the socket (:class:`AgentFrames`,
:class:`CallAnswer`, topic ``node.<id>``). Nodes say who they hold every ``cluster.node_beat``
(:class:`NodeBeat`, topic ``nodes``); a new owner asks for that at once (:class:`Reannounce`).
Web chat frames for a visitor go to every node (:class:`VisitorFrame`, topic ``visitors``), and
an accepted rules revision too (:class:`RulesChanged`, topic ``nodes``).
"""

from __future__ import annotations

import msgspec

CALLS = "calls"
NODES = "nodes"
VISITORS = "visitors"
OWNER_GROUP = "owner"


def node_topic(node: str) -> str:
    """The topic whose stream only the node ``node`` reads."""
    return f"node.{node}"


class AgentCall(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """An agent's socket on ``node`` asks the dispatch owner to act.

    ``op``: ``attach`` (a socket opened: answer with the agent's state), ``detach`` (one
    closed) or ``command`` (``text``: the client frame). ``present`` and ``version`` are the
    node's view of the agent after the change (ignored by the owner when it has seen a newer
    one); a call past ``deadline`` (wall clock) is dropped: its caller has given up.
    """

    call_id: str
    node: str
    agent: str
    op: str
    text: str = ""
    present: bool = True
    version: int = 0
    deadline: float = 0.0


class CallAnswer(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """The owner's answer to one :class:`AgentCall`: frames for the socket that asked, or
    ``failed`` (the owner could not act: the caller answers ``unavailable``)."""

    call_id: str
    frames: tuple[str, ...] = ()
    failed: bool = False


class AgentFrames(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """Frames for every socket of ``agent`` on the node whose stream carries this."""

    agent: str
    frames: tuple[str, ...]


class NodeBeat(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """A node is alive, holds sockets of ``present`` agents, and has seen each agent change
    ``versions`` times (so an owner never applies an older view over a newer call)."""

    node: str
    at: float
    present: tuple[str, ...] = ()
    versions: dict[str, int] = msgspec.field(default_factory=dict)
    rules: str = ""  # the rules revision the node routes with
    owner: bool = False


class Reannounce(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """A node took dispatch over: every node beats now instead of at its next beat."""

    node: str


class RulesChanged(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """A node accepted a rules revision (stored in ``rule_revisions``): every node loads it."""

    node: str
    digest: str


class VisitorFrame(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """A web chat frame for a visitor whose window may be open on another node."""

    node: str  # the sender: it pushed to its own windows already
    instance: str
    visitor: str
    text: str


NodeEvent = (
    AgentCall | CallAnswer | AgentFrames | NodeBeat | Reannounce | RulesChanged | VisitorFrame
)
