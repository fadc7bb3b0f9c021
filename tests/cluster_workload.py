"""The clients of the fault suite: customers writing SMS through the balancer (retrying like
Twilio until a 2xx) and agents working every offer (accept, reply, close), reconnecting when
their socket dies. Each records what it sent and what the hub confirmed into a
:class:`tests.history.History`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from tests.fake_twilio import inbound_fields, post_signed
from tests.history import History, Inbound, Interval, Reply

INBOUND = "/channels/sms/inbound"


def sms_channel(api_url: str, public_url: str) -> dict[str, Any]:
    from tests.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER

    return {
        "name": "sms",
        "type": "sms",
        "settings": {
            "account_sid": ACCOUNT_SID,
            "auth_token": AUTH_TOKEN,
            "from": FROM_NUMBER,
            "public_url": public_url,
            "api_base_url": api_url,
            "status_callbacks": False,
            "send_timeout": 2,
        },
    }


async def customer(
    session: aiohttp.ClientSession, url: str, public_url: str, history: History, number: int
) -> None:
    """One customer, one message, sent again until the hub answers 2xx (as Twilio retries)."""
    fields = inbound_fields(body=f"order question {number}", sender=f"+49151{number:08d}")
    item = Inbound(fields["MessageSid"], time.time())
    history.inbound[item.key] = item
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        item.attempts += 1
        try:
            status, _ = await post_signed(session, url, public_url, INBOUND, fields)
        except (aiohttp.ClientError, TimeoutError):
            status = 0
        if 200 <= status < 300:
            item.acked_at = time.time()
            return
        await asyncio.sleep(0.2)


async def customers(
    session: aiohttp.ClientSession,
    url: str,
    public_url: str,
    history: History,
    count: int,
    per_second: float,
    first: int = 0,
) -> None:
    tasks = []
    for number in range(first, first + count):
        tasks.append(asyncio.create_task(customer(session, url, public_url, history, number)))
        await asyncio.sleep(1 / per_second)
    await asyncio.gather(*tasks)


@dataclass
class AgentWorker:
    """One agent: accepts every offer, replies once per conversation, then closes it.

    ``target`` names the URL to (re)connect to: the balancer, or one node."""

    agent: str
    token: str
    target: Callable[[], Awaitable[str]]
    history: History
    closed: set[str] = field(default_factory=set)
    connects: int = 0
    offers: int = 0
    _shown: dict[str, float] = field(default_factory=dict)  # conversation -> hold seen at
    _offered: dict[str, float] = field(default_factory=dict)  # conversation -> offer received
    _accepting: dict[str, float] = field(default_factory=dict)  # conversation -> accept sent
    _closing: dict[str, float] = field(default_factory=dict)  # conversation -> close sent
    _confirmed: dict[str, float] = field(default_factory=dict)  # last confirmed action sent
    _socket: ClientConnection | None = None
    _stopping: bool = False

    async def run(self) -> None:
        while not self._stopping:
            try:
                url = await self.target()
                async with connect(f"{url}/ws/agent", open_timeout=5, max_size=2**22) as socket:
                    self._socket = socket
                    await self._session(socket)
            except (OSError, ConnectionClosed, InvalidHandshake, InvalidStatus, TimeoutError):
                pass
            finally:
                self._socket = None
                self._offered.clear()
                self._accepting.clear()
            if not self._stopping:
                self.history.note(time.time(), f"{self.agent} reconnects")
                await asyncio.sleep(0.2)

    async def stop(self) -> None:
        self._stopping = True
        if self._socket is not None:
            await self._socket.close()

    async def _send(self, socket: ClientConnection, **frame: Any) -> float:
        at = time.time()
        await socket.send(json.dumps(frame))
        return at

    async def _session(self, socket: ClientConnection) -> None:
        await self._send(socket, type="auth", token=self.token)
        self.connects += 1
        async for raw in socket:
            now = time.time()
            frame = json.loads(raw)
            await self._on(socket, frame, now)

    async def _on(self, socket: ClientConnection, frame: dict[str, Any], now: float) -> None:
        kind = frame["type"]
        if kind == "snapshot":
            listed = {conversation["id"] for conversation in frame["conversations"]}
            for gone in set(self._shown) - listed:  # the hub says: no longer this agent's
                self._end_hold(gone)
            for conversation in frame["conversations"]:
                await self._held(socket, conversation["id"], now)
            for offer in frame["offers"]:
                await self._offer(socket, offer["conversation_id"], now)
        elif kind == "offer":
            await self._offer(socket, frame["conversation_id"], now)
        elif kind == "offer_revoked":
            self._offered.pop(frame["conversation_id"], None)
        elif kind == "conversation":
            conversation = frame["conversation"]["id"]
            if conversation in self._accepting:  # a new hold, whatever was before
                self._record_offer(conversation, self._accepting.pop(conversation))
                self._end_hold(conversation)
            await self._held(socket, conversation, now)
        elif kind == "reply_ack":
            await self._reply_acked(socket, frame, now)
        elif kind == "conversation_closed":
            conversation = frame["conversation_id"]
            self._confirm(conversation, self._closing.pop(conversation, now))
            self.closed.add(conversation)
            self._end_hold(conversation)
        elif kind == "conversation_removed":
            self._end_hold(frame["conversation_id"])
        elif kind == "error":
            await self._error(socket, frame)

    async def _offer(self, socket: ClientConnection, conversation: str, now: float) -> None:
        if conversation in self._accepting or conversation in self._shown:
            return  # the snapshot and a live frame can both carry an offer
        self.offers += 1
        self._offered[conversation] = now
        self._accepting[conversation] = await self._send(
            socket, type="accept", conversation_id=conversation
        )

    def _record_offer(self, conversation: str, accept_sent: float) -> None:
        received = self._offered.pop(conversation, accept_sent)
        self.history.offers.append(Interval(self.agent, conversation, received, accept_sent))

    async def _held(self, socket: ClientConnection, conversation: str, now: float) -> None:
        if conversation in self.closed:
            return
        self._shown.setdefault(conversation, now)
        client_id = f"{self.agent}-{conversation}"
        reply = self.history.replies.get(client_id)
        if reply is None or reply.acked_at is None:
            at = await self._send(
                socket,
                type="reply",
                conversation_id=conversation,
                client_id=client_id,
                text=f"reply {client_id}",
            )
            if reply is None:
                self.history.replies[client_id] = Reply(self.agent, conversation, client_id, at)
            else:
                reply.sent_at = at
        else:
            self._closing[conversation] = await self._send(
                socket, type="close", conversation_id=conversation
            )

    async def _reply_acked(
        self, socket: ClientConnection, frame: dict[str, Any], now: float
    ) -> None:
        reply = self.history.replies[frame["client_id"]]
        if reply.acked_at is None:
            reply.acked_at = now
            reply.message_id = frame["message"]["id"]
        if not frame["duplicate"]:  # a duplicate may not have checked the assignment again
            self._confirm(reply.conversation, reply.sent_at)
        self._closing[reply.conversation] = await self._send(
            socket, type="close", conversation_id=reply.conversation
        )

    def _confirm(self, conversation: str, sent_at: float) -> None:
        if conversation in self._shown:
            self._confirmed[conversation] = max(self._confirmed.get(conversation, 0), sent_at)

    def _end_hold(self, conversation: str) -> None:
        start = self._shown.pop(conversation, None)
        end = self._confirmed.pop(conversation, None)
        if start is not None and end is not None and end > start:
            self.history.holds.append(Interval(self.agent, conversation, start, end))

    async def _error(self, socket: ClientConnection, frame: dict[str, Any]) -> None:
        code, ref = frame["code"], frame.get("ref")
        self.history.note(time.time(), f"{self.agent} error {code} {ref}")
        if code == "unavailable" and ref is not None:
            await asyncio.sleep(0.2)
            conversation = ref if ref in self._shown else ref.split("-", 1)[-1]
            if conversation in self._shown:
                await self._held(socket, conversation, time.time())
        elif code == "invalid_state" and ref is not None:  # an accept came too late
            self._accepting.pop(ref, None)
            self._offered.pop(ref, None)
        elif code == "not_assigned" and ref is not None:
            conversation = ref.split("-", 1)[-1] if ref.startswith(self.agent + "-") else ref
            self._end_hold(conversation)

    def finish(self) -> None:
        """Record the holds still open (a socket that died after confirmed actions)."""
        for conversation in list(self._shown):
            self._end_hold(conversation)


async def login(session: aiohttp.ClientSession, url: str, agent: str, password: str) -> str:
    for _ in range(50):
        with contextlib.suppress(aiohttp.ClientError):
            async with session.post(
                f"{url}/api/login", json={"username": agent, "password": password}
            ) as response:
                if response.status == 200:
                    return str((await response.json())["token"])
        await asyncio.sleep(0.2)
    raise AssertionError(f"{agent} could not log in")


def provider_bodies(created: list[dict[str, str]]) -> list[str]:
    return [form.get("Body", "") for form in created]
