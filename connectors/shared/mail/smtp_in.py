"""An SMTP server of our own (aiosmtpd), for an MX record or a forwarder pointed at the hub.

It runs on the hub's event loop. A recipient outside the allow-list is refused at RCPT (550), a
mail over the size limit at DATA (552), and the final 250 is sent only after the mail is
durably stored: if storing fails the sender gets 451 and retries, so nothing is lost.

The mail itself (DATA) is read in large chunks, never line by line: aiosmtpd awaits each line,
and a 9 MB mail of 3 million short lines held the event loop for seconds and grew the process by
hundreds of MB. Finding the end (``CRLF . CRLF``) and undoing dot-stuffing are byte searches.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, Envelope, Session

from connectors.shared.mail.settings import SmtpInSettings

Handle = Callable[[bytes], Awaitable[None]]


def accepts(allowed: tuple[str, ...], address: str) -> bool:
    """Whether ``address`` is on the allow-list (exact address or ``@domain``)."""
    address = address.strip().lower()
    domain = "@" + address.rsplit("@", 1)[-1] if "@" in address else ""
    return any(item.lower() in (address, domain) for item in allowed)


_END = b"\r\n.\r\n"
_CHUNK = 4 * 1024 * 1024  # more than a stream reader ever buffers: every read drains it


@dataclass(frozen=True, slots=True)
class Data:
    """What a client sent after DATA: the mail (None when over the limit) and its size."""

    content: bytes | None
    size: int


def unstuff(data: bytes) -> bytes:
    """Undo SMTP dot-stuffing (RFC 5321 4.5.2): a line's leading dot is removed."""
    data = data.replace(b"\r\n.", b"\r\n")
    return data[1:] if data.startswith(b".") else data


async def read_data(reader: asyncio.StreamReader, limit: int | None) -> Data | None:
    """Read up to the end-of-data line; None if the connection closed first.

    Bytes over ``limit`` are read and dropped (the client is told 552 after its final dot, as
    RFC 5321 4.2.5 implies). Bytes a client sent after the final dot without waiting for our
    answer (we do not offer PIPELINING) are handed back to ``reader`` for the next command."""
    chunks: list[bytes] = []
    size = 0  # bytes read so far
    tail = b"\r\n"  # the last 4 bytes seen; DATA starts as if after a line end
    over = False
    while True:
        chunk = await reader.read(_CHUNK)
        if not chunk:
            return None
        window = tail + chunk
        end = window.find(_END)
        if end != -1:
            length = size - len(tail) + 2 + end  # the mail ends with its last line's CRLF
            content = None
            if not over and (limit is None or length <= limit):
                if length >= size:  # one copy: the last chunk is cut before joining
                    content = b"".join([*chunks, chunk[: length - size]])
                else:  # the end line's CRLF came in the previous chunk
                    content = b"".join(chunks)[:length]
            rest = window[end + len(_END) :]
            if rest and not reader.at_eof():  # the buffer is empty after a read this large
                reader.feed_data(rest)
            return Data(unstuff(content) if content is not None else None, length)
        size += len(chunk)
        tail = window[-4:]
        if over or (limit is not None and size > limit + len(_END)):
            over, chunks = True, []  # keep reading to the end, storing nothing
        else:
            chunks.append(chunk)


class _Server(SMTP):
    """aiosmtpd's server with DATA read by :func:`read_data`."""

    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        data = await read_data(self._reader, self.data_size_limit)
        if data is None:  # the client went away mid-mail: nothing to answer
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            return
        if data.content is None:
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            await self.push("552 Error: Too much mail data")
            return
        self.envelope.content = data.content
        self.envelope.original_content = data.content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push("250 OK" if status is MISSING else status)


class _Handler:
    def __init__(self, settings: SmtpInSettings, handle: Handle, logger: logging.Logger):
        self.settings = settings
        self.handle = handle
        self.logger = logger

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if not accepts(self.settings.recipients, address):
            return "550 5.1.1 no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        if not isinstance(raw, bytes):
            raw = str(raw or "").encode("utf-8", "surrogateescape")
        try:
            await self.handle(raw)
        except Exception:
            self.logger.exception("storing a mail received by SMTP failed; the sender retries")
            return "451 4.3.0 not stored, try again later"
        return "250 2.0.0 stored"


class SmtpReceiver:
    """The listening server; :attr:`port` is the bound port (useful with ``port: 0``)."""

    def __init__(self, settings: SmtpInSettings, handle: Handle, logger: logging.Logger) -> None:
        self.settings = settings
        self.handler = _Handler(settings, handle, logger)
        self.server: asyncio.Server | None = None
        self.port: int | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()

        def factory() -> Any:
            return _Server(
                self.handler,
                data_size_limit=self.settings.max_message_bytes,
                enable_SMTPUTF8=True,
                decode_data=False,
                hostname="channelhub",
                ident="channelhub ESMTP",
                loop=loop,
            )

        self.server = await loop.create_server(factory, self.settings.host, self.settings.port)
        self.port = int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
