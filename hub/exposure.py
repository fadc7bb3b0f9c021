"""Start-up safety check: what is unsafe about this configuration on a network address.

Loopback binds (``make run``) start as they are. On any other address the demo password and a
generated secret key stop ``serve`` unless ``server.allow_insecure_defaults`` (or the
environment variable :data:`ALLOW_ENV`) says to go on; lesser risks only warn. Pure: the caller
passes which agents still use the demo password (that takes argon2 work).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from hub.settings import AgentSettings, HubSettings

ALLOW_ENV = "CHANNELHUB_ALLOW_INSECURE_DEFAULTS"
#: the demo agent's hash in the shipped config/hub.yaml (password "demo"), published on
#: purpose: recognising it is the point
DEMO_PASSWORD_HASH = "".join(
    (
        "$argon2id$v=19$m=65536,t=3,p=4$ZEyn+aICJ+cRTFUTUR57Ig$",
        "VXllsasYTaDSvk4FZvfgnUGtxi4tJf3lhz9lwUQSTwI",
    )
)


@dataclass(frozen=True, slots=True)
class Finding:
    refuse: bool  # stops start-up unless insecure defaults are allowed
    problem: str
    fix: str


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only ("" and 0.0.0.0 mean everywhere)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def allowed_by_environment(environ: Mapping[str, str]) -> bool:
    return environ.get(ALLOW_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def demo_password_agents(
    agents: Iterable[AgentSettings], verify: Callable[[str, str], bool] | None = None
) -> list[str]:
    """Agents whose password is the demo one: the shipped hash, or agent ``demo`` with the
    password ``demo`` hashed anew (``verify(hash, password)`` does the argon2 check)."""
    found = []
    for agent in agents:
        hashed = agent.password_hash.get_secret_value()
        rehashed_demo = agent.id == "demo" and verify is not None and verify(hashed, "demo")
        if hashed == DEMO_PASSWORD_HASH or rehashed_demo:
            found.append(agent.id)
    return found


def findings(settings: HubSettings, host: str, *, demo_agents: Sequence[str]) -> list[Finding]:
    """What is unsafe about serving ``settings`` on ``host``; nothing on loopback."""
    server = settings.server
    found: list[Finding] = []
    if is_loopback(host):
        return found
    for agent in demo_agents:
        found.append(
            Finding(
                True,
                f"agent {agent!r} still has the demo password",
                "give it a password_hash of its own (channelhub agents hash-password) or remove it",
            )
        )
    if server.secret_key is None:
        found.append(
            Finding(
                True,
                "server.secret_key is not configured (a generated one is kept in data/)",
                "set server.secret_key: ${CHANNELHUB_SECRET_KEY} and export "
                "CHANNELHUB_SECRET_KEY (at least 16 random characters)",
            )
        )
    metrics_open = server.metrics_token is None and (
        server.metrics_port is None or not is_loopback(server.metrics_host)
    )
    if metrics_open:
        found.append(
            Finding(
                False,
                "GET /metrics is open to anyone who reaches "
                + ("the hub" if server.metrics_port is None else server.metrics_host),
                "set server.metrics_token or server.metrics_port (docs/configuration.md)",
            )
        )
    https = (server.public_url or "").lower().startswith("https://")
    if not https and not server.trusted_proxies:
        found.append(
            Finding(
                False,
                "no HTTPS in front: session cookies go out without Secure",
                "serve it behind TLS: set an https server.public_url, or "
                "server.trusted_proxies for a proxy sending X-Forwarded-Proto",
            )
        )
    return found


def refusal_text(found: Sequence[Finding], where: str) -> str:
    lines = [f"channelhub: refusing to listen on {where}, an address other machines can reach:"]
    lines += [f"  - {item.problem}: {item.fix}" for item in found if item.refuse]
    lines.append(
        "Fix the above, or listen on 127.0.0.1 only (server.host, --host), or for a throwaway "
        f"demo set server.allow_insecure_defaults: true (or {ALLOW_ENV}=1)."
    )
    return "\n".join(lines)


def warning_text(found: Sequence[Finding], where: str) -> str:
    loud = any(item.refuse for item in found)
    head = (
        f"WARNING: channelhub listens on {where} WITH INSECURE DEFAULTS "
        "(allowed by allow_insecure_defaults): anyone who reaches it can log in"
        if loud
        else f"channelhub: listening on {where}; consider:"
    )
    return "\n".join([head, *(f"  - {item.problem}: {item.fix}" for item in found)])
