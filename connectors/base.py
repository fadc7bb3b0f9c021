"""The interface every channel connector implements, built-in or third party.

A connector turns provider traffic into :class:`~hub.envelope.Envelope` objects and pushes them
into the injected :class:`Sink`; the hub calls :meth:`Connector.send` to deliver a reply. Register
a connector class under the entry-point group ``channelhub.connectors``; the entry-point name is the
``type`` users write in hub.yaml. See docs/connectors.md.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import aiohttp
import msgspec
from aiohttp import web
from pydantic import BaseModel, ConfigDict

from hub.envelope import Attachment, CallEvent, Delivery, Envelope, Identity, Outbound

ENTRY_POINT_GROUP = "channelhub.connectors"


class ConnectorSettings(BaseModel):
    """Base for a connector's settings model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a channel can do; the hub falls back to plain text for anything not declared.

    ``reply_window`` is how long after the customer's last message free text may be sent
    (WhatsApp's 24 hours), or None for no limit.
    """

    threading: bool = False
    attachments: bool = False
    html: bool = False
    delivery_receipts: bool = False
    live: bool = False
    reply_window: float | None = None
    max_text_length: int | None = None
    #: live phone calls: the hub calls :meth:`Connector.connect_agent` when an agent takes one
    calls: bool = False
    #: identity kinds this channel can start a message to (an agent answering a fax customer by
    #: email picks one of the customer's ``email`` identities); empty: replies only
    recipient_kinds: tuple[str, ...] = ()


class SendError(Exception):
    """A send failed. ``retryable`` tells the hub's outbox whether to try again later."""

    def __init__(self, message: str, *, code: str = "send_failed", retryable: bool = True) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable


class CallError(Exception):
    """A call could not be connected, placed or changed; the message is for the agent.

    ``retryable`` is False when trying again will fail the same way (the caller hung up, the
    agent's number is invalid)."""

    def __init__(self, message: str, *, code: str = "call_failed", retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class AgentDevice:
    """Where an agent takes calls: a phone number (E.164) or a SIP address (``sip:…``)."""

    agent: str
    address: str


class Unavailable(Exception):
    """The hub cannot store or read right now (its database is down, failing over or full);
    nothing was stored. Raised by :class:`Sink` and :class:`HistorySource` methods. Tell the
    sender to try again: a webhook answers 503, a live channel says ``unavailable`` (and closes
    a socket it cannot serve with 1013, "try again later")."""


class Accepted(msgspec.Struct, frozen=True, kw_only=True):
    """The hub's answer to :meth:`Sink.ingest`: the message is durably stored.

    ``duplicate`` is true when the idempotency key was seen before; the ids are then those of the
    message stored the first time. Acknowledge to the provider only after receiving this.
    """

    message_id: str
    conversation_id: str
    duplicate: bool = False


class HistoryItem(msgspec.Struct, frozen=True, kw_only=True):
    """One message of a thread as a customer-facing channel may show it (no internal notes)."""

    message_id: str
    direction: str
    text: str
    created_at: float
    author: str | None = None
    attachments: tuple[Attachment, ...] = ()


class Sink(Protocol):
    """Where a connector delivers inbound messages."""

    async def ingest(self, envelope: Envelope) -> Accepted:
        """Store the message durably (at most once per idempotency key) and return its ids."""
        ...

    async def redelivered(self, channel: str, inbox: str, idempotency_key: str) -> None:
        """A redelivery the connector recognized and answered itself, without :meth:`ingest`
        (from a cache of what it acknowledged lately, or while the first copy was being
        stored): counted with the ones ``ingest`` recognized
        (``channelhub_messages_duplicate``). Call it once per copy answered that way."""
        ...

    async def customer_presence(self, inbox: str, session: str, present: bool) -> None:
        """For live channels: the customer on thread ``session`` came (True) or left (False),
        so the hub can tell a customer who gave up waiting from one who is still there."""
        ...

    async def delivery_update(self, inbox: str, provider_id: str, delivery: Delivery) -> bool:
        """A provider reported later news of a sent reply (a status callback, a bounce).

        ``provider_id`` is the id :meth:`Connector.send` returned. Updates never move a message
        backwards (a late "sent" after "delivered" is ignored). False if no such reply is known.
        """
        ...

    async def call_event(self, inbox: str, session: str, event: CallEvent) -> bool:
        """Something happened to the call of the conversation with thread key ``session``
        (ringing, answered, ended, …): recorded in its timeline once per (call, state, agent)
        and shown to the agent who holds it. False when no conversation has that key."""
        ...

    async def opt_out(self, inbox: str, identity: Identity, opted_out: bool, keyword: str) -> None:
        """The customer asked to receive nothing more from ``inbox`` (STOP) or again (START).

        The hub then refuses to send to that address from that inbox and shows it to agents.
        """
        ...


class HistorySource(Protocol):
    """Read access to a thread's past messages, for channels that show history (web chat)."""

    async def history(self, inbox: str, session: str, limit: int = 200) -> list[HistoryItem]:
        """Messages of every conversation with thread key ``session`` in ``inbox``, oldest first."""
        ...


class BlobSink(Protocol):
    """Content-addressed file storage for attachments."""

    async def put(self, data: bytes, *, name: str, content_type: str) -> Attachment:
        """Store bytes under a server-chosen name; ``name`` is kept as metadata only."""
        ...

    async def get(self, ref: str) -> bytes:
        """The bytes stored under ``ref`` (an :attr:`Attachment.blob_ref`)."""
        ...


async def attachment_bytes(blobs: BlobSink, item: Attachment) -> bytes:
    """The bytes of a reply's attachment; a final :class:`SendError` if they are gone."""
    try:
        return await blobs.get(item.blob_ref)
    except (FileNotFoundError, ValueError):
        raise SendError(
            f"attachment {item.name!r} is gone from the blob store",
            code="attachment_missing",
            retryable=False,
        ) from None


class StateStore(Protocol):
    """Small durable values a connector keeps across restarts (an IMAP mailbox position)."""

    async def get(self, key: str) -> str | None:
        """The value saved under ``key``, or None."""
        ...

    async def put(self, key: str, value: str) -> None:
        """Durably save ``value`` under ``key``, replacing what was there."""
        ...

    async def delete(self, key: str) -> None:
        """Forget ``key`` (nothing happens if it is not there)."""
        ...

    async def keys(self, prefix: str = "") -> list[str]:
        """The saved keys that start with ``prefix``, sorted: work a connector acknowledged
        and must finish after a restart (the fax connector's unread faxes)."""
        ...


class MemoryState:
    """A :class:`StateStore` that forgets at exit (the default, and for tests)."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    async def get(self, key: str) -> str | None:
        return self.values.get(key)

    async def put(self, key: str, value: str) -> None:
        self.values[key] = value

    async def delete(self, key: str) -> None:
        self.values.pop(key, None)

    async def keys(self, prefix: str = "") -> list[str]:
        return sorted(key for key in self.values if key.startswith(prefix))


class Peers(Protocol):
    """The same channel instance in the other hub processes (the distributed mode): a live
    connector whose customer may be connected to another process (web chat) hands frames
    for them here."""

    async def push(self, key: str, text: str) -> None:
        """Give ``text`` to the other processes' ``on_push`` handler for ``key`` (a visitor).
        Best effort: raises nothing."""
        ...

    def on_push(self, handler: Callable[[str, str], Awaitable[int]]) -> None:
        """``handler(key, text)`` receives what another process pushed; returns how many
        sockets took it."""
        ...


class LonePeers:
    """One hub process: there are no other processes (the default)."""

    async def push(self, key: str, text: str) -> None:
        return None

    def on_push(self, handler: Callable[[str, str], Awaitable[int]]) -> None:
        return None


@dataclass(frozen=True, slots=True)
class TemplateInfo:
    """An approved template an agent may pick, as the console lists it."""

    name: str
    body: str
    variables: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ComposeInfo:
    """What the agent may send on a conversation right now, shown before they type.

    ``mode`` is ``text`` (free text) or ``template`` (only an approved template, e.g. WhatsApp
    outside its 24-hour window); ``reason`` says why in words for the console.
    """

    mode: str = "text"
    window_closes_at: float | None = None
    templates: tuple[TemplateInfo, ...] = ()
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class ConnectorContext:
    """Everything the hub lends a running connector.

    ``secret`` is a key derived for this instance alone (sign tokens with it); ``http`` is the
    application's shared client session (never open one per request); ``clock`` returns seconds
    since the epoch and is replaced in tests; ``state`` keeps small values across restarts.
    """

    instance: str
    sink: Sink
    history: HistorySource
    blobs: BlobSink
    http: aiohttp.ClientSession
    secret: bytes
    clock: Callable[[], float]
    logger: logging.Logger
    public_url: str
    state: StateStore = field(default_factory=MemoryState)
    #: whether hub.yaml's business-hours calendar ``name`` is open at a moment (KeyError: no
    #: such calendar); always open when the hub lends none
    business_hours: Callable[[str, float], bool] = field(default=lambda name, moment: True)
    peers: Peers = field(default_factory=LonePeers)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    """An HTTP route a connector serves, mounted at ``/channels/<instance><path>``.

    ``alias`` is an absolute path also mounted for the first instance that claims it (the web
    chat's ``/ws/chat``, for example).
    """

    method: str
    path: str
    handler: Handler
    alias: str | None = None


class Connector(abc.ABC):
    """Base class of a channel connector. One object per channel instance in hub.yaml."""

    #: the model that validates this connector's ``settings`` block in hub.yaml
    settings_model: ClassVar[type[ConnectorSettings]] = ConnectorSettings
    #: the channel name rules and the console see (``email``, ``sms``, ``webchat``, …)
    channel: ClassVar[str]
    capabilities: ClassVar[Capabilities] = Capabilities()

    def __init__(self, name: str, settings: Any) -> None:
        self.name = name
        self.settings = settings

    def routes(self) -> Sequence[Route]:
        """HTTP routes this instance serves (webhooks, websockets); none by default."""
        return ()

    @abc.abstractmethod
    async def start(self, ctx: ConnectorContext) -> None:
        """Begin receiving; fail fast with a clear error if credentials or settings are wrong."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop receiving and release resources; pending inbound work is finished or left unacked.

        Called at shutdown and again at cleanup: it must be safe to call more than once.
        """

    @abc.abstractmethod
    async def send(self, outbound: Outbound) -> Delivery:
        """Deliver a reply; raise :class:`SendError` on failure, never return a silent False."""

    @classmethod
    def sample_envelope(cls, raw: bytes, inbox: str, now: float) -> Envelope:
        """The envelope this connector builds from a recorded inbound sample (a raw mail for
        email), its files listed but not stored: for ``channelhub envelope`` and
        ``channelhub rules test --sample``. Raise ValueError saying what is wrong with ``raw``;
        a connector without a sample format keeps this default."""
        raise NotImplementedError(f"channel {cls.channel!r} has no sample format")

    def health(self) -> str | None:
        """Why this instance cannot receive right now (a mailbox unreachable, a missing
        binary), for ``/readyz`` and the logs; None when all is well."""
        return None

    def compose(
        self, recipient: Identity, last_inbound_at: float | None, now: float
    ) -> ComposeInfo:
        """What may be sent to ``recipient`` now; free text by default."""
        return ComposeInfo()

    async def connect_agent(self, conversation_id: str, session: str, device: AgentDevice) -> None:
        """Bring the call of a conversation (thread key ``session``) to the agent who just
        took it, at ``device``; for channels with ``capabilities.calls``. Raise
        :class:`CallError` saying why not (the caller hung up: call back instead)."""
        raise CallError(f"channel {self.channel!r} has no calls", code="not_a_call")

    async def call_back(
        self, conversation_id: str, session: str, to: Identity, device: AgentDevice
    ) -> None:
        """Call the customer at ``to`` and the agent at ``device`` and bridge them (a callback
        request, a missed call, click to call); :class:`CallError` saying why not."""
        raise CallError(f"channel {self.channel!r} has no calls", code="not_a_call")

    async def hold_call(self, conversation_id: str, session: str, agent: str, on: bool) -> None:
        """Put the caller of a connected call on hold (``on``) or take them off it;
        :class:`CallError` saying why not."""
        raise CallError(f"channel {self.channel!r} has no calls", code="not_a_call")

    def preview(self, text: str) -> dict[str, Any]:
        """Facts about ``text`` the agent should see before sending (SMS segments); none here."""
        return {}

    def render_template(self, recipient: Identity, name: str, variables: dict[str, str]) -> str:
        """The text a template reply will show; ValueError if the template or a value is
        missing. Channels without templates refuse them."""
        raise ValueError(f"channel {self.channel!r} has no templates")
