"""Alembic environment: runs on the connection the hub hands over (see ``hub.store.migrate``)."""

from __future__ import annotations

from alembic import context

from hub.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - we never run alembic's own CLI against an URL
    raise RuntimeError("run migrations through `channelhub serve` or hub.store.migrate")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
