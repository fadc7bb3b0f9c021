"""A TCP proxy on loopback that a test can cut and restore: put between the hub and the shared
PostgreSQL (or a Redis), it makes the server unreachable for the hub alone, without stopping
a server other tests use. Cut: every proxied connection is reset and new ones are closed at
once (as a partition or a server restart looks to a client); restored: connections go through
again."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.cut_off = False
        self._flowing = asyncio.Event()  # cleared: bytes are held, connections hang
        self._flowing.set()
        self.accepted = 0  # connections taken through, for tests that want to see traffic
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut(self) -> None:
        """Reset every connection and refuse new ones until :meth:`restore`."""
        self.cut_off = True
        for writer in list(self._writers):
            _reset(writer)
        self._writers.clear()

    def restore(self) -> None:
        self.cut_off = False
        self._flowing.set()

    def hang(self) -> None:
        """Hold every byte from now on, in both directions and on new connections, until
        :meth:`restore`: the server looks alive and never answers (a partition without
        resets), so a client waits for its own timeout."""
        self._flowing.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_off:
            _reset(writer)
            return
        await self._flowing.wait()
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            _reset(writer)
            return
        self.accepted += 1
        self._writers.update((writer, upstream_writer))
        try:
            await asyncio.gather(
                _pipe(reader, upstream_writer, self._flowing),
                _pipe(upstream_reader, writer, self._flowing),
            )
        finally:
            for each in (writer, upstream_writer):
                self._writers.discard(each)
                _reset(each)


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, flowing: asyncio.Event
) -> None:
    try:
        while data := await reader.read(65536):
            await flowing.wait()
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0): the peer sees the connection broken, not a clean end."""
    sock = writer.get_extra_info("socket")
    with contextlib.suppress(OSError):
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(Exception):
        writer.close()
