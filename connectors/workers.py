"""Moved to :mod:`connectors.shared.workers`; this name stays only for ``rules/reload.py``
(outside the connectors, changed by its own owners). Import the shared module."""

from connectors.shared.workers import (
    JobTimeout,
    WorkerError,
    WorkerLost,
    WorkerPool,
    die_with_parent,
)

__all__ = ["JobTimeout", "WorkerError", "WorkerLost", "WorkerPool", "die_with_parent"]
