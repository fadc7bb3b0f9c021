"""Agent websocket protocol v1: client frames parsed into typed commands, server frames built.

Pure: bytes or text in, typed values out, no sockets. docs/agent-protocol.md is the reference;
keep both in step. Every parse failure becomes a :class:`ProtocolError` with a stable code.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 64 * 1024
MAX_TEXT_CHARS = 20_000

Id = msgspec.Meta(min_length=1, max_length=128)


class Auth(msgspec.Struct, frozen=True, tag="auth", forbid_unknown_fields=True):
    token: str | None = None


class SetPresence(msgspec.Struct, frozen=True, tag="presence", forbid_unknown_fields=True):
    status: Literal["available", "busy", "away"]


class Accept(msgspec.Struct, frozen=True, tag="accept", forbid_unknown_fields=True):
    conversation_id: str


class Decline(msgspec.Struct, frozen=True, tag="decline", forbid_unknown_fields=True):
    conversation_id: str
    reason: str = ""


class Reply(msgspec.Struct, frozen=True, tag="reply", forbid_unknown_fields=True):
    conversation_id: str
    client_id: str
    text: str = ""
    template: str | None = None  # an approved template's name (WhatsApp outside 24 hours)
    variables: dict[str, str] = msgspec.field(default_factory=dict)
    via: str | None = None  # another inbox to answer through (compose.alternatives) …
    to: str | None = None  # … and the customer's address there
    attachments: list[str] = msgspec.field(default_factory=list)  # POST /api/uploads tokens


class Note(msgspec.Struct, frozen=True, tag="note", forbid_unknown_fields=True):
    conversation_id: str
    client_id: str
    text: str


class Transfer(msgspec.Struct, frozen=True, tag="transfer", forbid_unknown_fields=True):
    conversation_id: str
    queue: str | None = None  # hand it to a queue …
    agent: str | None = None  # … or to a colleague
    note: str = ""


class Reassign(msgspec.Struct, frozen=True, tag="reassign", forbid_unknown_fields=True):
    conversation_id: str
    agent: str


class Close(msgspec.Struct, frozen=True, tag="close", forbid_unknown_fields=True):
    conversation_id: str
    disposition: str | None = None  # one of dispatch.dispositions; None: the first of them


class Open(msgspec.Struct, frozen=True, tag="open", forbid_unknown_fields=True):
    conversation_id: str


class Preview(msgspec.Struct, frozen=True, tag="preview", forbid_unknown_fields=True):
    """Ask what a draft costs on the conversation's channel (SMS segments) before sending."""

    conversation_id: str
    text: str


class CallBack(msgspec.Struct, frozen=True, tag="call_back", forbid_unknown_fields=True):
    """Call the customer of a held phone conversation and put them through to this agent."""

    conversation_id: str


class CallHold(msgspec.Struct, frozen=True, tag="call_hold", forbid_unknown_fields=True):
    """Put the caller of a held, connected phone conversation on hold (or take them off)."""

    conversation_id: str
    hold: bool = True


class Ping(msgspec.Struct, frozen=True, tag="ping", forbid_unknown_fields=True):
    ref: str | None = None


Command = (
    Auth
    | SetPresence
    | Accept
    | Decline
    | Reply
    | Note
    | Transfer
    | Reassign
    | Close
    | Open
    | Preview
    | CallBack
    | CallHold
    | Ping
)

_decoder = msgspec.json.Decoder(Command)
_encoder = msgspec.json.Encoder()


class ProtocolError(Exception):
    """A frame the server cannot act on; ``code`` is part of the protocol (see the docs)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def parse_command(data: str | bytes) -> Command:
    """Parse and validate one client frame."""
    size = len(data.encode() if isinstance(data, str) else data)
    if size > MAX_FRAME_BYTES:
        raise ProtocolError("frame_too_large", f"frames are limited to {MAX_FRAME_BYTES} bytes")
    try:
        command: Command = _decoder.decode(data)
    except msgspec.ValidationError as exc:
        text = str(exc)
        if "Invalid value" in text and "`$.type`" in text:
            raise ProtocolError("unknown_type", text) from None
        if "Object missing required field `type`" in text:
            raise ProtocolError("bad_frame", "every frame needs a string field 'type'") from None
        raise ProtocolError("bad_frame", text) from None
    except msgspec.DecodeError as exc:
        raise ProtocolError("bad_frame", f"not valid JSON: {exc}") from None
    for field in ("conversation_id", "client_id"):
        value = getattr(command, field, None)
        if value is not None and not 0 < len(value) <= 128:
            raise ProtocolError("bad_frame", f"{field} must be 1 to 128 characters")
    if isinstance(command, Transfer) and (command.queue is None) == (command.agent is None):
        raise ProtocolError("bad_frame", "transfer needs either queue or agent")
    if isinstance(command, Reply) and command.template is not None:
        if len(command.template) > 128 or len(command.variables) > 50:
            raise ProtocolError("bad_frame", "template names are limited to 128 characters")
        if any(len(k) > 64 or len(v) > 1000 for k, v in command.variables.items()):
            raise ProtocolError("bad_frame", "template variables are limited to 1000 characters")
        return command
    text_value = getattr(command, "text", None)
    if isinstance(command, Preview):
        if len(text_value or "") > MAX_TEXT_CHARS:
            raise ProtocolError("too_long", f"text is limited to {MAX_TEXT_CHARS} characters")
        return command
    if text_value is not None:
        if not text_value.strip():
            raise ProtocolError("bad_frame", "text must not be empty")
        if len(text_value) > MAX_TEXT_CHARS:
            raise ProtocolError("too_long", f"text is limited to {MAX_TEXT_CHARS} characters")
    return command


def frame(kind: str, **fields: Any) -> bytes:
    """A server frame as JSON bytes."""
    return _encoder.encode({"type": kind, **fields})


def error_frame(code: str, message: str, ref: str | None = None) -> bytes:
    return frame("error", code=code, message=message, ref=ref)
