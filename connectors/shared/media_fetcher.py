"""Fetching inbound media without becoming a proxy into the hub's own network.

Every URL (and every redirect) is checked against :mod:`connectors.shared.fetch_policy` first;
the resolver then refuses private and loopback answers, so a hostname that resolves to
169.254.169.254 or 127.0.0.1 is not reached either (DNS rebinding included, since the check
runs when connecting). Credentials go only to the host the webhook named. Size and time are
capped.
"""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from connectors.shared.basic_auth import basic_authorization
from connectors.shared.fetch_policy import address_private, media_refusal

MAX_REDIRECTS = 3


class MediaRefused(Exception):
    """A media URL that must not be fetched (never retried)."""


class MediaFailed(Exception):
    """A media fetch that failed (the provider or network); the message is kept without it."""


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp's default resolver and refuses non-public answers."""

    def __init__(self, allow_private: bool) -> None:
        self._inner = DefaultResolver()
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if not self._allow_private:
            for result in results:
                if address_private(result["host"]):
                    raise OSError(f"{host} resolves to a private address; refused")
        return results

    async def close(self) -> None:
        await self._inner.close()


class MediaFetcher:
    """Downloads media a webhook names, under the fetch policy, within a size and a time cap.

    It keeps a session of its own (its resolver refuses private answers, and no proxy from the
    environment may bypass that): :meth:`start` it, :meth:`close` it. ``auth`` (user,
    password) goes only to the host the first URL named, never to a host it redirects to.
    """

    def __init__(
        self,
        *,
        allowed_hosts: tuple[str, ...],
        allow_private: bool,
        max_bytes: int,
        timeout: float,
        auth: tuple[str, str] | None,
    ) -> None:
        self.allowed_hosts = allowed_hosts
        self.allow_private = allow_private
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.authorization = basic_authorization(*auth) if auth else None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(self.allow_private), limit=32, use_dns_cache=False
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            trust_env=False,  # no proxy from the environment: the checks above must hold
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def fetch(self, url: str) -> tuple[bytes, str]:
        """The bytes and content type at ``url``; :class:`MediaRefused` or :class:`MediaFailed`."""
        if self._session is None:
            raise MediaFailed("the media fetcher is not started")
        origin = (urlsplit(url).hostname or "").lower()
        for _hop in range(MAX_REDIRECTS + 1):
            refusal = media_refusal(url, self.allowed_hosts, self.allow_private)
            if refusal is not None:
                raise MediaRefused(refusal)
            same_host = (urlsplit(url).hostname or "").lower() == origin
            try:
                headers = (
                    {"Authorization": self.authorization}
                    if same_host and self.authorization
                    else {}
                )
                async with self._session.get(
                    url, headers=headers, allow_redirects=False
                ) as response:
                    if response.status in {301, 302, 303, 307, 308}:
                        location = response.headers.get("Location")
                        if not location:
                            raise MediaFailed(f"redirect {response.status} without Location")
                        url = urljoin(url, location)
                        continue
                    if response.status != 200:
                        raise MediaFailed(f"media answered HTTP {response.status}")
                    if (response.content_length or 0) > self.max_bytes:
                        raise MediaRefused(f"media is larger than {self.max_bytes} bytes")
                    data = await _read_capped(response, self.max_bytes)
                    return data, response.content_type or "application/octet-stream"
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                raise MediaFailed(f"{exc.__class__.__name__}: {exc}") from None
        raise MediaRefused(f"more than {MAX_REDIRECTS} redirects")


async def _read_capped(response: Any, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise MediaRefused(f"media is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
