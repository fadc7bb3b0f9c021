"""The ``channelhub`` command line, one module per command group (see docs/cli.md); the
command itself is :func:`hub.cli.main.main`."""
