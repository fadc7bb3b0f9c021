"""Memory per idle websocket: what an open chat window costs the hub.

Opens N idle visitor sockets (hello answered by the welcome) against ``channelhub serve`` and
reads the server's resident memory (VmRSS) before and after; the first 50 sockets are a warm-up
so one-time costs (imports, pools) are not counted. In the same run, the baseline is a bare
aiohttp websocket server holding as many idle sockets, each answered with one welcome frame
(a compressed socket creates its zlib streams on first use). Both are measured with
permessage-deflate off (the default: ``compression`` of the web chat channel) and on, because
the client offers it and each compressed socket keeps two zlib streams.

Usage: python bench/sockets.py [--sockets 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.pipeline import ROOT, free_port, start, stop

WARM_UP = 50


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise SystemExit("no VmRSS: this benchmark needs Linux /proc")


async def hold(url: str, count: int, pid: int) -> float:
    """KiB of server memory per socket, over ``count`` idle sockets after the warm-up."""
    async with contextlib.AsyncExitStack() as stack:

        async def open_one() -> None:
            socket = await stack.enter_async_context(connect(url, max_size=2**20))
            await socket.send(json.dumps({"type": "hello"}))
            await socket.recv()  # the welcome: the server has set the socket up

        for _ in range(WARM_UP):
            await open_one()
        await asyncio.sleep(0.5)
        before = rss_kib(pid)
        for _ in range(count):
            await open_one()
        await asyncio.sleep(0.5)
        after = rss_kib(pid)
    return (after - before) / count


def hub_config(directory: Path, port: int, compression: bool) -> Path:
    config = directory / f"hub-{port}.yaml"
    config.write_text(
        f"""server: {{port: {port}, secret_key: bench-secret-0123456789abcdef}}
storage: {{url: "sqlite+aiosqlite:///{directory}/hub-{port}.db", blobs: "{directory}/blobs"}}
logging: {{level: warning}}
channels:
  - name: webchat
    type: webchat
    settings: {{max_sockets_per_visitor: 100, compression: {str(compression).lower()}}}
"""
    )
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=1000)
    args = parser.parse_args()
    results: dict[tuple[str, bool], float] = {}
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        for compression in (False, True):
            port = free_port()
            command = [sys.executable, str(ROOT / "bench" / "relay_server.py"), str(port)]
            relay = start(
                [*command, "compress"] if compression else command,
                workdir,
                f"http://127.0.0.1:{port}/healthz",
            )
            try:
                results[("baseline", compression)] = asyncio.run(
                    hold(f"ws://127.0.0.1:{port}/idle", args.sockets, relay.pid)
                )
            finally:
                stop(relay)
            port = free_port()
            hub = start(
                [
                    sys.executable,
                    "-m",
                    "hub.cli",
                    "serve",
                    "--config",
                    str(hub_config(workdir, port, compression)),
                ],
                workdir,
                f"http://127.0.0.1:{port}/readyz",
            )
            try:
                results[("hub", compression)] = asyncio.run(
                    hold(f"ws://127.0.0.1:{port}/ws/chat", args.sockets, hub.pid)
                )
            finally:
                stop(hub)
    print(
        f"# bench/sockets.py  {time.strftime('%Y-%m-%d')}  {platform.node()}  "
        f"{os.cpu_count()} cpus  python {platform.python_version()}"
    )
    print(f"# {args.sockets:,} idle sockets after {WARM_UP} warm-up; KiB of server RSS per socket")
    print(f"{'':26}{'bare aiohttp':>14}{'channelhub':>12}{'ratio':>8}")
    for compression in (False, True):
        label = "compression on" if compression else "compression off (default)"
        base, mine = results[("baseline", compression)], results[("hub", compression)]
        print(f"{label:26}{base:>14.1f}{mine:>12.1f}{mine / max(base, 0.1):>8.2f}")
    print("# aim: <= 20 KiB per idle chat socket at the default settings")


if __name__ == "__main__":
    main()
