"""Twilio's voice wire format, pure: webhook fields in, envelopes and call events out.

No I/O here: the connector reads requests (their signatures are checked by
:mod:`connectors.shared.twilio_webhooks`, shared with SMS), calls the REST API and fetches
recordings; what each field means and what a call's conversation is keyed by is decided here
and tested table-driven. TwiML is built in :mod:`connectors.voice.twiml`.

A call is keyed by its CallSid: its thread key (``session``) is ``call:<CallSid>``, so the
voicemail, callback request and transcript the same call leaves join its conversation, and
a second call from the same number is a conversation of its own.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from connectors.shared.twilio_webhooks import BadWebhook
from hub.envelope import CallEvent, Direction, Envelope, Identity, ThreadHints

SID = re.compile(r"[A-Za-z0-9_-]{2,64}")
#: a caller: E.164, a SIP or client address, or what carriers send for a withheld number
CALLER = re.compile(r"(\+[0-9]{2,15}|(sip|client):[^\s]{1,200}|anonymous|restricted|unknown)", re.I)
MAX_TEXT = 10_000
SESSION_PREFIX = "call:"

# fields this module turns into envelope fields; every other short one is kept as metadata
_CONSUMED = frozenset({"From", "To", "CallSid", "AccountSid", "ApiVersion", "CallToken"})
_MAX_METADATA_FIELDS = 40
_MAX_METADATA_VALUE = 256

#: Twilio's CallStatus values -> the timeline's state (None: nothing to show)
CALL_STATUS: dict[str, str | None] = {
    "queued": None,
    "initiated": None,
    "ringing": "ringing",
    "in-progress": "answered",
    "completed": "ended",
    "busy": "failed",
    "no-answer": "failed",
    "failed": "failed",
    "canceled": "failed",
}
_STATUS_WORDS = {
    "busy": "the line was busy",
    "no-answer": "nobody answered",
    "failed": "the call could not be placed",
    "canceled": "the call was canceled before it was answered",
}


def one(fields: Mapping[str, list[str]], name: str) -> str | None:
    """The first value of field ``name``, or None."""
    values = fields.get(name)
    return values[0] if values else None


def session_of(call_sid: str) -> str:
    """The thread key of the conversation of the call ``call_sid``."""
    return SESSION_PREFIX + call_sid


def call_sid_of(session: str | None) -> str | None:
    """The CallSid a thread key names, or None for a conversation that is not a call."""
    if session is None or not session.startswith(SESSION_PREFIX):
        return None
    sid = session.removeprefix(SESSION_PREFIX)
    return sid if SID.fullmatch(sid) else None


def call_sid(fields: Mapping[str, list[str]]) -> str:
    """The webhook's CallSid; :class:`BadWebhook` when it is missing or malformed."""
    sid = one(fields, "CallSid")
    if not sid or not SID.fullmatch(sid):
        raise BadWebhook("CallSid is missing or malformed")
    return sid


def check_account(fields: Mapping[str, list[str]], account_sid: str) -> None:
    if (one(fields, "AccountSid") or "") != account_sid:
        raise BadWebhook("AccountSid is not this inbox's account")


def language(fields: Mapping[str, list[str]], by_country: Mapping[str, str], default: str) -> str:
    """The prompts' language for a caller: by the country of their number, else ``default``."""
    country = (one(fields, "FromCountry") or one(fields, "CallerCountry") or "").upper()
    return by_country.get(country, default)


@dataclass(frozen=True, slots=True)
class IncomingCall:
    """A call that just reached the number: its conversation's first message."""

    call_sid: str
    caller: str
    envelope: Envelope


def incoming_call(
    fields: Mapping[str, list[str]],
    *,
    inbox: str,
    account_sid: str,
    received_at: float,
    language: str,
) -> IncomingCall:
    """The envelope of a voice webhook (already signature-checked): channel ``voice``, the
    caller as a ``phone`` identity (E.164, as an SMS sender), keyed by the CallSid."""
    sid = call_sid(fields)
    check_account(fields, account_sid)
    caller = one(fields, "From") or ""
    if not CALLER.fullmatch(caller):
        raise BadWebhook("From is missing or malformed")
    direction = one(fields, "Direction") or "inbound"
    if direction != "inbound":
        raise BadWebhook(f"Direction {direction[:20]!r} is not an inbound call")
    to = one(fields, "To") or ""
    metadata: dict[str, Any] = {"call": {"sid": sid, "kind": "incoming", "language": language}}
    kept = (
        (name, values[0][:_MAX_METADATA_VALUE])
        for name, values in fields.items()
        if name not in _CONSUMED and len(name) <= 64
    )
    for name, value in itertools.islice(kept, _MAX_METADATA_FIELDS):  # a flood is cut here
        metadata[name] = value
    kind = "phone" if caller.startswith("+") else "sip"
    display = one(fields, "CallerName")
    envelope = Envelope(
        channel="voice",
        inbox=inbox,
        direction=Direction.INBOUND,
        idempotency_key=f"twilio-call:{sid}",
        provider_id=sid,
        sender=Identity(kind=kind, address=caller, display_name=display[:200] if display else None),
        recipients=(Identity(kind="phone", address=to[:64]),) if to else (),
        received_at=received_at,
        thread=ThreadHints(session=session_of(sid)),
        text=f"Incoming call from {caller}",
        language=language,
        metadata=metadata,
    )
    return IncomingCall(call_sid=sid, caller=caller, envelope=envelope)


