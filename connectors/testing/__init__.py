"""Public helpers for testing a connector, the built-in ones and yours alike.

Two layers:

* :class:`ConnectorConformance`, a test base class that checks a connector's *behaviour* against
  the plugin contract (acknowledged only once stored, redeliveries create nothing, hostile input
  refused and not stored, ``send`` raises, ``stop`` twice is fine). Subclass it with a few
  factories and pytest runs every check; see docs/connectors.md and ``examples/echo_connector``.
* the fakes it is built from, for your own tests: :class:`CollectingSink`, :class:`MemoryBlobs`,
  :func:`connector_context`, :func:`served`, :func:`load_payload`, and the shape checks
  :func:`check_connector_class` and :func:`check_routes`.

Typical use of the fakes::

    from connectors.testing import CollectingSink, connector_context, served

    async def test_inbound():
        sink = CollectingSink()
        async with connector_context("my-inbox", sink=sink) as ctx, served(connector) as url:
            await connector.start(ctx)
            ...  # POST a recorded payload to f"{url}/channels/my-inbox/inbound"
            assert sink.envelopes[0].text == "hello"

Nothing here imports the hub's runtime; the fakes behave like the hub where it matters: ingest is
idempotent per key, history is per thread, blobs are content-addressed. Every check raises
:class:`ConformanceError` explicitly, so ``python -O`` cannot strip it.
"""

from __future__ import annotations

from connectors.testing.conformance import ConnectorConformance
from connectors.testing.fakes import (
    CollectingSink,
    MemoryBlobs,
    connector_context,
    load_payload,
    served,
)
from connectors.testing.harness import Harness, Hostile
from connectors.testing.shape import ConformanceError, check_connector_class, check_routes

__all__ = [
    "CollectingSink",
    "ConformanceError",
    "ConnectorConformance",
    "Harness",
    "Hostile",
    "MemoryBlobs",
    "check_connector_class",
    "check_routes",
    "connector_context",
    "load_payload",
    "served",
]
