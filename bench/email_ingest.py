"""Email ingest benchmark: mails/s through parse → blobs → store → dispatch, per parse worker.

The mail: a 20 KB HTML body (with its plain alternative) and a 100 KB PDF attachment. In the same
run, the baseline is the bare ``email.message_from_bytes(raw, policy=default)`` of the same mail
in one process. The hub runs in this process on durable SQLite with one parse worker process
(``parse_workers: 1``); each mail gets its own Message-ID and goes through the connector's
``receive`` (what IMAP and SMTP in call), so it is parsed in the worker, its files are stored,
the envelope is stored and the conversation is queued for dispatch.

Usage: python bench/email_ingest.py [--mails 2000] [--concurrency 16]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import email
import os
import platform
import tempfile
import time
from email import policy
from email.message import EmailMessage


def sample(number: int) -> bytes:
    message = EmailMessage()
    message["From"] = f"Customer {number} <customer{number}@example.org>"
    message["To"] = "support@example.com"
    message["Subject"] = f"Bestellung {number}: Lieferung fehlt"
    message["Message-ID"] = f"<bench-{number}@example.org>"
    paragraph = "Guten Tag, meine Bestellung ist noch nicht angekommen. " * 4
    html = "".join(f"<p style='margin:0'>{paragraph} <b>{i}</b></p>\n" for i in range(80))
    message.set_content(paragraph * 20)
    message.add_alternative(f"<html><body>{html}</body></html>", subtype="html")
    message.add_attachment(
        os.urandom(100 * 1024), maintype="application", subtype="pdf", filename="rechnung.pdf"
    )
    return message.as_bytes()


def bare_rate(raw: bytes, seconds: float = 3.0) -> float:
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        email.message_from_bytes(raw, policy=policy.default)
        count += 1
    return count / (time.perf_counter() - started)


async def hub_rate(mails: int, concurrency: int, directory: Path) -> float:
    from aiohttp import web

    from hub.app import create_app
    from hub.keys import CONNECTORS
    from hub.plugins import ConnectorRegistry
    from hub.settings import validate_settings
    from rules.yamlfile import YamlDocument

    data = {
        "server": {"secret_key": "bench-secret-key-0123456789abcdef"},
        "storage": {
            "url": f"sqlite+aiosqlite:///{directory}/bench.db",
            "blobs": str(directory / "blobs"),
        },
        "channels": [
            {
                "name": "support",
                "type": "email",
                "settings": {
                    "address": "support@example.com",
                    "parse_workers": 1,
                    "smtp_in": {"host": "127.0.0.1", "port": 0, "recipients": ["@example.com"]},
                },
            }
        ],
        "queues": [{"name": "general"}],
    }
    registry = ConnectorRegistry.discover()
    settings = validate_settings(YamlDocument("bench.yaml", data), registry.settings_model)
    app = create_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        connector = app[CONNECTORS]["support"]
        raws = [sample(i) for i in range(mails + 50)]
        for raw in raws[mails:]:  # warm up: worker process started, tables cached
            await connector.receive(raw, None)  # type: ignore[attr-defined]
        queue = list(raws[:mails])
        started = time.perf_counter()

        async def worker() -> None:
            while queue:
                await connector.receive(queue.pop(), None)  # type: ignore[attr-defined]

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return mails / (time.perf_counter() - started)
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mails", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    raw = sample(0)
    bare = bare_rate(raw)
    with tempfile.TemporaryDirectory() as directory:
        through = asyncio.run(hub_rate(args.mails, args.concurrency, Path(directory)))
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}"
    )
    print(f"mail: {len(raw) / 1024:.0f} KB (20 KB HTML + 100 KB attachment)")
    print(f"bare message_from_bytes:              {bare:8.0f} mails/s (one process)")
    print(f"hub parse→store→dispatch (1 worker):  {through:8.0f} mails/s")
    print(f"ratio hub / bare parse:               {through / bare:8.2f}   (aim ≥ 0.5)")


if __name__ == "__main__":
    main()
