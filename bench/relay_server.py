"""Baseline for bench/pipeline.py: a bare aiohttp websocket relay, no storage, no routing.

It speaks just enough of the two protocols to carry the same frame traffic as the hub, with
nothing else in between (no store, no rules, no customer context, no dispatch decisions):

- customers at /c?i=N say ``hello`` (answered with ``welcome``), then send ``message`` frames:
  each is acknowledged to its sender; if the customer's conversation is held by an agent it is
  forwarded to that agent, otherwise the first message opens a conversation that is offered to
  agent N modulo the agent count, and what the customer writes until the agent accepts is
  handed over with the ``conversation`` frame;
- agents at /a send ``auth`` (answered with ``hello`` and an empty ``snapshot``), ``accept``,
  ``reply`` (``reply_ack`` and the echoed ``message`` to the agent, ``message`` to the
  customer) and ``close`` (``conversation_closed``; the next customer message opens a new one).

/idle answers a hello with a welcome and holds the socket (bench/sockets.py).
"""

from __future__ import annotations

import itertools
import json
import sys
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

# as the hub's default (server.websocket_compression, the web chat's compression): off;
# `relay_server.py PORT compress` turns permessage-deflate on
COMPRESS = len(sys.argv) > 2 and sys.argv[2] == "compress"

ids = itertools.count(1)


@dataclass
class Conversation:
    id: str
    customer: int
    agent: web.WebSocketResponse
    accepted: bool = False
    held: list[dict[str, Any]] = field(default_factory=list)


agents: list[web.WebSocketResponse] = []
customers: dict[int, web.WebSocketResponse] = {}
open_by_customer: dict[int, Conversation] = {}
by_id: dict[str, Conversation] = {}


def frame(kind: str, **fields: Any) -> str:
    return json.dumps({"type": kind, **fields})


async def on_customer_message(index: int, data: dict[str, Any]) -> dict[str, Any]:
    message = {"id": str(next(ids)), "direction": "inbound", "text": data["text"]}
    conversation = open_by_customer.get(index)
    if conversation is None and agents:
        conversation = Conversation(f"c{next(ids)}", index, agents[index % len(agents)])
        open_by_customer[index] = conversation
        by_id[conversation.id] = conversation
        conversation.held.append(message)
        await conversation.agent.send_str(
            frame("offer", conversation_id=conversation.id, preview=data["text"][:280])
        )
    elif conversation is not None and not conversation.accepted:
        conversation.held.append(message)
    elif conversation is not None:
        await conversation.agent.send_str(
            frame("message", conversation_id=conversation.id, message=message)
        )
    return message


async def customer(request: web.Request) -> web.WebSocketResponse:
    socket = web.WebSocketResponse(compress=COMPRESS)
    await socket.prepare(request)
    index = int(request.query.get("i", "0"))
    customers[index] = socket
    try:
        async for raw in socket:
            if raw.type is not WSMsgType.TEXT:
                continue
            data = json.loads(raw.data)
            if data["type"] == "hello":
                await socket.send_str(frame("welcome", token="t", visitor=str(index), history=[]))
                continue
            message = await on_customer_message(index, data)
            await socket.send_str(frame("ack", client_id=data["client_id"], id=message["id"]))
    finally:
        customers.pop(index, None)
    return socket


async def on_agent_frame(socket: web.WebSocketResponse, data: dict[str, Any]) -> None:
    kind = data["type"]
    if kind == "auth":
        await socket.send_str(frame("hello", protocol=1))
        await socket.send_str(frame("snapshot", offers=[], conversations=[]))
        return
    conversation = by_id.get(data.get("conversation_id", ""))
    if conversation is None or conversation.agent is not socket:
        await socket.send_str(frame("error", code="not_assigned", message="not yours"))
        return
    if kind == "accept":
        conversation.accepted = True
        held, conversation.held = conversation.held, []
        await socket.send_str(
            frame("conversation", conversation={"id": conversation.id, "messages": held})
        )
    elif kind == "reply":
        message = {
            "id": str(next(ids)),
            "direction": "outbound",
            "author": "agent",
            "text": data["text"],
        }
        await socket.send_str(
            frame(
                "reply_ack",
                client_id=data["client_id"],
                conversation_id=conversation.id,
                message=message,
            )
        )
        await socket.send_str(frame("message", conversation_id=conversation.id, message=message))
        target = customers.get(conversation.customer)
        if target is not None:
            await target.send_str(frame("message", id=message["id"], text=data["text"]))
    elif kind == "close":
        del by_id[conversation.id]
        open_by_customer.pop(conversation.customer, None)
        await socket.send_str(
            frame("conversation_closed", conversation_id=conversation.id, disposition="resolved")
        )


async def agent(request: web.Request) -> web.WebSocketResponse:
    socket = web.WebSocketResponse(compress=COMPRESS)
    await socket.prepare(request)
    agents.append(socket)
    try:
        async for raw in socket:
            if raw.type is WSMsgType.TEXT:
                await on_agent_frame(socket, json.loads(raw.data))
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
