"""``channelhub serve``: run the hub, refusing unsafe defaults on a network address."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

from hub import __version__
from hub.cli.config import DEFAULT_CONFIG, load_config
from hub.settings import HubSettings

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger("channelhub")


def serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from hub import logs

    settings = load_config(args.config)
    logs.configure(settings.logging.level, settings.logging.format)
    host = args.host or settings.server.host
    port = settings.server.port if args.port is None else args.port
    if not exposure_allows(settings, host, port):
        return 2
    base = (settings.server.public_url or f"http://{host}:{port}").rstrip("/")
    agents = ", ".join(agent.id for agent in settings.agents) or "none configured"
    print(
        f"channelhub {__version__}: agent console at {base}/console/ (agents: {agents})", flush=True
    )
    if any(channel.type == "webchat" for channel in settings.channels):
        print(f"channelhub: customer chat demo at {base}/chat/", flush=True)
    web.run_app(
        serving_app(settings),
        host=host,
        port=port,
        print=None,
        shutdown_timeout=settings.server.shutdown_timeout,
        access_log=None,
    )
    return 0


def serving_app(settings: HubSettings) -> web.Application:
    """The hub's app as ``serve`` runs it: what startup built is frozen out of the collector."""
    from hub.app import create_app

    app = create_app(settings)
    # on_startup handlers run after the app's own startup (its cleanup_ctx): rules are loaded
    app.on_startup.append(_freeze_startup_objects)
    return app


async def _freeze_startup_objects(app: web.Application) -> None:
    """Keep what startup built out of every later garbage collection's scan.

    Modules, settings and the compiled rules (hundreds of thousands of objects for a large
    rules file) live as long as the process; a full collection walking them would hold the
    GIL, and stall the event loop, for tens of milliseconds each time. Frozen once the app has
    started (rules loaded), before the first request. Only ``serve`` does it: it is a choice
    for the whole process, not for the tests or tools that build an app.
    """
    gc.freeze()


def exposure_allows(settings: HubSettings, host: str, port: int) -> bool:
    """Refuse a network bind with demo credentials or a generated secret unless allowed;
    say loudly what is unsafe either way (hub.exposure)."""
    from hub import exposure
    from hub.auth import verify_password

    if exposure.is_loopback(host):
        return True
    found = exposure.findings(
        settings,
        host,
        demo_agents=exposure.demo_password_agents(settings.agents, verify_password),
    )
    where = f"{host or '*'}:{port}"
    allowed = settings.server.allow_insecure_defaults or exposure.allowed_by_environment(os.environ)
    if any(item.refuse for item in found) and not allowed:
        print(exposure.refusal_text(found, where), file=sys.stderr, flush=True)
        return False
    if found:
        log.warning("%s", exposure.warning_text(found, where))
    return True


def add_commands(commands: Any) -> None:
    serving = commands.add_parser("serve", help="run the hub (applies database migrations first)")
    serving.add_argument("--config", default=DEFAULT_CONFIG, help="hub.yaml (default: %(default)s)")
    serving.add_argument("--host", help="override server.host")
    serving.add_argument("--port", type=int, help="override server.port")
    serving.set_defaults(run=serve)
