"""Hostile mail through a real hub's SMTP door: how long it takes, what it does to the event
loop (/healthz latency) and to the hub's memory, and whether the mail behind it waits.

Issue 14 item 8's three inputs, built here: 40,000 nested ``<div>`` lines (~680 KB of HTML),
3 million short lines (9 MB), 100,000 empty MIME parts (~700 KB). A real ``channelhub serve``
process runs with one email inbox (``parse_workers: 2``); each mail is handed over by a separate
process (stdlib smtplib) so the client's work never counts as the hub's, while this process
polls ``/healthz`` every 20 ms. Half a second in, a small mail follows the hostile one.

Usage: python bench/email_hostile.py [REPO_ROOT]   (the code under test; default: this checkout)
"""

from __future__ import annotations

import sys
from pathlib import Path

# run as a script, this file's folder comes first on sys.path and would shadow the stdlib's email
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import asyncio  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import aiohttp  # noqa: E402
import yaml  # noqa: E402

HEAD = "From: {0}\r\nTo: support@example.com\r\nSubject: {1}\r\nMessage-ID: <{1}@example.org>\r\n"


def nested_divs() -> bytes:
    head = HEAD.format("a@example.org", "divs") + "Content-Type: text/html; charset=utf-8\r\n\r\n"
    return head.encode() + b"".join(b"<div>line %05d\r\n" % n for n in range(40_000))


def short_lines() -> bytes:
    return (HEAD.format("b@example.org", "lines") + "\r\n").encode() + b"a\r\n" * 3_000_000


def empty_parts() -> bytes:
    head = HEAD.format("c@example.org", "parts")
    head += 'Content-Type: multipart/mixed; boundary="z"\r\n\r\n'
    return head.encode() + b"--z\r\n\r\n" * 100_000 + b"--z--\r\n"


INPUTS: dict[str, Callable[[], bytes]] = {
    "40,000 nested divs": nested_divs,
    "3 million short lines": short_lines,
    "100,000 empty MIME parts": empty_parts,
}

SEND = """
import smtplib, sys, time
raw = open(sys.argv[2], "rb").read()
started = time.perf_counter()
with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=600) as client:
    client.sendmail(sys.argv[3], ["support@example.com"], raw)
print(time.perf_counter() - started)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def memory_mb(pid: int) -> dict[str, int]:
    found = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(("VmRSS", "VmHWM")):
                found[line.split(":")[0]] = int(line.split()[1]) // 1024
    return found


async def send(port: int, raw: bytes, sender: str, folder: Path) -> float:
    path = folder / f"mail-{time.monotonic_ns()}"
    path.write_bytes(raw)
    client = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SEND, str(port), str(path), sender, stdout=subprocess.PIPE
    )
    out, _ = await client.communicate()
    path.unlink()
    return float(out.decode())


async def worst_latency(session: aiohttp.ClientSession, url: str, stop: asyncio.Event) -> float:
    """The longest answer of ``url`` polled every 20 ms until ``stop``."""
    worst = 0.0
    while not stop.is_set():
        started = time.perf_counter()
        async with session.get(url) as response:
            await response.read()
        worst = max(worst, time.perf_counter() - started)
        await asyncio.sleep(0.02)
    return worst


async def behind(port: int, folder: Path) -> float:
    """A small mail sent half a second after the hostile one: seconds until its 250."""
    await asyncio.sleep(0.5)
    mail = HEAD.format("f@example.org", f"behind-{time.monotonic_ns()}") + "\r\nhi\r\n"
    return await send(port, mail.encode(), "f@example.org", folder)


async def main(root: Path) -> None:
    folder = Path(tempfile.mkdtemp(prefix="email-hostile-"))
    port, smtp_port = free_port(), free_port()
    config = {
        "server": {"host": "127.0.0.1", "port": port, "secret_key": "bench-0123456789abcdef0123"},
        "storage": {"url": f"sqlite+aiosqlite:///{folder / 'hub.db'}", "blobs": str(folder)},
        "channels": [
            {
                "name": "support",
                "type": "email",
                "settings": {
                    "address": "support@example.com",
                    "parse_workers": 2,
                    "smtp_in": {"port": smtp_port, "recipients": ["support@example.com"]},
                },
            }
        ],
        "queues": [{"name": "general"}],
    }
    (folder / "hub.yaml").write_text(yaml.safe_dump(config))
    hub = subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "serve", "--config", str(folder / "hub.yaml")],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(300):
                try:
                    async with session.get(f"{url}/readyz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            small = (HEAD.format("w@example.org", "warm") + "\r\nhello\r\n").encode()
            await send(smtp_port, small, "w@example.org", folder)
            for name, build in INPUTS.items():
                raw = build()
                stop = asyncio.Event()
                poller = asyncio.create_task(worst_latency(session, f"{url}/healthz", stop))
                before = memory_mb(hub.pid)["VmRSS"]
                follower = asyncio.create_task(behind(smtp_port, folder))
                took = await send(smtp_port, raw, "x@example.org", folder)
                waited = await follower
                stop.set()
                worst = await poller
                after = memory_mb(hub.pid)
                result = {
                    "input": name,
                    "bytes": len(raw),
                    "until_250_s": round(took, 2),
                    "healthz_worst_ms": round(worst * 1000),
                    "hub_rss_mb": [before, after["VmRSS"]],
                    "hub_peak_rss_mb": after["VmHWM"],
                    "mail_behind_s": round(waited, 2),
                }
                print(json.dumps(result, ensure_ascii=False), flush=True)
    finally:
        hub.kill()
        hub.wait()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else _HERE.parent))
