"""Following one IMAP mailbox: sync new mail, IDLE for push, reconnect with backoff.

The mailbox position (UIDVALIDITY, last UID) lives in the connector's state store and moves only
after a message is durably stored; a message is marked \\Seen (or moved) only then, too. A crash
anywhere in between refetches the message, and the hub's idempotency key makes that harmless.
A changed UIDVALIDITY (the mailbox was rebuilt) resyncs from shortly before the last sync.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import random
import re
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aioimaplib

from connectors.base import StateStore
from connectors.shared.mail.settings import ImapSettings

Handle = Callable[[bytes, int | None], Awaitable[None]]
"""Store one mail durably: (raw bytes, or only its header when over the size cap, full size)."""

_FETCH_HEAD = re.compile(rb"^\d+ FETCH \((.*)\{(\d+)\}$")
_UID = re.compile(rb"\bUID (\d+)")
_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)")
_CODE = re.compile(rb"\[(UIDVALIDITY|UIDNEXT) (\d+)\]")
RESYNC_MARGIN = 2 * 86400.0
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


T = TypeVar("T")


async def _within(awaitable: Awaitable[T], seconds: float) -> T:
    """``asyncio.wait_for`` without its Python 3.11 flaw: a cancellation that arrives as the
    awaited thing finishes is swallowed there, and ``stop()`` then waited forever for a follower
    that went on reconnecting. ``asyncio.timeout`` never swallows the caller's cancellation."""
    async with asyncio.timeout(seconds):
        return await awaitable


class ImapError(Exception):
    """The server refused a command, or the connection broke."""


@dataclass(frozen=True, slots=True)
class Position:
    uidvalidity: int
    last_uid: int
    synced_at: float


def imap_date(day: datetime.date) -> str:
    """A date as IMAP SEARCH wants it (``1-Feb-2026``), independent of the locale."""
    return f"{day.day}-{_MONTHS[day.month - 1]}-{day.year}"


def fetched_messages(lines: list[bytes | bytearray]) -> list[tuple[int, int, bytes]]:
    """(uid, size, bytes) of each message in a FETCH response, in response order."""
    found = []
    for index, line in enumerate(lines):
        if isinstance(line, bytearray):
            continue
        head = _FETCH_HEAD.match(line)
        if head is None or index + 1 >= len(lines):
            continue
        uid, size = _UID.search(line), _SIZE.search(line)
        literal = lines[index + 1]
        tail = lines[index + 2] if index + 2 < len(lines) else b""
        if uid is None and isinstance(tail, bytes):  # some servers put UID after the literal
            uid = _UID.search(tail)
        if uid is None:
            continue
        data = bytes(literal) if isinstance(literal, bytearray) else b""
        found.append((int(uid[1]), int(size[1]) if size else len(data), data))
    return found


def _answer_sasl_errors(client: aioimaplib.IMAP4) -> None:
    """Finish a refused XOAUTH2 exchange as RFC 7628 asks.

    A server refusing the token (Gmail, Microsoft 365, Dovecot) sends a "+ <base64 error>"
    challenge and waits for an empty response before its tagged NO. aioimaplib only files the
    challenge away, so the login would hang until the timeout; answering the empty line gets the
    NO at once, and it is reported as a refused login."""
    protocol: Any = client.protocol
    original = protocol._continuation

    def continuation(line: bytes) -> None:
        command = protocol.pending_sync_command
        if command is not None and command.name == "AUTHENTICATE":
            protocol.transport.write(b"\r\n")
            return
        original(line)

    protocol._continuation = continuation


