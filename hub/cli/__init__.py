"""The ``channelhub`` command line, one module per command group (see docs/cli.md)."""

from __future__ import annotations

from hub.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