def follow_up(
    *,
    sid: str,
    caller: str,
    inbox: str,
    key: str,
    text: str,
    received_at: float,
    metadata: dict[str, Any],
) -> Envelope:
    """A later message of the call ``sid`` (voicemail, transcript, callback request): it joins
    the call's conversation through its thread key."""
    kind = "phone" if caller.startswith("+") else "sip"
    return Envelope(
        channel="voice",
        inbox=inbox,
        direction=Direction.INBOUND,
        idempotency_key=key,
        provider_id=sid,
        sender=Identity(kind=kind, address=caller),
        received_at=received_at,
        thread=ThreadHints(session=session_of(sid)),
        text=text[:MAX_TEXT],
        metadata=metadata,
    )


def waiting(fields: Mapping[str, list[str]]) -> tuple[int, float]:
    """A wait URL request's place in line (1 = next) and seconds waited so far."""
    call_sid(fields)
    try:
        position = int(one(fields, "QueuePosition") or "1")
        waited = float(one(fields, "QueueTime") or "0")
    except ValueError:
        raise BadWebhook("QueuePosition or QueueTime is not a number") from None
    if position < 0 or waited < 0 or waited > 86_400:
        raise BadWebhook("QueuePosition or QueueTime is out of range")
    return min(position, 10_000), waited


@dataclass(frozen=True, slots=True)
class Recording:
    sid: str
    call_sid: str
    url: str
    duration: int
    caller: str | None


def recording(fields: Mapping[str, list[str]]) -> Recording | None:
    """A completed recording of a recording status callback; None for other states
    (``in-progress``, ``absent``: nothing to fetch)."""
    sid = call_sid(fields)
    status = one(fields, "RecordingStatus") or "completed"
    if status != "completed":
        return None
    rec = one(fields, "RecordingSid") or ""
    url = one(fields, "RecordingUrl") or ""
    if not SID.fullmatch(rec):
        raise BadWebhook("RecordingSid is missing or malformed")
    if not url or len(url) > 2000:
        raise BadWebhook("RecordingUrl is missing or too long")
    try:
        duration = max(0, int(one(fields, "RecordingDuration") or "0"))
    except ValueError:
        raise BadWebhook("RecordingDuration is not a number") from None
    return Recording(sid=rec, call_sid=sid, url=url, duration=duration, caller=one(fields, "From"))


def recording_media_url(url: str) -> str:
    """Where a recording's audio is: Twilio's RecordingUrl names the resource, and answers
    WAV at the same URL with ``.wav`` (MP3 with ``.mp3``)."""
    return url if re.search(r"\.(wav|mp3)$", url) else url + ".wav"


def transcription(fields: Mapping[str, list[str]]) -> tuple[str, str, str] | None:
    """(CallSid, TranscriptionSid, text) of a completed transcription callback; None when the
    provider could not transcribe it."""
    sid = call_sid(fields)
    if (one(fields, "TranscriptionStatus") or "completed") != "completed":
        return None
    transcription_sid = one(fields, "TranscriptionSid") or one(fields, "RecordingSid") or ""
    if not SID.fullmatch(transcription_sid):
        raise BadWebhook("TranscriptionSid is missing or malformed")
    return sid, transcription_sid, (one(fields, "TranscriptionText") or "")[:MAX_TEXT]


def status_event(
    fields: Mapping[str, list[str]], at: float, agent: str | None = None
) -> CallEvent | None:
    """The timeline event of a call status callback (None: a state not shown)."""
    sid = call_sid(fields)
    status = (one(fields, "CallStatus") or "").lower()
    if status not in CALL_STATUS:
        raise BadWebhook(f"unknown CallStatus {status[:30]!r}")
    state = CALL_STATUS[status]
    if state == "answered" and agent is None:
        state = None  # the caller's own call is "in progress" as soon as our TwiML answers
    if state is None:
        return None
    duration = None
    if state == "ended":
        try:
            duration = max(0, int(one(fields, "CallDuration") or "0"))
        except ValueError:
            raise BadWebhook("CallDuration is not a number") from None
    detail = _STATUS_WORDS.get(status)
    if detail and agent:
        detail = f"{agent}'s device: {detail}"
    return CallEvent(
        call_sid=sid, state=state, at=at, agent=agent, duration=duration, detail=detail
    )


def queue_result(fields: Mapping[str, list[str]]) -> tuple[str, float]:
    """An ``<Enqueue>`` action's QueueResult (``bridged``, ``redirected``, ``hangup``,
    ``leave``, ``queue-full``, ``error``, ``system-error``) and seconds waited."""
    call_sid(fields)
    result = (one(fields, "QueueResult") or "").lower()
    if result not in {
        "bridged",
        "bridging-in-process",
        "redirected",
        "hangup",
        "leave",
        "queue-full",
        "error",
        "system-error",
    }:
        raise BadWebhook(f"unknown QueueResult {result[:30]!r}")
    try:
        waited = float(one(fields, "QueueTime") or "0")
    except ValueError:
        raise BadWebhook("QueueTime is not a number") from None
    return result, waited


#: conference StatusCallbackEvent values that reach the timeline
CONFERENCE_EVENTS = {"participant-hold": "held", "participant-unhold": "resumed"}

#: keys a caller may press while waiting
KEYS = {"1": "voicemail", "2": "callback"}


def choice(fields: Mapping[str, list[str]]) -> str | None:
    """What the caller chose with a key while waiting (None: a key that means nothing)."""
    call_sid(fields)
    return KEYS.get((one(fields, "Digits") or "")[:1])