class MailboxFollower:
    """Runs until cancelled; :attr:`problem` says why mail is not arriving right now."""

    def __init__(
        self,
        settings: ImapSettings,
        handle: Handle,
        state: StateStore,
        logger: logging.Logger,
        clock: Callable[[], float],
        *,
        max_bytes: int,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.settings = settings
        self.handle = handle
        self.state = state
        self.logger = logger
        self.clock = clock
        self.max_bytes = max_bytes
        self.tls_context = tls_context or (
            ssl.create_default_context(cafile=settings.ca_file) if settings.ca_file else None
        )
        self.problem: str | None = "not connected yet"
        self.synced = asyncio.Event()  # set after each completed sync (tests wait on it)
        self._client: aioimaplib.IMAP4 | None = None
        self._lost = asyncio.Event()
        self._key = f"imap:{settings.username}:{settings.mailbox}"

    # -- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                delay = min(self.settings.reconnect_max, 2.0 ** min(failures, 12)) * (
                    0.5 + random.random() / 2  # jitter: many hubs do not reconnect in step
                )
                self.problem = f"{self.settings.host}: {exc.__class__.__name__}: {exc}"[:300]
                self.logger.warning("IMAP %s; reconnecting in %.0f s", self.problem, delay)
                await self._close()
                await asyncio.sleep(delay)
            else:
                failures = 0

    async def close(self) -> None:
        await self._close()

    async def _close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        with contextlib.suppress(Exception):
            if client.has_pending_idle():
                client.idle_done()
        with contextlib.suppress(Exception):
            await _within(client.logout(), 2)
        with contextlib.suppress(Exception):
            if client.protocol.transport is not None:
                client.protocol.transport.close()

    async def _session(self) -> None:
        client = await self._connect()
        self.problem = None  # logged in: healthy while the first sync runs, not "not connected"
        idle = client.has_capability("IDLE")
        while True:
            await self.sync()
            self.synced.set()
            wait = min(self.settings.idle_renew, self.settings.poll_interval)
            if not idle:
                await self._sleep_or_lost(wait)
                continue
            idle_task = await client.idle_start(timeout=wait)
            push = asyncio.ensure_future(client.wait_server_push(timeout=wait + 5))
            lost = asyncio.ensure_future(self._lost.wait())
            try:
                await asyncio.wait({push, lost}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                push.cancel()
                lost.cancel()
            if self._lost.is_set():
                raise ImapError("connection lost")
            client.idle_done()
            await _within(idle_task, self.settings.timeout)

    async def _sleep_or_lost(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await _within(self._lost.wait(), seconds)
        if self._lost.is_set():
            raise ImapError("connection lost")

    async def _connect(self) -> aioimaplib.IMAP4:
        settings = self.settings
        self._lost = asyncio.Event()
        lost = self._lost
        context = None
        if settings.security == "tls":
            context = self.tls_context or ssl.create_default_context()
        client = aioimaplib.IMAP4(
            settings.host,
            settings.effective_port,
            timeout=settings.timeout,
            conn_lost_cb=lambda _exc: lost.set(),
            ssl_context=context,
        )
        self._client = client
        await client.wait_hello_from_server()
        if settings.security == "starttls":
            await self._starttls(client)
        if settings.oauth2_token is not None:
            # IMAP4.xoauth2 is annotated bytes, but the protocol underneath formats the token
            # into the SASL string: it needs str (bytes would send "b'…'")
            token: Any = settings.oauth2_token.get_secret_value()
            _answer_sasl_errors(client)
            response = await client.xoauth2(settings.username, token)
        else:
            assert settings.password is not None
            response = await client.login(settings.username, settings.password.get_secret_value())
        if response.result != "OK":
            raise ImapError(f"login refused: {_text(response)}")
        return client

    async def _starttls(self, client: aioimaplib.IMAP4) -> None:
        """Upgrade the plain connection (aioimaplib has no STARTTLS of its own)."""
        protocol = client.protocol
        if "STARTTLS" not in protocol.capabilities:
            raise ImapError("the server does not offer STARTTLS")
        response = await _within(
            protocol.execute(aioimaplib.Command("STARTTLS", protocol.new_tag())),
            self.settings.timeout,
        )
        if response.result != "OK":
            raise ImapError(f"STARTTLS refused: {_text(response)}")
        loop = asyncio.get_running_loop()
        transport = await loop.start_tls(
            protocol.transport,
            protocol,
            self.tls_context or ssl.create_default_context(),
            server_hostname=self.settings.host,
        )
        protocol.transport = transport
        await _within(protocol.capability(), self.settings.timeout)  # RFC 3501 6.2.1

    # -- syncing -------------------------------------------------------------------------------

    async def sync(self) -> int:
        """Store every message after our position; returns how many were handed over."""
        client = self._client
        if client is None:
            raise ImapError("not connected")
        selected = await client.select(self.settings.mailbox)
        if selected.result != "OK":
            raise ImapError(f"cannot select {self.settings.mailbox!r}: {_text(selected)}")
        codes = {m[1].decode(): int(m[2]) for line in selected.lines for m in _CODE.finditer(line)}
        uidvalidity = codes.get("UIDVALIDITY", 0)
        position = await self._position()
        if position is None:
            criteria = self._first_criteria()
            if criteria is None:  # backfill none: start after what is there now
                await self._save(uidvalidity, codes.get("UIDNEXT", 1) - 1)
                return 0
        elif position.uidvalidity != uidvalidity:
            since = datetime.datetime.fromtimestamp(
                position.synced_at - RESYNC_MARGIN, datetime.UTC
            ).date()
            self.logger.warning(
                "UIDVALIDITY of %s changed (%s → %s): resyncing mail since %s",
                self.settings.mailbox,
                position.uidvalidity,
                uidvalidity,
                since,
            )
            criteria = ["SINCE", imap_date(since)]
        else:
            criteria = ["UID", f"{position.last_uid + 1}:*"]
        found = await client.uid_search(*criteria, charset=None)
        if found.result != "OK":
            raise ImapError(f"search failed: {_text(found)}")
        after = position.last_uid if position and position.uidvalidity == uidvalidity else 0
        uids = sorted(
            {int(token) for token in found.lines[0].split() if token.isdigit()}
            if found.lines
            else set()
        )
        uids = [uid for uid in uids if uid > after]
        handled = 0
        for start in range(0, len(uids), self.settings.fetch_batch):
            batch = uids[start : start + self.settings.fetch_batch]
            handled += await self._fetch_and_store(client, batch)
            await self._save(uidvalidity, batch[-1])
        if not uids and (position is None or position.uidvalidity != uidvalidity):
            await self._save(uidvalidity, codes.get("UIDNEXT", 1) - 1)
        return handled

    def _first_criteria(self) -> list[str] | None:
        backfill = self.settings.backfill
        if backfill == "none":
            return None
        if backfill == "all":
            return ["ALL"]
        assert isinstance(backfill, datetime.date)
        return ["SINCE", imap_date(backfill)]

    async def _fetch_and_store(self, client: aioimaplib.IMAP4, uids: list[int]) -> int:
        uid_set = ",".join(map(str, uids))
        sizes = await client.uid("fetch", uid_set, "(UID RFC822.SIZE)")
        if sizes.result != "OK":
            raise ImapError(f"fetch failed: {_text(sizes)}")
        size_of: dict[int, int] = {}
        for line in sizes.lines:
            if isinstance(line, bytes):
                uid_match, size_match = _UID.search(line), _SIZE.search(line)
                if uid_match and size_match:
                    size_of[int(uid_match[1])] = int(size_match[1])
        small = [uid for uid in uids if size_of.get(uid, 0) <= self.max_bytes]
        large = [uid for uid in uids if size_of.get(uid, 0) > self.max_bytes]
        fetched: dict[int, tuple[bytes, int | None]] = {}
        if small:
            response = await client.uid("fetch", ",".join(map(str, small)), "(UID BODY.PEEK[])")
            if response.result != "OK":
                raise ImapError(f"fetch failed: {_text(response)}")
            for uid, _size, data in fetched_messages(response.lines):
                fetched[uid] = (data, None)
        for uid in large:  # only the header: the mail stays in the mailbox for a human
            response = await client.uid("fetch", str(uid), "(UID BODY.PEEK[HEADER])")
            for found_uid, _size, data in fetched_messages(response.lines):
                fetched[found_uid] = (data, size_of[uid])
        done: list[int] = []
        for uid in uids:
            if uid not in fetched:  # expunged between SEARCH and FETCH
                continue
            data, oversize = fetched[uid]
            await self.handle(data, oversize)
            done.append(uid)
        if done:
            await self._acknowledge(client, done)
        return len(done)

    async def _acknowledge(self, client: aioimaplib.IMAP4, uids: list[int]) -> None:
        """Tell the mailbox these are stored: \\Seen, or moved to the configured folder."""
        uid_set = ",".join(map(str, uids))
        target = self.settings.move_to
        if target is None:
            response = await client.uid("store", uid_set, "+FLAGS.SILENT", r"(\Seen)")
        elif client.has_capability("MOVE"):
            response = await client.uid("move", uid_set, _quoted(target))
        else:
            response = await client.uid("copy", uid_set, _quoted(target))
            if response.result == "OK":
                await client.uid("store", uid_set, "+FLAGS.SILENT", r"(\Deleted \Seen)")
                if client.has_capability("UIDPLUS"):
                    response = await client.uid("expunge", uid_set)
        if response.result != "OK":
            # stored but not acknowledged: the next sync refetches, the hub sees duplicates
            self.logger.warning("could not mark %s as handled: %s", uid_set, _text(response))

    async def _position(self) -> Position | None:
        raw = await self.state.get(self._key)
        if raw is None:
            return None
        try:
            value = json.loads(raw)
            return Position(int(value["uidvalidity"]), int(value["last_uid"]), value["at"])
        except (ValueError, KeyError, TypeError):
            return None

    async def _save(self, uidvalidity: int, last_uid: int) -> None:
        await self.state.put(
            self._key,
            json.dumps({"uidvalidity": uidvalidity, "last_uid": last_uid, "at": self.clock()}),
        )


def _quoted(mailbox: str) -> str:
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _text(response: aioimaplib.Response) -> str:
    return " ".join(
        line.decode("utf-8", "replace") if isinstance(line, bytes | bytearray) else str(line)
        for line in response.lines
    )[:300]
