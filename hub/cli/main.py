"""``channelhub``: the parser that lists every command, and the entry point."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from hub import __version__
from hub.cli import agents, config, customers, envelope, privacy, report, rules, serve
from hub.errors import ConfigError

DESCRIPTION = (
    "channelhub: every customer channel in one hub. Each command has --help; "
    "docs/cli.md describes them all."
)


def _version(args: argparse.Namespace) -> int:
    print(f"channelhub {__version__}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="channelhub",
        description=DESCRIPTION,
    )
    parser.add_argument("--version", action="version", version=f"channelhub {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve.add_commands(commands)
    config.add_commands(commands)
    rules.add_commands(commands)
    envelope.add_commands(commands)
    customers.add_commands(commands)
    agents.add_commands(commands)
    report.add_commands(commands)
    privacy.add_commands(commands)
    version = commands.add_parser("version", help="print the version")
    version.set_defaults(run=_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; a configuration or input problem prints ``file:line: what`` lines
    to standard error and exits 1."""
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
