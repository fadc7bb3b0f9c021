"""SMS webhook benchmark: signed Twilio webhooks/s until stored and on the agent's screen.

In the same run, against a baseline: a bare aiohttp server that only checks the signature with
the SDK's RequestValidator and answers ``<Response/>`` (``--baseline-server PORT`` runs it).
Both servers are pinned to cpu 0, this client to cpu 1. The hub runs ``channelhub serve`` on
durable SQLite (synchronous=FULL) with one agent holding the conversation, so a webhook counts
when the agent's console received the message it carried (stored, threaded, dispatched).

Usage: python bench/sms.py [--messages 5000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.pipeline import PASSWORD, ROOT, free_port, login, pin, start, stop

ACCOUNT = "AC" + "1" * 32
TOKEN = "bench-auth-token-0123456789abcdef"
PUBLIC = "https://hub.example.com"
TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


def baseline_server(port: int) -> None:
    from aiohttp import web
    from twilio.request_validator import RequestValidator

    validator = RequestValidator(TOKEN)

    async def inbound(request: web.Request) -> web.Response:
        form = await request.post()
        url = PUBLIC + request.path_qs
        if not validator.validate(url, form, request.headers.get("X-Twilio-Signature", "")):
            return web.Response(status=403)
        return web.Response(text=TWIML, content_type="text/xml")

    async def ready(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/channels/sms/inbound", inbound)
    app.router.add_get("/readyz", ready)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def hub_config(directory: Path, port: int) -> Path:
    from hub.auth import hash_password

    config = directory / "hub.yaml"
    config.write_text(
        f"""server: {{port: {port}, secret_key: bench-secret-0123456789abcdef}}
storage: {{url: "sqlite+aiosqlite:///{directory}/hub.db", blobs: "{directory}/blobs",
          sqlite_synchronous: full}}
logging: {{level: warning}}
channels:
  - name: sms
    type: sms
    settings: {{account_sid: {ACCOUNT}, auth_token: {TOKEN}, from: "+4930901820",
               public_url: "{PUBLIC}", max_body_bytes: 65536}}
dispatch: {{offer_timeout: 60s}}
agents:
  - {{id: agent0, name: Agent, password_hash: '{hash_password(PASSWORD)}',
     max_conversations: 10}}
"""
    )
    return config


def webhooks(count: int) -> list[tuple[bytes, str]]:
    """Bodies and signatures of ``count`` distinct inbound SMS from one customer."""
    from twilio.request_validator import RequestValidator

    validator = RequestValidator(TOKEN)
    signed = []
    for index in range(count):
        sid = f"SM{index:032x}"
        fields = {
            "SmsMessageSid": sid,
            "NumMedia": "0",
            "SmsSid": sid,
            "SmsStatus": "received",
            "Body": f"Order {index}: where is it? Please answer soon.",
            "To": "+4930901820",
            "NumSegments": "1",
            "MessageSid": sid,
            "AccountSid": ACCOUNT,
            "From": "+4915112345678",
            "ApiVersion": "2010-04-01",
            "FromCountry": "DE",
            "ToCountry": "DE",
        }
        signature = validator.compute_signature(PUBLIC + "/channels/sms/inbound", fields)
        signed.append((urlencode(fields).encode(), signature))
    return signed


async def blast(url: str, bodies: list[tuple[bytes, str]], concurrency: int) -> float:
    """Seconds to post every webhook (each answered 200)."""
    queue = iter(bodies)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for body, signature in queue:
                async with session.post(
                    url + "/channels/sms/inbound",
                    data=body,
                    headers={
                        "Content-Type": "application/x-www-form-urlencoded",
                        "X-Twilio-Signature": signature,
                    },
                ) as response:
                    await response.read()
                    if response.status != 200:
                        raise SystemExit(f"webhook answered {response.status}")

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - began


async def measure_hub(
    url: str, ws_url: str, bodies: list[tuple[bytes, str]], concurrency: int
) -> float:
    token = login(url, "agent0")
    async with connect(f"{ws_url}/ws/agent", max_size=2**24) as socket:
        await socket.send(json.dumps({"type": "auth", "token": token}))
        # the first message opens the conversation; the agent accepts it
        await blast(url, bodies[:1], 1)
        while True:
            frame = json.loads(await socket.recv())
            if frame["type"] == "offer":
                await socket.send(
                    json.dumps({"type": "accept", "conversation_id": frame["conversation_id"]})
                )
            if frame["type"] == "conversation":
                break
        remaining = bodies[1:]
        received = 0

        async def read() -> float:
            nonlocal received
            while received < len(remaining):
                frame = json.loads(await socket.recv())
                if frame["type"] == "message":
                    received += 1
            return time.perf_counter()

        began = time.perf_counter()
        reader = asyncio.create_task(read())
        await blast(url, remaining, concurrency)
        finished = await asyncio.wait_for(reader, 120)
        return finished - began


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--baseline-server", type=int)
    args = parser.parse_args()
    pin(0, 1)
    bodies = webhooks(args.messages + 1)

    port = free_port()
    baseline = start(
        [sys.executable, str(Path(__file__)), "--baseline-server", str(port)],
        ROOT,
        f"http://127.0.0.1:{port}/readyz",
    )
    try:
        await blast(f"http://127.0.0.1:{port}", bodies[:200], args.concurrency)  # warm up
        bare = await blast(f"http://127.0.0.1:{port}", bodies[1:], args.concurrency)
    finally:
        stop(baseline)

    with tempfile.TemporaryDirectory() as directory:
        port = free_port()
        config = hub_config(Path(directory), port)
        hub = start(
            [sys.executable, "-m", "hub.cli", "serve", "--config", str(config)],
            ROOT,
            f"http://127.0.0.1:{port}/readyz",
        )
        try:
            elapsed = await measure_hub(
                f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", bodies, args.concurrency
            )
        finally:
            stop(hub)

    n = args.messages
    print(
        f"machine: {platform.machine()}, python {platform.python_version()}, "
        "servers pinned to cpu 0, client to cpu 1; hub on SQLite synchronous=FULL"
    )
    print(f"baseline (validate signature, answer <Response/>): {n / bare:,.0f} webhooks/s")
    print(f"hub (validate, store, thread, dispatch, agent got it): {n / elapsed:,.0f} webhooks/s")
    print(f"ratio hub/baseline: {bare / elapsed:.2f} (aim >= 0.30)")


if __name__ == "__main__":
    if "--baseline-server" in sys.argv:
        baseline_server(int(sys.argv[sys.argv.index("--baseline-server") + 1]))
    else:
        asyncio.run(main())
