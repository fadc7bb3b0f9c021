"""The ``channelhub`` command line: serve, config check, agents hash-password, version."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
from collections.abc import Sequence

from hub import __version__
from hub.errors import ConfigError
from hub.settings import HubSettings

DEFAULT_CONFIG = os.environ.get("CHANNELHUB_CONFIG", "config/hub.yaml")
log = logging.getLogger("channelhub")


def load_config(path: str) -> HubSettings:
    """hub.yaml validated against the installed connectors (and its rules file, if any)."""
    from hub.plugins import ConnectorRegistry
    from hub.settings import load_settings
    from rules.loader import read_rules

    registry = ConnectorRegistry.discover()
    settings = load_settings(path, registry.settings_model)
    if settings.rules.path:
        read_rules(
            settings.rules.path,
            queues={queue.name for queue in settings.queues},
            calendars=set(settings.business_hours),
        )
    return settings


def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from hub import logs
    from hub.app import create_app

    settings = load_config(args.config)
    logs.configure(settings.logging.level, settings.logging.format)
    host = args.host or settings.server.host
    port = settings.server.port if args.port is None else args.port
    if not _exposure_allows(settings, host, port):
        return 2
    base = settings.server.public_url or f"http://{host}:{port}"
    base = base.rstrip("/")
    agents = ", ".join(agent.id for agent in settings.agents) or "none configured"
    print(
        f"channelhub {__version__}: agent console at {base}/console/ (agents: {agents})", flush=True
    )
    if any(channel.type == "webchat" for channel in settings.channels):
        print(f"channelhub: customer chat demo at {base}/chat/", flush=True)
    web.run_app(
        create_app(settings),
        host=host,
        port=port,
        print=None,
        shutdown_timeout=settings.server.shutdown_timeout,
        access_log=None,
    )
    return 0


def _exposure_allows(settings: HubSettings, host: str, port: int) -> bool:
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


def _config_check(args: argparse.Namespace) -> int:
    load_config(args.config)
    print(f"{args.config}: ok")
    return 0


def _hash_password(args: argparse.Namespace) -> int:
    from hub.auth import hash_password

    if args.password_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            print("the passwords differ", file=sys.stderr)
            return 1
    if len(password) < 8 and not args.allow_short:
        print("use at least 8 characters (or --allow-short for a demo)", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0


def _version(args: argparse.Namespace) -> int:
    print(f"channelhub {__version__}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="channelhub", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the hub (applies database migrations first)")
    serve.add_argument("--config", default=DEFAULT_CONFIG, help="hub.yaml (default: %(default)s)")
    serve.add_argument("--host", help="override server.host")
    serve.add_argument("--port", type=int, help="override server.port")
    serve.set_defaults(run=_serve)

    config = commands.add_parser("config", help="configuration tools")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    check = config_commands.add_parser("check", help="validate hub.yaml and exit")
    check.add_argument("config", nargs="?", default=DEFAULT_CONFIG)
    check.set_defaults(run=_config_check)

    agents = commands.add_parser("agents", help="agent tools")
    agent_commands = agents.add_subparsers(dest="agents_command", required=True)
    hashing = agent_commands.add_parser(
        "hash-password", help="print an argon2 hash for an agent's password_hash"
    )
    hashing.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    hashing.add_argument("--allow-short", action="store_true", help=argparse.SUPPRESS)
    hashing.set_defaults(run=_hash_password)

    from hub import customers_cli, rules_cli

    rules_cli.add_commands(commands)
    show = commands.add_parser(
        "envelope", help="print the envelope the email connector makes of a raw mail (.eml)"
    )
    show.add_argument("file", help="a raw RFC 5322 mail, or - for standard input")
    show.add_argument("--inbox", default="email", help="inbox name to show (default: email)")
    show.set_defaults(run=rules_cli.show_envelope)
    customers_cli.add_commands(commands, DEFAULT_CONFIG)

    version = commands.add_parser("version", help="print the version")
    version.set_defaults(run=_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
