"""Twilio's Voice REST API on the loopback fake (tests/fake_twilio.py), in its wire format.

``POST /2010-04-01/Accounts/{sid}/Calls.json`` places a call (form fields To, From, Twiml,
StatusCallback, Timeout; 201 with the call resource), ``POST …/Calls/{CallSid}.json`` updates
one (Twiml: a redirect; Status=completed: a hang-up; 400 with code 21220 when the call is not
in progress), ``GET …/Conferences.json`` and ``…/Conferences/{sid}/Participants.json`` list
who joined which conference (read from the ``<Conference>`` of each leg's TwiML), and
``GET …/Recordings/{RecordingSid}.wav`` serves a recording to Basic credentials only.
"""

from __future__ import annotations

import hashlib
import secrets
import struct
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from tests.fake_twilio import ACCOUNT_SID, FakeTwilio, post_signed

BASE = "/2010-04-01/Accounts/{sid}"


def wav(seconds: float = 0.1) -> bytes:
    """A short silent PCM WAV file, as Twilio serves a recording."""
    frames = int(8000 * seconds)
    data = b"\x00\x00" * frames
    header = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt "
    header += struct.pack("<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16)
    return header + b"data" + struct.pack("<I", len(data)) + data


@dataclass
class FakeVoice:
    """What the hub did with calls: placed, updated, who joined which conference."""

    twilio: FakeTwilio
    placed: list[dict[str, str]] = field(default_factory=list)
    updates: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    ended: set[str] = field(default_factory=set)  # calls not in progress: redirects fail
    conferences: dict[str, list[str]] = field(default_factory=dict)  # name -> CallSids
    script: list[tuple[int, int, str]] = field(default_factory=list)  # status, code, message
    recording_hits: int = 0
    holds: list[tuple[str, str, str]] = field(default_factory=list)  # conference, call, Hold
    # (hub URL, public URL): post conference events (participant-hold) to the hub, as Twilio
    # posts them to the conference's statusCallback
    hub: tuple[str, str] | None = None
    callbacks: dict[str, str] = field(default_factory=dict)  # conference name -> statusCallback
    sequence: int = 0
    reported: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # path, fields

    def _joined(self, call_sid: str, twiml: str) -> None:
        root = ET.fromstring(twiml)
        for conference in root.iter("Conference"):
            self.conferences.setdefault(conference.text or "", []).append(call_sid)
            if conference.get("statusCallback"):
                self.callbacks[conference.text or ""] = conference.get("statusCallback") or ""

    def _resource(self, sid: str, form: dict[str, str], status: str) -> dict[str, Any]:
        return {
            "account_sid": ACCOUNT_SID,
            "api_version": "2010-04-01",
            "sid": sid,
            "status": status,
            "to": form.get("To"),
            "from": form.get("From"),
            "direction": "outbound-api",
            "date_created": None,
            "date_updated": None,
            "start_time": None,
            "end_time": None,
            "duration": None,
            "parent_call_sid": None,
            "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{sid}.json",
        }

    def _scripted(self) -> web.Response | None:
        if not self.script:
            return None
        status, code, message = self.script.pop(0)
        return FakeTwilio._error(status, code, message)

    async def create(self, request: web.Request) -> web.Response:
        if not self.twilio._auth_ok(request) or request.match_info["sid"] != ACCOUNT_SID:
            return FakeTwilio._error(401, 20003, "Authenticate")
        if (scripted := self._scripted()) is not None:
            return scripted
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        if not form.get("To") or not form.get("From"):
            return FakeTwilio._error(400, 21201, "No 'To' number is specified")
        if not (form.get("Twiml") or form.get("Url")):
            return FakeTwilio._error(400, 21205, "Url parameter is required.")
        sid = "CA" + secrets.token_hex(16)
        self.placed.append({**form, "Sid": sid})
        if form.get("Twiml"):
            self._joined(sid, form["Twiml"])
        return web.json_response(self._resource(sid, form, "queued"), status=201)

    async def update(self, request: web.Request) -> web.Response:
        if not self.twilio._auth_ok(request) or request.match_info["sid"] != ACCOUNT_SID:
            return FakeTwilio._error(401, 20003, "Authenticate")
        if (scripted := self._scripted()) is not None:
            return scripted
        call_sid = request.match_info["call"]
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        if call_sid in self.ended:
            return FakeTwilio._error(400, 21220, "Call is not in-progress. Cannot redirect.")
        self.updates.append((call_sid, form))
        if form.get("Status") == "completed":
            self.ended.add(call_sid)
        elif form.get("Twiml"):
            self._joined(call_sid, form["Twiml"])
        return web.json_response(self._resource(call_sid, form, "in-progress"))

    async def conferences_list(self, request: web.Request) -> web.Response:
        if not self.twilio._auth_ok(request):
            return FakeTwilio._error(401, 20003, "Authenticate")
        wanted = request.query.get("FriendlyName")
        found = [
            {
                "sid": _conference_sid(name),
                "friendly_name": name,
                "status": "in-progress",
                "account_sid": ACCOUNT_SID,
            }
            for name in self.conferences
            if wanted is None or name == wanted
        ]
        return web.json_response(_page("conferences", found, request.path))

    async def participants(self, request: web.Request) -> web.Response:
        if not self.twilio._auth_ok(request):
            return FakeTwilio._error(401, 20003, "Authenticate")
        by_sid = {_conference_sid(name): calls for name, calls in self.conferences.items()}
        calls = by_sid.get(request.match_info["conference"], [])
        found = [
            {"call_sid": call, "conference_sid": request.match_info["conference"], "hold": False}
            for call in calls
            if call not in self.ended
        ]
        return web.json_response(_page("participants", found, request.path))

    async def participant(self, request: web.Request) -> web.Response:
        """``POST …/Conferences/{sid}/Participants/{CallSid}.json``: Hold=true|false."""
        if not self.twilio._auth_ok(request):
            return FakeTwilio._error(401, 20003, "Authenticate")
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        call = request.match_info["call"]
        self.holds.append((request.match_info["conference"], call, form.get("Hold", "")))
        name = next(
            (n for n in self.conferences if _conference_sid(n) == request.match_info["conference"]),
            "",
        )
        if self.hub is not None and name in self.callbacks:
            await self._report(name, call, form.get("Hold") == "true")
        return web.json_response(
            {
                "call_sid": call,
                "conference_sid": request.match_info["conference"],
                "hold": form.get("Hold") == "true",
                "account_sid": ACCOUNT_SID,
            }
        )

    async def _report(self, name: str, call: str, held: bool) -> None:
        """Post a conference event to the hub, signed as Twilio signs it."""
        assert self.hub is not None
        hub_url, public = self.hub
        self.sequence += 1
        event = {
            "AccountSid": ACCOUNT_SID,
            "ConferenceSid": _conference_sid(name),
            "FriendlyName": name,
            "CallSid": call,
            "Hold": "true" if held else "false",
            "Muted": "false",
            "SequenceNumber": str(self.sequence),
            "StatusCallbackEvent": "participant-hold" if held else "participant-unhold",
            "Timestamp": "Mon, 07 Dec 2026 21:00:00 +0000",
        }
        path = self.callbacks[name].removeprefix(public.rstrip("/"))
        async with aiohttp.ClientSession() as session:
            status, text = await post_signed(session, hub_url, public, path, event)
        assert status == 204, text
        self.reported.append((path, event))

    async def recording(self, request: web.Request) -> web.Response:
        self.recording_hits += 1
        if not self.twilio._auth_ok(request):
            return FakeTwilio._error(401, 20003, "Authenticate")
        return web.Response(body=wav(), content_type="audio/x-wav")

    def recording_url(self, sid: str) -> str:
        """A RecordingUrl as Twilio posts it (no extension: ``.wav`` is added to fetch)."""
        return f"{self.twilio.url}/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{sid}"


def _conference_sid(name: str) -> str:
    return "CF" + hashlib.sha256(name.encode()).hexdigest()[:32]


def _page(key: str, items: list[dict[str, Any]], path: str) -> dict[str, Any]:
    return {
        key: items,
        "end": max(len(items) - 1, 0),
        "first_page_uri": f"{path}?PageSize=50&Page=0",
        "next_page_uri": None,
        "page": 0,
        "page_size": 50,
        "previous_page_uri": None,
        "start": 0,
        "uri": f"{path}?PageSize=50&Page=0",
    }


def add_voice_routes(app: web.Application, fake: FakeTwilio) -> FakeVoice:
    voice = FakeVoice(fake)
    app.router.add_post(BASE + "/Calls.json", voice.create)
    app.router.add_post(BASE + "/Calls/{call}.json", voice.update)
    app.router.add_get(BASE + "/Conferences.json", voice.conferences_list)
    app.router.add_get(BASE + "/Conferences/{conference}/Participants.json", voice.participants)
    app.router.add_post(
        BASE + "/Conferences/{conference}/Participants/{call}.json", voice.participant
    )
    app.router.add_get(BASE + "/Recordings/{recording}.wav", voice.recording)
    return voice
