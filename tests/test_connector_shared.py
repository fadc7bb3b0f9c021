"""The helpers connectors share (connectors/shared/): each tested here once, for all of them."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from connectors.shared import fetch_policy, media_links, media_route, signed_tokens
from connectors.shared.basic_auth import basic_authorization
from connectors.shared.rate_limit import Buckets, TokenBucket, WindowCap
from connectors.shared.single_flight import SingleFlight
from connectors.shared.webhooks import decode_json, json_object, read_body
from connectors.testing import connector_context


@pytest.mark.parametrize(
    "url",
    [
        "http://api.twilio.com/x",  # plain http
        "https://user:pw@api.twilio.com/x",
        "https://api.twilio.com.evil.example/x",
        "https://evil.example/api.twilio.com",
        "https://169.254.169.254/latest/meta-data/",
        "https://127.0.0.1/x",
        "https://[::1]/x",
        "https://[::ffff:10.0.0.1]/x",
        "file:///etc/passwd",
        "gopher://api.twilio.com/",
        "https://api.twilio.com:99999/x",
        "not a url",
    ],
)
def test_media_refusals(url: str) -> None:
    allowed = ("api.twilio.com", "*.twiliocdn.com", "127.0.0.1", "::1", "::ffff:10.0.0.1")
    assert fetch_policy.media_refusal(url, allowed, allow_private=False) is not None


def test_media_allowed() -> None:
    allowed = ("api.twilio.com", "*.twiliocdn.com")
    assert fetch_policy.media_refusal("https://api.twilio.com/2010-04-01/x", allowed, False) is None
    assert fetch_policy.media_refusal("https://mms.twiliocdn.com/x", allowed, False) is None
    assert fetch_policy.media_refusal("https://twiliocdn.com/x", allowed, False) is not None
    assert fetch_policy.media_refusal("http://127.0.0.1:8/x", ("127.0.0.1",), True) is None
    # "*": any host, but private addresses stay refused
    assert (
        fetch_policy.media_refusal("https://bucket.s3.amazonaws.com/f.pdf?sig=1", ("*",), False)
        is None
    )
    assert fetch_policy.media_refusal("https://10.0.0.5/f.pdf", ("*",), False) is not None
    assert fetch_policy.media_refusal("https://169.254.169.254/latest", ("*",), False) is not None


def test_media_links() -> None:
    secret = b"k" * 32
    token = media_links.sign(secret, "sha256:" + "a" * 64, "image/png", expires=100)
    assert media_links.verify(secret, token, now=50).ref == "sha256:" + "a" * 64
    with pytest.raises(media_links.BadLink, match="expired"):
        media_links.verify(secret, token, now=101)
    with pytest.raises(media_links.BadLink, match="signature"):
        media_links.verify(b"x" * 32, token, now=50)
    _body, mac = token.split(".")
    forged = media_links.sign(b"x" * 32, "sha256:" + "b" * 64, "text/html", 100).split(".")[0]
    with pytest.raises(media_links.BadLink):
        media_links.verify(secret, f"{forged}.{mac}", now=50)
    with pytest.raises(media_links.BadLink, match="malformed"):
        media_links.verify(secret, "../../etc/passwd", now=50)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "no-dot",
        "payload.",
        ".mac",
        "payload.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "payload.ééé",  # non-ASCII: refused, not a TypeError from compare_digest
        "pay\x00load.x",
    ],
)
def test_signed_tokens_refuse_what_was_not_signed(token: str) -> None:
    assert signed_tokens.verify(b"k" * 32, token) is None


def test_signed_tokens_round_trip_and_truncation() -> None:
    secret = b"k" * 32
    for size in (18, 32):
        token = signed_tokens.sign(secret, "v1.visitor", size)
        assert signed_tokens.verify(secret, token, size) == "v1.visitor"
        assert signed_tokens.verify(b"x" * 32, token, size) is None
        assert signed_tokens.verify(secret, token, 16) is None  # another MAC length
    assert len(signed_tokens.mac(secret, "p", 18)) == 24  # 18 bytes, no padding
    # the payload may itself hold dots: the MAC is what follows the last one
    assert signed_tokens.verify(secret, signed_tokens.sign(secret, "a.b.c")) == "a.b.c"


def test_basic_authorization_is_utf8_and_allows_colons_in_the_user() -> None:
    assert basic_authorization("user", "pässword") == "Basic dXNlcjpww6Rzc3dvcmQ="
    assert basic_authorization("a:b", "c") == "Basic YTpiOmM="


def test_token_bucket() -> None:
    bucket = TokenBucket.full(rate=1.0, burst=2, now=0.0)
    assert [bucket.take(0.0), bucket.take(0.0), bucket.take(0.0)] == [True, True, False]
    assert bucket.take(0.5) is False
    assert bucket.take(1.0) is True


def test_buckets_per_key_start_full_and_are_forgotten() -> None:
    buckets = Buckets(rate=1.0, burst=1)
    assert [buckets.allow("a", 0.0), buckets.allow("a", 0.0), buckets.allow("b", 0.0)] == [
        True,
        False,
        True,
    ]
    buckets.forget("a")
    assert buckets.allow("a", 0.0) is True


def test_window_cap() -> None:
    cap = WindowCap(count=2, window=10.0)
    assert [cap.allow("x", t) for t in (0.0, 1.0, 2.0)] == [True, True, False]
    assert cap.allow("y", 2.0) is True  # per key
    assert cap.allow("x", 10.0) is True  # the first has left the window
    assert cap.allow("x", 10.5) is False
    assert WindowCap(count=0, window=1.0).allow("x", 0.0) is False


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"a": 1}', {"a": 1}),
        (b"[1]", {}),
        (b"<html>oops</html>", {}),
        (b"", {}),
        (b"[" * 100_000 + b"]" * 100_000, {}),
    ],
)
def test_json_object_never_raises(body: bytes, expected: object) -> None:
    assert json_object(body) == expected


def test_decode_json_turns_deep_nesting_into_a_value_error() -> None:
    with pytest.raises(ValueError, match="nested too deeply"):
        decode_json(b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(ValueError, match="not JSON"):
        decode_json(b"{")


async def test_read_body_reads_to_the_end_and_caps() -> None:
    async def handler(request: web.Request) -> web.Response:
        body = await read_body(request, 10_000)
        return web.Response(text=str(len(body)))

    app = web.Application()
    app.router.add_post("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/"

    async def pieces(total: int) -> object:
        for _ in range(total // 1000):
            yield b"x" * 1000
            await asyncio.sleep(0)

    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(url, data=pieces(9000)) as response:  # chunked, no length
                assert (response.status, await response.text()) == (200, "9000")
            async with session.post(url, data=pieces(20_000)) as response:
                assert response.status == 413
            async with session.post(url, data=b"x" * 10_001) as response:  # by Content-Length
                assert response.status == 413
    finally:
        await runner.cleanup()


async def test_single_flight_runs_a_key_once_at_a_time() -> None:
    flights: SingleFlight[str] = SingleFlight(remember=2)
    release = asyncio.Event()
    runs: list[str] = []

    async def work(key: str) -> str:
        runs.append(key)
        await release.wait()
        return f"stored {key}"

    first = asyncio.ensure_future(flights.run("k", lambda: work("k")))
    await asyncio.sleep(0)
    assert flights.running("k") and not flights.remembered("k")
    second = asyncio.ensure_future(flights.run("k", lambda: work("k")))
    await asyncio.sleep(0)
    assert len(flights.waiting()) == 1
    release.set()
    assert await first == ("stored k", True)
    assert await second == ("stored k", False)  # waited, shared the outcome
    assert runs == ["k"]
    assert flights.remembered("k") and not flights.running("k")
    for key in ("a", "b"):
        await flights.run(key, lambda key=key: work(key))
    assert not flights.remembered("k")  # forgotten beyond `remember` keys
    assert flights.remembered("a") and flights.remembered("b")


async def test_single_flight_shares_a_failure_and_remembers_nothing() -> None:
    flights: SingleFlight[str] = SingleFlight(remember=10)
    release = asyncio.Event()

    async def failing() -> str:
        await release.wait()
        raise RuntimeError("the store is down")

    first = asyncio.ensure_future(flights.run("k", failing))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(flights.run("k", failing))
    await asyncio.sleep(0)
    release.set()
    for outcome in await asyncio.gather(first, second, return_exceptions=True):
        assert isinstance(outcome, RuntimeError)
    assert not flights.remembered("k") and not flights.running("k")

    async def fine() -> str:
        return "stored"

    assert await flights.run("k", fine, remember=False) == ("stored", True)
    assert not flights.remembered("k")  # the caller remembers it when its work is finished
    flights.remember("k")
    assert flights.remembered("k")


async def test_single_flight_waiters_of_a_cancelled_run_do_not_hang() -> None:
    flights: SingleFlight[str] = SingleFlight(remember=10)

    async def slow() -> str:
        await asyncio.Event().wait()
        return "never"

    first = asyncio.ensure_future(flights.run("k", slow))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(flights.run("k", slow))
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(second, 5)
    assert not flights.running("k")


async def test_media_route_serves_only_genuine_links_to_present_blobs() -> None:
    now = 1_800_000_000.0
    async with connector_context("line", clock=lambda: now) as ctx:
        stored = await ctx.blobs.put(
            b"%PDF-1.4 fax", name="fax.pdf", content_type="application/pdf"
        )

        async def handler(request: web.Request) -> web.Response:
            return await media_route.serve(ctx, request)

        app = web.Application()
        app.router.add_get("/channels/line" + media_route.PATH, handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        try:
            url = media_route.url(ctx, base + "/", "line", stored.blob_ref, "application/pdf")
            assert url.startswith(base + "/channels/line/media/")
            async with ctx.http.get(url) as response:
                assert response.status == 200
                assert await response.read() == b"%PDF-1.4 fax"
                assert response.headers["Cache-Control"] == "private, no-store"
                assert response.headers["X-Content-Type-Options"] == "nosniff"
            gone = media_route.url(ctx, base, "line", "sha256:" + "0" * 64, "application/pdf")
            forged = url[:-2] + ("AA" if not url.endswith("AA") else "BB")
            for bad in (gone, forged, base + "/channels/line/media/..%2F..%2Fetc%2Fpasswd"):
                async with ctx.http.get(bad) as response:
                    assert response.status == 404, bad
        finally:
            await runner.cleanup()
