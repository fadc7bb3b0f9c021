"""External customer data: a CRM or ERP asked over HTTP, behind one small interface.

Ingest never blocks on it: a lookup waits at most ``wait`` (a fraction of a second) for the
provider; a slower answer still lands in the cache for the next message, and in the meantime
the message is routed with what the hub knows and the context is marked stale. Answers are
cached for ``ttl``; after ``failures_to_open`` failures in a row the circuit opens and nobody
waits on the provider for ``open_for``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp
import msgspec

from hub.crm_fields import FIELDS
from hub.envelope import Identity
from rules.context import CustomerFacts

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Lookup:
    """What a provider knows: ``values`` (customer field -> value) or None; ``stale`` when the
    answer is missing or old because the provider did not answer in time."""

    values: dict[str, Any] | None
    stale: bool = False


class ContextProvider(Protocol):
    async def lookup(self, identity: Identity) -> Lookup: ...

    async def close(self) -> None: ...


def extract(document: Any, mapping: Mapping[str, str]) -> dict[str, Any]:
    """Customer fields from a provider's JSON answer: ``mapping`` is field -> dotted JSON path.
    Values of the wrong type are left out rather than trusted."""
    values: dict[str, Any] = {}
    for field_name, path in mapping.items():
        value: Any = document
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        expected = FIELDS.get(field_name)
        if value is None or expected is None or isinstance(value, bool):
            continue
        if isinstance(value, expected):
            values[field_name] = value
    return values


def overlay(facts: CustomerFacts, lookup: Lookup | None) -> CustomerFacts:
    """The customer facts with what the provider knows laid over them."""
    if lookup is None:
        return facts
    changes: dict[str, Any] = dict(lookup.values or {})
    if "attributes" in changes:  # the CRM's custom fields add to ours, they do not erase them
        changes["attributes"] = {**facts.attributes, **changes["attributes"]}
    if lookup.values is not None:
        changes["known"] = True
    if lookup.stale:
        changes["stale"] = True
    return msgspec.structs.replace(facts, **changes) if changes else facts


class HttpProvider:
    def __init__(
        self,
        *,
        url: str,
        headers: Mapping[str, str],
        fields: Mapping[str, str],
        session: aiohttp.ClientSession,
        timeout: float = 2.0,
        wait: float = 0.3,
        ttl: float = 300.0,
        failures_to_open: int = 5,
        open_for: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.headers = dict(headers)
        self.fields = dict(fields)
        self.session = session
        self.timeout = timeout
        self.wait = wait
        self.ttl = ttl
        self.failures_to_open = failures_to_open
        self.open_for = open_for
        self.clock = clock
        self._cache: dict[tuple[str, str], tuple[float, dict[str, Any] | None]] = {}
        self._inflight: dict[tuple[str, str], asyncio.Task[dict[str, Any] | None]] = {}
        self._failures = 0
        self._open_until = 0.0
        self.calls = 0

    async def lookup(self, identity: Identity) -> Lookup:
        key = (identity.kind, identity.address)
        now = self.clock()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return Lookup(cached[1])
        old = cached[1] if cached is not None else None
        if now < self._open_until:
            return Lookup(old, stale=True)
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._fetch(identity))
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._settled(key, done))
        try:
            values = await asyncio.wait_for(asyncio.shield(task), self.wait)
        except TimeoutError:
            return Lookup(old, stale=True)  # the fetch goes on and fills the cache
        except Exception:
            return Lookup(old, stale=True)
        return Lookup(values)

    def _settled(self, key: tuple[str, str], task: asyncio.Task[Any]) -> None:
        self._inflight.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved here: failures are counted (and logged) in _fetch

    async def _fetch(self, identity: Identity) -> dict[str, Any] | None:
        url = self.url.format(
            kind=quote(identity.kind, safe=""), address=quote(identity.address, safe="")
        )
        self.calls += 1
        try:
            async with self.session.get(
                url,
                headers=self.headers,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                allow_redirects=False,
            ) as response:
                if response.status == 404:
                    values = None
                elif response.status == 200:
                    values = extract(await response.json(content_type=None), self.fields)
                else:
                    raise aiohttp.ClientResponseError(
                        response.request_info,
                        (),
                        status=response.status,
                        message=f"HTTP {response.status}",
                    )
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            self._failures += 1
            if self._failures >= self.failures_to_open:
                self._open_until = self.clock() + self.open_for
                log.warning(
                    "customer provider failed %d times (%s); not asking it for %.0f s",
                    self._failures,
                    exc,
                    self.open_for,
                )
            raise
        self._failures = 0
        self._cache[(identity.kind, identity.address)] = (self.clock() + self.ttl, values)
        return values

    async def close(self) -> None:
        for task in list(self._inflight.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
