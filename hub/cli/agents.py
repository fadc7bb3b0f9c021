"""``channelhub agents hash-password``: the value of an agent's ``password_hash``."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any


def hash_password(args: argparse.Namespace) -> int:
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


def add_commands(commands: Any) -> None:
    agents = commands.add_parser("agents", help="agent tools")
    sub = agents.add_subparsers(dest="agents_command", required=True, metavar="COMMAND")
    hashing = sub.add_parser(
        "hash-password", help="print an argon2 hash for an agent's password_hash"
    )
    hashing.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    hashing.add_argument("--allow-short", action="store_true", help=argparse.SUPPRESS)
    hashing.set_defaults(run=hash_password)
