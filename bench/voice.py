"""Voice webhook benchmark: signed inbound-call webhooks answered with TwiML, against two
baselines measured in the same run.

1. a bare aiohttp handler that checks the signature with the SDK's RequestValidator and
   returns fixed TwiML (``--baseline-server PORT`` runs it);
2. the hub's own SMS webhook (the same validation, store and dispatch path for a message);
3. the hub's voice webhook: validate, parse, store the call as a conversation (durably, on
   SQLite synchronous=FULL), then answer ``<Say>`` + ``<Enqueue>`` built with VoiceResponse.

Two figures each: throughput (webhooks/s at ``--concurrency`` in flight) and the answer time
p50/p99 at a paced ``--rate`` (calls per second, the issue's 100 calls/s). Servers are pinned
to cpu 0, this client to cpu 1. Every call is a distinct CallSid (a new conversation).

Usage: python bench/voice.py [--calls 2000] [--rate 100] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.pipeline import ROOT, free_port, percentile, pin, start, stop

ACCOUNT = "AC" + "1" * 32
TOKEN = "bench-auth-token-0123456789abcdef"
PUBLIC = "https://hub.example.com"
NUMBER = "+4930901820"
VOICE = "/channels/phone/voice"
SMS = "/channels/sms/inbound"
Signed = tuple[str, bytes, str]  # path, body, signature


def baseline_server(port: int) -> None:
    from aiohttp import web
    from twilio.request_validator import RequestValidator
    from twilio.twiml.voice_response import VoiceResponse

    validator = RequestValidator(TOKEN)
    answer = VoiceResponse()
    answer.say("Thank you for calling.", language="en-US")
    answer.enqueue("channelhub-phone", wait_url=PUBLIC + "/channels/phone/wait")
    fixed = str(answer.to_xml())

    async def inbound(request: web.Request) -> web.Response:
        form = await request.post()
        url = PUBLIC + request.path_qs
        if not validator.validate(url, form, request.headers.get("X-Twilio-Signature", "")):
            return web.Response(status=403)
        return web.Response(text=fixed, content_type="text/xml")

    async def ready(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post(VOICE, inbound)
    app.router.add_get("/readyz", ready)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def hub_config(directory: Path, port: int) -> Path:
    config = directory / "hub.yaml"
    config.write_text(
        f"""server: {{port: {port}, secret_key: bench-secret-0123456789abcdef}}
storage: {{url: "sqlite+aiosqlite:///{directory}/hub.db", blobs: "{directory}/blobs",
          sqlite_synchronous: full}}
logging: {{level: warning}}
channels:
  - name: phone
    type: voice
    settings: {{account_sid: {ACCOUNT}, auth_token: {TOKEN}, from: "{NUMBER}",
               public_url: "{PUBLIC}"}}
  - name: sms
    type: sms
    settings: {{account_sid: {ACCOUNT}, auth_token: {TOKEN}, from: "{NUMBER}",
               public_url: "{PUBLIC}"}}
