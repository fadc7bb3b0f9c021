"""``channelhub config check`` and the one way every command loads hub.yaml."""

from __future__ import annotations

import argparse
import os
from typing import Any

from hub.settings import HubSettings

DEFAULT_CONFIG = os.environ.get("CHANNELHUB_CONFIG", "config/hub.yaml")


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


def check(args: argparse.Namespace) -> int:
    load_config(args.config)
    print(f"{args.config}: ok")
    return 0


def add_commands(commands: Any) -> None:
    config = commands.add_parser("config", help="configuration tools")
    sub = config.add_subparsers(dest="config_command", required=True, metavar="COMMAND")
    checking = sub.add_parser("check", help="validate hub.yaml (and its rules file) and exit")
    checking.add_argument(
        "config", nargs="?", default=DEFAULT_CONFIG, help="hub.yaml (default: %(default)s)"
    )
    checking.set_defaults(run=check)
