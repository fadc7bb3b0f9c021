"""What a call leaves behind: recordings (voicemails, recorded calls) and transcripts, stored
as messages of the call's conversation.

A recording is fetched from the URL its callback names with the account's credentials, by the
SSRF-guarded :class:`~connectors.shared.media_fetcher.MediaFetcher` (``media_hosts``, no
private addresses, size and time capped): a URL the policy refuses is never fetched, and the
message then says why instead of carrying the audio.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import msgspec

from connectors.base import Accepted, ConnectorContext
from connectors.shared.media_fetcher import MediaFailed, MediaFetcher, MediaRefused
from connectors.voice import parse
from hub.envelope import Attachment, CallEvent, Envelope

Fields = Mapping[str, list[str]]
Store = Callable[[Envelope], Awaitable[Accepted]]
Record = Callable[[str, CallEvent], Awaitable[None]]
Seen = Callable[[str], Awaitable[bool]]


class Recordings:
    """Recording and transcription callbacks of one voice instance."""

    def __init__(
        self,
        inbox: str,
        ctx: ConnectorContext,
        media: MediaFetcher,
        store: Store,
        event: Record,
        seen: Seen,
    ) -> None:
        """``seen(key)`` says (and counts) whether a message was stored lately: a repeated
        callback then fetches nothing again."""
        self.inbox = inbox
        self.ctx = ctx
        self.media = media
        self.store = store
        self.event = event
        self.seen = seen

    async def recording(self, fields: Fields, query: Mapping[str, str]) -> None:
        """A finished recording: ``k=voicemail`` or a recorded call (a conference recording
        names no CallSid: ``s=`` in its URL says whose call it is)."""
        session = query.get("s", "")
        if "CallSid" not in fields and parse.call_sid_of(session):
            fields = {**fields, "CallSid": [parse.call_sid_of(session) or ""]}
        found = parse.recording(fields)
        key = f"twilio-recording:{found.sid}" if found is not None else ""
        if found is None or await self.seen(key):
            return
        kind = "voicemail" if query.get("k") == "voicemail" else "call recording"
        metadata: dict[str, object] = {
            "call": {"sid": found.call_sid, "kind": kind, "recording": found.sid},
            "recording": {"sid": found.sid, "duration": found.duration},
        }
        attachments: tuple[Attachment, ...] = ()
        try:
            data, content_type = await self.media.fetch(parse.recording_media_url(found.url))
        except (MediaRefused, MediaFailed) as exc:
            refused = isinstance(exc, MediaRefused)
            self.ctx.logger.warning("recording %s not fetched: %s", found.sid, exc)
            metadata["problems"] = [f"the recording could not be fetched: {exc}"]
            metadata["media_problems"] = [
                {"url": found.url[:500], "refused" if refused else "error": str(exc)}
            ]
        else:
            audio = content_type if content_type.startswith("audio/") else "audio/wav"
            extension = "mp3" if "mpeg" in audio else "wav"
            name = f"{kind.replace(' ', '-')}-{found.sid}.{extension}"
            attachments = (await self.ctx.blobs.put(data, name=name, content_type=audio),)
        envelope = parse.follow_up(
            sid=found.call_sid,
            caller=query.get("c", "")[:64] or (found.caller or ""),
            inbox=self.inbox,
            key=key,
            text=f"{kind.capitalize()}, {found.duration} s",
            received_at=self.ctx.clock(),
            metadata=metadata,
        )
        await self.store(msgspec.structs.replace(envelope, attachments=attachments))
        await self.event(
            parse.session_of(found.call_sid),
            CallEvent(
                call_sid=found.call_sid,
                state="recording",
                at=self.ctx.clock(),
                duration=found.duration,
                detail=kind,
                key=f"recording:{found.sid}",
            ),
        )

    async def transcription(self, fields: Fields, query: Mapping[str, str]) -> None:
        """The provider's transcript of a voicemail: a message rules and agents can read."""
        found = parse.transcription(fields)
        if found is None:
            return
        sid, transcription_sid, text = found
        envelope = parse.follow_up(
            sid=sid,
            caller=query.get("c", "")[:64] or (parse.one(fields, "From") or ""),
            inbox=self.inbox,
            key=f"twilio-transcription:{transcription_sid}",
            text=f"Voicemail transcript: {text}",
            received_at=self.ctx.clock(),
            metadata={"call": {"sid": sid, "kind": "transcript"}, "transcript": text},
        )
        await self.store(envelope)