"""
    )
    return config


def calls(count: int, prefix: str) -> list[Signed]:
    """Signed voice webhooks of ``count`` distinct calls from distinct callers."""
    from twilio.request_validator import RequestValidator

    validator = RequestValidator(TOKEN)
    signed = []
    for index in range(count):
        fields = {
            "AccountSid": ACCOUNT,
            "ApiVersion": "2010-04-01",
            "CallSid": f"CA{prefix}{index:031x}",
            "CallStatus": "ringing",
            "Direction": "inbound",
            "From": f"+49151{index:08d}",
            "FromCountry": "DE",
            "To": NUMBER,
            "ToCountry": "DE",
        }
        signature = validator.compute_signature(PUBLIC + VOICE, fields)
        signed.append((VOICE, urlencode(fields).encode(), signature))
    return signed


def messages(count: int, prefix: str) -> list[Signed]:
    """Signed SMS webhooks of ``count`` distinct messages from distinct senders."""
    from twilio.request_validator import RequestValidator

    validator = RequestValidator(TOKEN)
    signed = []
    for index in range(count):
        sid = f"SM{prefix}{index:031x}"
        fields = {
            "AccountSid": ACCOUNT,
            "ApiVersion": "2010-04-01",
            "MessageSid": sid,
            "SmsMessageSid": sid,
            "SmsSid": sid,
            "SmsStatus": "received",
            "NumMedia": "0",
            "Body": f"Order {index}: where is it?",
            "From": f"+49152{index:08d}",
            "To": NUMBER,
        }
        signature = validator.compute_signature(PUBLIC + SMS, fields)
        signed.append((SMS, urlencode(fields).encode(), signature))
    return signed


async def _post(session: aiohttp.ClientSession, url: str, item: Signed) -> float:
    path, body, signature = item
    began = time.perf_counter()
    async with session.post(
        url + path,
        data=body,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
    ) as response:
        await response.read()
        if response.status != 200:
            raise SystemExit(f"{path} answered {response.status}")
    return time.perf_counter() - began


async def throughput(url: str, items: list[Signed], concurrency: int) -> float:
    """Webhooks per second with ``concurrency`` in flight."""
    queue = iter(items)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:

        async def worker() -> None:
            for item in queue:
                await _post(s, url, item)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return len(items) / (time.perf_counter() - began)


async def paced(url: str, items: list[Signed], rate: float) -> tuple[float, float, float]:
    """Answer times (p50, p99 ms) and the rate achieved when sending ``rate`` per second."""
    times: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session:
        began = time.perf_counter()

        async def one(index: int, item: Signed) -> None:
            delay = began + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            times.append(await _post(session, url, item))

        await asyncio.gather(*(one(i, item) for i, item in enumerate(items)))
        achieved = len(items) / (time.perf_counter() - began)
    return percentile(times, 0.5), percentile(times, 0.99), achieved  # ms already


async def measure(
    url: str, make: list[Signed], pace: list[Signed], args: argparse.Namespace
) -> tuple[float, tuple[float, float, float]]:
    rate = await throughput(url, make, args.concurrency)
    return rate, await paced(url, pace, args.rate)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--baseline-server", type=int)
    args = parser.parse_args()
    pin(0, 1)
    n, paced_n = args.calls, max(100, min(args.calls, int(args.rate * 10)))

    port = free_port()
    bare_server = start(
        [sys.executable, str(Path(__file__)), "--baseline-server", str(port)],
        ROOT,
        f"http://127.0.0.1:{port}/readyz",
    )
    try:
        url = f"http://127.0.0.1:{port}"
        await throughput(url, calls(200, "0"), args.concurrency)  # warm up
        bare = await measure(url, calls(n, "1"), calls(paced_n, "2"), args)
    finally:
        stop(bare_server)

    with tempfile.TemporaryDirectory() as directory:
        port = free_port()
        hub = start(
            [
                sys.executable,
                "-m",
                "hub.cli",
                "serve",
                "--config",
                str(hub_config(Path(directory), port)),
            ],
            ROOT,
            f"http://127.0.0.1:{port}/readyz",
        )
        try:
            url = f"http://127.0.0.1:{port}"
            await throughput(url, calls(200, "0") + messages(200, "0"), args.concurrency)
            sms = await measure(url, messages(n, "1"), messages(paced_n, "2"), args)
            voice = await measure(url, calls(n, "3"), calls(paced_n, "4"), args)
        finally:
            stop(hub)

    print(
        f"machine: {platform.machine()}, python {platform.python_version()}, "
        "servers pinned to cpu 0, client to cpu 1; hub on SQLite synchronous=FULL; "
        f"{n} webhooks at {args.concurrency} in flight, {paced_n} paced at {args.rate:g}/s"
    )
    for name, (rate, (p50, p99, achieved)) in (
        ("baseline (validate, fixed TwiML)", bare),
        ("hub SMS webhook (stored, dispatched)", sms),
        ("hub voice webhook (stored, TwiML)", voice),
    ):
        print(
            f"{name}: {rate:,.0f} webhooks/s; at {achieved:,.0f}/s: "
            f"p50 {p50:.1f} ms, p99 {p99:.1f} ms"
        )
    print(f"ratio voice/baseline: {voice[0] / bare[0]:.2f} (aim >= 0.30)")
    print(f"ratio voice/SMS: {voice[0] / sms[0]:.2f}")
    print(f"voice p99 at {args.rate:g} calls/s: {voice[1][1]:.1f} ms (aim < 50 ms)")


if __name__ == "__main__":
    if "--baseline-server" in sys.argv:
        baseline_server(int(sys.argv[sys.argv.index("--baseline-server") + 1]))
    else:
        asyncio.run(main())
