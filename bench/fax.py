"""Fax ingest benchmark: pages/s through webhook → read → OCR → stored, next to bare tesseract.

The page: an A4 fax page at 204 x 196 dpi with five lines of German text, CCITT G4 in a PDF
(what gateways deliver). Baseline, same run: ``pytesseract.image_to_string`` of the same page
image in this process, one page after another (what OCR alone costs). The hub runs in this
process on durable SQLite with one fax worker process (``ocr.workers: 1``); each fax is posted
to the Sinch webhook as multipart (two in flight, so the worker is never idle), read, previewed,
recognized, its files stored and the message stored and queued. Overhead = how much longer a
page takes through the hub than through tesseract alone.

Usage: python bench/fax.py [--pages 40]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("OMP_THREAD_LIMIT", "1")  # as the fax worker runs tesseract


def bare_rate(pages: int) -> float:
    import pytesseract

    from connectors.fax import documents
    from tests.fax_samples import g4_pdf, page

    data = g4_pdf([page(["Bestellung Nr. 4711", "bitte liefern Sie 12 Stück Größe M."])])
    image = documents.read(data, documents.Limits()).pages[0].image
    assert image is not None
    pytesseract.image_to_string(image, lang="deu", config="--psm 3")  # warm up
    started = time.perf_counter()
    for _ in range(pages):
        pytesseract.image_to_string(image, lang="deu", config="--psm 3")
    return pages / (time.perf_counter() - started)


async def hub_rate(pages: int, directory: Path) -> float:
    import aiohttp
    from aiohttp import web

    from connectors.fax.connector import FaxConnector
    from hub.app import create_app
    from hub.keys import CONNECTORS
    from hub.plugins import ConnectorRegistry
    from hub.settings import validate_settings
    from rules.yamlfile import YamlDocument
    from tests.fake_fax import sinch_fax, sinch_webhook
    from tests.fax_samples import g4_pdf, page

    data: dict[str, Any] = {
        "server": {"secret_key": "bench-secret-key-0123456789abcdef"},
        "storage": {
            "url": f"sqlite+aiosqlite:///{directory}/bench.db",
            "blobs": str(directory / "blobs"),
        },
        "channels": [
            {
                "name": "fax",
                "type": "fax",
                "settings": {
                    "gateway": "sinch",
                    "number": "+4930901820",
                    "sinch": {
                        "project_id": "bench",
                        "key_id": "bench",
                        "key_secret": "bench-secret",
                        "webhook_username": "faxhook",
                        "webhook_password": "webhook-password-0123456789",
                        "api_base_url": "http://127.0.0.1:9",
                    },
                    "ocr": {"languages": "deu", "workers": 1},
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
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}/channels/fax/webhook"
    connector = app[CONNECTORS]["fax"]
    assert isinstance(connector, FaxConnector)
    document = g4_pdf([page(["Bestellung Nr. 4711", "bitte liefern Sie 12 Stück Größe M."])])
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(2):  # warm up: the worker process started, tables cached
                status, text = await sinch_webhook(
                    session, url, "INCOMING_FAX", sinch_fax(), document
                )
                assert status == 200, text
            await connector.idle()
            queue = list(range(pages))
            started = time.perf_counter()

            async def poster() -> None:
                while queue:
                    queue.pop()
                    status, text = await sinch_webhook(
                        session, url, "INCOMING_FAX", sinch_fax(), document
                    )
                    assert status == 200, text

            await asyncio.gather(poster(), poster())
            # the webhook is answered once the fax is kept: stored means read and handed over
            await connector.idle()
            return pages / (time.perf_counter() - started)
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, default=40)
    args = parser.parse_args()
    bare = bare_rate(args.pages)
    with tempfile.TemporaryDirectory() as directory:
        through = asyncio.run(hub_rate(args.pages, Path(directory)))
    overhead = bare / through - 1
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}"
    )
    print("page: A4, 204 x 196 dpi, CCITT G4 in PDF, German text")
    print(f"bare tesseract (one process):          {bare:7.2f} pages/s")
    print(f"hub webhook→OCR→stored (1 worker):     {through:7.2f} pages/s")
    print(f"pipeline overhead over OCR time:       {overhead * 100:6.1f} %   (aim < 10 %)")


if __name__ == "__main__":
    main()
