"""Baseline for bench/pipeline.py: a bare aiohttp websocket relay, no storage, no routing.

Customers connect to /c and send text frames; the server acknowledges each one to its sender and
forwards it to one of the agents connected at /a (customer index modulo agent count), the same
frame traffic the hub produces, with nothing else in between.
"""

from __future__ import annotations

import json
import sys

from aiohttp import WSMsgType, web

agents: list[web.WebSocketResponse] = []
# as the hub's default (server.websocket_compression, the web chat's compression): off;
# `relay_server.py PORT compress` turns permessage-deflate on
COMPRESS = len(sys.argv) > 2 and sys.argv[2] == "compress"


async def customer(request: web.Request) -> web.WebSocketResponse:
    socket = web.WebSocketResponse(compress=COMPRESS)
    await socket.prepare(request)
    index = int(request.query.get("i", "0"))
    async for message in socket:
        if message.type is not WSMsgType.TEXT:
            continue
        frame = json.loads(message.data)
        await socket.send_str(json.dumps({"type": "ack", "client_id": frame["client_id"]}))
        if agents:
            target = agents[index % len(agents)]
            await target.send_str(
                json.dumps({"type": "message", "message": {"text": frame["text"]}})
            )
    return socket


async def agent(request: web.Request) -> web.WebSocketResponse:
    socket = web.WebSocketResponse(compress=COMPRESS)
    await socket.prepare(request)
    agents.append(socket)
    try:
        async for _ in socket:
            pass
    finally:
        agents.remove(socket)
    return socket


async def idle(request: web.Request) -> web.WebSocketResponse:
    """bench/sockets.py: answer the hello with a welcome, then hold the socket."""
    socket = web.WebSocketResponse(compress=COMPRESS)
    await socket.prepare(request)
    async for message in socket:
        if message.type is WSMsgType.TEXT:
            await socket.send_str(json.dumps({"type": "welcome"}))
    return socket


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def main() -> None:
    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/c", customer)
    app.router.add_get("/a", agent)
    app.router.add_get("/idle", idle)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
