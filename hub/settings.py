"""``config/hub.yaml``: the validated settings every part of the hub reads.

Pydantic models with ``extra="forbid"`` so a typo is an error, not a silent default. Each channel
instance's ``settings`` block is validated by its connector's own model (see ``connectors.base``).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from collections.abc import Callable, Mapping
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)

from hub.errors import ConfigError
from hub.permissions import Role
from rules.durations import parse_duration
from rules.yamlfile import YamlDocument, read_yaml

log = logging.getLogger(__name__)

_NAME = r"^[a-z0-9][a-z0-9-]{0,62}$"


Duration = Annotated[float, BeforeValidator(parse_duration)]


def _empty_is_unset(value: object) -> object:
    # `${CHANNELHUB_SECRET_KEY:-}` in hub.yaml: an unset variable means "not configured"
    return None if value == "" else value


OptionalSecret = Annotated[SecretStr | None, BeforeValidator(_empty_is_unset)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Model):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    public_url: str | None = Field(
        None, description="URL users reach the hub at (behind a proxy); shown in links and logs"
    )
    allowed_origins: tuple[str, ...] = Field(
        (), description="origins besides the hub's own that may open /ws/agent"
    )
    secret_key: OptionalSecret = Field(
        None, description="signs visitor tokens and sessions; generated into data/ when unset"
    )
    session_ttl: Duration = 12 * 3600
    session_check_interval: Duration = Field(
        5.0,
        gt=0,
        le=300,
        description="how often open agent sockets re-check their session; a session another "
        "hub process ended is refused within this",
    )
    shutdown_timeout: Duration = 10.0
    agent_queue_bytes: int = Field(
        4 * 1024 * 1024,
        ge=64 * 1024,
        le=1024 * 1024 * 1024,
        description="frames waiting for one agent socket beyond this drop the socket (the "
        "console reconnects and resyncs from its snapshot)",
    )
    agent_send_timeout: Duration = Field(
        10.0,
        gt=0,
        le=300,
        description="an agent socket that takes no frame for this long is dropped",
    )
    websocket_compression: bool = Field(
        False,
        description="permessage-deflate on agent sockets: ~100 KiB more memory per socket, "
        "worth it only on slow links",
    )
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = Field(
        (), description="proxies whose X-Forwarded-For / X-Forwarded-Proto are believed"
    )
    allow_insecure_defaults: bool = Field(
        False, description="start on a network address with demo credentials or no secret_key"
    )
    metrics_token: OptionalSecret = Field(
        None, description="GET /metrics requires Authorization: Bearer <token>"
    )
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(
        None, ge=0, le=65535, description="serve /metrics on its own port instead of `port`"
    )

    @model_validator(mode="after")
    def _separate_metrics_port(self) -> ServerSettings:
        if self.metrics_port and self.metrics_port == self.port:
            raise ValueError("metrics_port must differ from port (or be left unset)")
        return self


class StorageSettings(_Model):
    url: str = "sqlite+aiosqlite:///data/channelhub.db"
    blobs: str = "data/blobs"
    sqlite_synchronous: Literal["full", "normal"] = "full"
    sqlite_calls: Literal["inline", "thread"] = "inline"
    batch_max: int = Field(256, ge=1, le=10_000)


class BusSettings(_Model):
    """``memory://`` (one process) or ``redis://[:password@]host:port/db`` (``rediss://`` for
    TLS, ``unix:///path?db=N``): Redis Streams shared by every hub process. The other keys
    apply to Redis only; ``docs/scaling.md`` explains them."""

    url: str = "memory://"
    prefix: str = Field(
        "channelhub", pattern=r"^[A-Za-z0-9_.:-]{1,64}$", description="stream key prefix"
    )
    maxlen: int = Field(100_000, ge=100, description="entries kept per stream (approximately)")
    batch: int = Field(100, ge=1, le=10_000, description="entries read or acknowledged at once")
    block: Duration = Field(2.0, description="how long a read waits at Redis for new entries")
    timeout: Duration = Field(
        5.0, description="connect and command timeout; a publish then raises BusUnavailable"
    )
    reclaim_idle: Duration = Field(
        30.0, description="an event unacknowledged this long goes to another consumer"
    )
    max_deliveries: int = Field(
        5, ge=1, le=1000, description="deliveries before an event goes to the dead-letter stream"
    )
    reconnect_initial: Duration = Field(0.1, description="first reconnect delay")
    reconnect_max: Duration = Field(10.0, description="longest reconnect delay")
    consumer_expiry: Duration = Field(
        3600.0, description="forget a group's consumers idle this long with nothing pending"
    )
    relay_after: Duration = Field(
        5.0,
        description="an event committed and not published this long after (its process died) "
        "is published by any process's relay",
    )
    relay_poll: Duration = Field(
        1.0, description="how often the relay looks for events nobody published"
    )

    @model_validator(mode="after")
    def _consistent(self) -> BusSettings:
        if not self.url.startswith(("memory://", "redis://", "rediss://", "unix://")):
            raise ValueError("bus.url must start with memory://, redis://, rediss:// or unix://")
        if not 0.001 <= self.block < self.timeout:
            raise ValueError("bus.block must be at least 1ms and shorter than bus.timeout")
        if self.reclaim_idle <= 0 or self.reconnect_initial <= 0:
            raise ValueError("bus.reclaim_idle and bus.reconnect_initial must be above zero")
        if self.relay_after <= 0 or self.relay_poll <= 0:
            raise ValueError("bus.relay_after and bus.relay_poll must be above zero")
        if self.reconnect_max < self.reconnect_initial:
            raise ValueError("bus.reconnect_max must be at least bus.reconnect_initial")
        return self


class ClusterSettings(_Model):
    """Several hub processes (``bus: redis://…`` and ``storage: postgresql+asyncpg://…``):
    the dispatch lease and outbox claims (docs/scaling.md)."""

    lease_ttl: Duration = Field(
        5.0, description="how long the dispatch lease lasts unless renewed (every third of it)"
    )
    lease_margin: Duration = Field(
        1.0, description="a holder stops this long before its lease ends (covers clock skew)"
    )
    lease_poll: Duration = Field(0.5, description="how often a standby looks at the lease")
    outbox_claim: Duration = Field(
        120.0, description="a claimed reply is the claiming process's this long (> any send)"
    )
    node_beat: Duration = Field(1.0, description="how often a node tells who it holds")
    node_timeout: Duration = Field(
        4.0, description="a node silent this long is dead: its agents are disconnected"
    )
    call_timeout: Duration = Field(
        5.0, description="how long an agent's command waits for the dispatch owner"
    )

    @model_validator(mode="after")
    def _consistent(self) -> ClusterSettings:
        if not 0 <= self.lease_margin < self.lease_ttl / 3:
            raise ValueError("cluster.lease_margin must be below a third of cluster.lease_ttl")
        if not 0 < self.lease_poll <= self.lease_ttl:
            raise ValueError("cluster.lease_poll must be above zero and at most lease_ttl")
        if self.outbox_claim < 1:
            raise ValueError("cluster.outbox_claim must be at least 1s")
        if not 0 < self.node_beat * 2 <= self.node_timeout:
            raise ValueError("cluster.node_timeout must be at least twice cluster.node_beat")
        if self.call_timeout <= 0:
            raise ValueError("cluster.call_timeout must be above zero")
        return self


class LoggingSettings(_Model):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"


class ChannelInstance(_Model):
    name: str = Field(pattern=_NAME)
    type: str
    settings: Any = Field(default_factory=dict)


class OverflowSettings(_Model):
    after: Duration
    to: str | None = Field(None, description="move the waiting work to this queue")
    drop_skills: tuple[str, ...] = Field((), description="stop requiring these skills")
    priority: Literal["low", "normal", "high", "urgent"] | None = Field(
        None, description="raise the priority of work that waited this long (aging)"
    )

    @model_validator(mode="after")
    def _does_something(self) -> OverflowSettings:
        if self.to is None and not self.drop_skills and self.priority is None:
            raise ValueError("an overflow step needs `to`, `drop_skills` or `priority`")
        return self


class QueueSettings(_Model):
    name: str = Field(pattern=_NAME)
    description: str = ""
    skills: tuple[str, ...] = Field((), description="skills every agent taking its work needs")
    strategy: Literal["longest-idle", "least-occupied", "round-robin", "skill-level"] = (
        "longest-idle"
    )
    overflow: tuple[OverflowSettings, ...] = Field(
        (), description="steps applied to work that waited this long"
    )
    max_waiting: int | None = Field(None, ge=1)
    business_hours: str | None = Field(
        None, description="a calendar from business_hours: outside it, work waits"
    )
    sla: Duration | None = Field(None, description="first-response target if the rules set none")
    closed_reply: str | None = Field(
        None, max_length=5000, description="auto-reply for new work arriving while closed"
    )
    when_full: str | None = Field(None, description="queue for new work while this one is full")


class AgentSettings(_Model):
    id: str = Field(pattern=_NAME)
    name: str
    password_hash: SecretStr
    max_conversations: int = Field(3, ge=1, le=1000)
    queues: tuple[str, ...] = ()
    skills: dict[str, Annotated[int, Field(ge=1, le=5)]] = Field(
        default_factory=dict, description="skill -> level 1..5"
    )
    capacity: dict[str, Annotated[int, Field(ge=0, le=1000)]] = Field(
        default_factory=dict, description="channel -> conversations at once (within the budget)"
    )
    auto_accept: tuple[str, ...] = Field((), description="channels taken without an offer")
    role: Role = Field(Role.AGENT, description="what the agent may read and do (docs/api.md)")
    phone: str | None = Field(
        None,
        pattern=r"^(\+[1-9][0-9]{4,14}|sips?:[^\s@]{1,64}@[^\s]{1,200})$",
        description="where calls are put through: a number (E.164) or a SIP address",
    )

    @model_validator(mode="before")
    @classmethod
    def _supervisor_alias(cls, data: Any) -> Any:
        """``supervisor: true`` (before roles existed) still means ``role: supervisor``."""
        if not isinstance(data, dict) or "supervisor" not in data:
            return data
        data = dict(data)
        flag = data.pop("supervisor")
        if not isinstance(flag, bool):
            raise ValueError("supervisor must be true or false (deprecated: use role)")
        if "role" in data:
            raise ValueError("supervisor is the deprecated spelling of role: keep only role")
        data["role"] = Role.SUPERVISOR if flag else Role.AGENT
        return data


_RANGE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _check_timezone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {value!r} (use an IANA name like Europe/Berlin)"
        ) from None
    return value


TimeZoneName = Annotated[str, BeforeValidator(_check_timezone)]


def _check_range(value: object) -> str:
    if not isinstance(value, str) or not (match := _RANGE.match(value.strip())):
        raise ValueError("a time range like 08:00-18:00")
    start = int(match.group(1)) * 60 + int(match.group(2))
    end = int(match.group(3)) * 60 + int(match.group(4))
    if end > 24 * 60 or end <= start:
        raise ValueError("the range must end after it starts, at 24:00 at the latest")
    return value.strip()


TimeRange = Annotated[str, BeforeValidator(_check_range)]


class BusinessHoursSettings(_Model):
    """Opening hours: weekly ranges in a time zone, minus holidays."""

    timezone: TimeZoneName | None = Field(None, description="default: the hub's timezone")
    weekly: dict[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], tuple[TimeRange, ...]]
    holidays: tuple[date, ...] = ()


class RulesSettings(_Model):
    path: str | None = Field(None, description="rules.yaml; unset: everything to default_queue")
    watch: bool = True
    poll_interval: Duration = 2.0


class HttpProviderSettings(_Model):
    """An external CRM/ERP asked for customer data over HTTP (docs/customers.md)."""

    url: str = Field(pattern=r"^https?://", description="template with {kind} and {address}")
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    fields: dict[str, str] = Field(description="customer field -> dotted path in the JSON answer")
    timeout: Duration = 2.0
    wait: Duration = 0.3
    ttl: Duration = 300.0
    failures_to_open: int = Field(5, ge=1)
    open_for: Duration = 30.0

    @model_validator(mode="after")
    def _known_fields(self) -> HttpProviderSettings:
        from hub.crm_fields import FIELDS

        unknown = set(self.fields) - set(FIELDS)
        if unknown:
            raise ValueError(f"unknown customer fields {sorted(unknown)}; known: {sorted(FIELDS)}")
        return self


class CustomerSettings(_Model):
    """Identities and value classification (docs/customers.md)."""

    default_region: str = Field(
        "DE", pattern=r"^[A-Z]{2}$", description="country for phone numbers without +prefix"
    )
    value_window: Duration = 365 * 86400.0
    abc_a_share: float = Field(0.80, gt=0, lt=1)
    abc_b_share: float = Field(0.95, gt=0, lt=1)
    recompute_every: Duration = 24 * 3600.0
    provider: HttpProviderSettings | None = None

    @model_validator(mode="after")
    def _shares(self) -> CustomerSettings:
        if self.abc_b_share <= self.abc_a_share:
            raise ValueError("abc_b_share must be above abc_a_share")
        return self


class DispatchSettings(_Model):
    offer_timeout: Duration = 30.0
    disconnect_grace: Duration = 60.0
    decline_cooldown: Duration = 120.0
    sticky_wait: Duration = Field(30.0, description="a returning customer's last agent first")
    reply_timeout: Duration | None = Field(
        None, description="requeue an accepted conversation nobody answered within this"
    )
    wrap_up: Duration = Field(0.0, description="pause after closing before the next offer")
    abandon_after: Duration = Field(
        60.0, description="a customer gone this long while waiting counts as abandoned"
    )
    dispositions: tuple[Annotated[str, Field(pattern=_NAME)], ...] = Field(
        ("resolved", "no-action", "escalated"),
        min_length=1,
        description="what an agent may record when closing (the first is the default)",
    )


class CannedResponse(_Model):
    """A prepared answer agents insert by typing ``/`` and its name (docs/console.md)."""

    name: str = Field(pattern=_NAME)
    text: str = Field(min_length=1, max_length=5000)
    queues: tuple[str, ...] = Field((), description="offered in these queues; empty: everywhere")


class RetentionSettings(_Model):
    """How long personal data is kept (docs/privacy.md); unset keeps it for ever."""

    conversations: Duration | None = Field(
        None, description="closed conversations, closed longer ago than this, are removed"
    )
    attachments: Duration | None = Field(
        None, description="files of messages older than this are removed (the text stays)"
    )
    prospects_without_contact: Duration | None = Field(
        None, description="prospects (not CRM customers) without contact this long are erased"
    )
    audit_events: Duration | None = Field(
        None, description="audit events older than this are deleted"
    )
    routing_records: Duration | None = Field(
        None,
        description="what the rules saw of messages older than this is deleted (rules diff "
        "replays only the envelope of such messages)",
    )
    every: Duration = Field(24 * 3600.0, ge=60, description="how often the retention job runs")

    @property
    def configured(self) -> bool:
        return any(
            value is not None
            for value in (
                self.conversations,
                self.attachments,
                self.prospects_without_contact,
                self.audit_events,
                self.routing_records,
            )
        )


class HubSettings(_Model):
    server: ServerSettings = ServerSettings()
    storage: StorageSettings = StorageSettings()
    bus: BusSettings = BusSettings()
    cluster: ClusterSettings = ClusterSettings()
    logging: LoggingSettings = LoggingSettings()
    channels: tuple[ChannelInstance, ...] = ()
    queues: tuple[QueueSettings, ...] = (QueueSettings(name="general"),)
    default_queue: str = "general"
    dispatch: DispatchSettings = DispatchSettings()
    agents: tuple[AgentSettings, ...] = ()
    timezone: TimeZoneName = "UTC"
    business_hours: dict[str, BusinessHoursSettings] = Field(default_factory=dict)
    rules: RulesSettings = RulesSettings()
    customers: CustomerSettings = CustomerSettings()
    retention: RetentionSettings = RetentionSettings()
    canned_responses: tuple[CannedResponse, ...] = ()

    @property
    def distributed(self) -> bool:
        """Several hub processes may run: the bus is Redis and the store PostgreSQL."""
        return not self.bus.url.startswith("memory://") and self.storage.url.startswith(
            "postgresql"
        )

    @model_validator(mode="after")
    def _consistent(self) -> HubSettings:
        names = [channel.name for channel in self.channels]
        if len(set(names)) != len(names):
            raise ValueError("channel instance names must be unique")
        queue_names = {queue.name for queue in self.queues}
        if self.default_queue not in queue_names:
            raise ValueError(f"default_queue {self.default_queue!r} is not among the queues")
        agent_ids = [agent.id for agent in self.agents]
        if len(set(agent_ids)) != len(agent_ids):
            raise ValueError("agent ids must be unique")
        for queue in self.queues:
            targets = {step.to for step in queue.overflow if step.to} | (
                {queue.when_full} if queue.when_full else set()
            )
            if targets - queue_names:
                raise ValueError(
                    f"queue {queue.name!r} sends work to unknown queues "
                    f"{sorted(targets - queue_names)}"
                )
        for queue in self.queues:
            if queue.business_hours and queue.business_hours not in self.business_hours:
                raise ValueError(
                    f"queue {queue.name!r} uses unknown business hours {queue.business_hours!r}"
                )
        for agent in self.agents:
            unknown = set(agent.queues) - queue_names
            if unknown:
                raise ValueError(f"agent {agent.id!r} serves unknown queues {sorted(unknown)}")
        canned = [response.name for response in self.canned_responses]
        if len(set(canned)) != len(canned):
            raise ValueError("canned response names must be unique")
        for response in self.canned_responses:
            unknown = set(response.queues) - queue_names
            if unknown:
                raise ValueError(
                    f"canned response {response.name!r} names unknown queues {sorted(unknown)}"
                )
        return self


SettingsModelLookup = Callable[[str], type[BaseModel] | None]


def validate_settings(
    document: YamlDocument, settings_model_for: SettingsModelLookup | None = None
) -> HubSettings:
    """Validate parsed YAML; raise :class:`ConfigError` with one ``path:line:col`` per problem.

    ``settings_model_for(type)`` returns a connector's settings model (or None if no connector of
    that type is installed); each channel's ``settings`` is then validated by it.
    """
    try:
        settings = HubSettings.model_validate(document.data)
    except ValidationError as exc:
        raise ConfigError(_problems(document, exc, ())) from None
    for problem in deprecations(document):
        log.warning("%s", problem)
    if settings_model_for is None:
        return settings
    problems: list[str] = []
    channels = []
    for index, channel in enumerate(settings.channels):
        loc: tuple[str | int, ...] = ("channels", index)
        model = settings_model_for(channel.type)
        if model is None:
            problems.append(
                f"{document.where((*loc, 'type'))}: no connector of type {channel.type!r} is "
                "installed (entry-point group channelhub.connectors)"
            )
            continue
        try:
            validated = model.model_validate(channel.settings or {})
        except ValidationError as exc:
            problems.extend(_problems(document, exc, (*loc, "settings")))
            continue
        channels.append(channel.model_copy(update={"settings": validated}))
    if problems:
        raise ConfigError(problems)
    return settings.model_copy(update={"channels": tuple(channels)})


def deprecations(document: YamlDocument) -> list[str]:
    """``path:line:col`` lines for deprecated keys that still work."""
    found = []
    agents = document.data.get("agents") if isinstance(document.data, dict) else None
    for index, agent in enumerate(agents if isinstance(agents, list) else []):
        if isinstance(agent, dict) and "supervisor" in agent:
            role = "supervisor" if agent["supervisor"] is True else "agent"
            found.append(
                f"{document.where(('agents', index, 'supervisor'), key=True)}: "
                f"agents.{index}.supervisor is deprecated; write `role: {role}`"
            )
    return found


def _problems(
    document: YamlDocument, exc: ValidationError, prefix: tuple[str | int, ...]
) -> list[str]:
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = (*prefix, *error["loc"])
        dotted = ".".join(str(part) for part in loc) or "(top level)"
        at_key = error["type"] in {"extra_forbidden", "missing"}
        problems.append(f"{document.where(loc, key=at_key)}: {dotted}: {error['msg']}")
    return problems


def load_settings(
    path: str,
    settings_model_for: SettingsModelLookup | None = None,
    environ: Mapping[str, str] | None = None,
) -> HubSettings:
    """Read, interpolate ``${ENV}`` references and validate a hub.yaml file."""
    document = read_yaml(path, environ=os.environ if environ is None else environ)
    return validate_settings(document, settings_model_for)
