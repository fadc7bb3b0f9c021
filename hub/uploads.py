"""Files an agent uploads to send with a reply, named by signed tokens.

``POST /api/uploads`` stores the bytes in the blob store and answers a token that names the
stored file, the agent who uploaded it and an expiry, signed with a key of the hub's own. A
``reply`` frame lists tokens; the console turns them back into attachments only if the
signature holds, the same agent sends them and they have not expired. No table, nothing to
clean up: an unused upload is an unreferenced blob. Pure.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

import msgspec

from hub.envelope import Attachment

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_PER_REPLY = 10
TTL = 24 * 3600.0
_CONTENT_TYPE = re.compile(r"^[a-z0-9][a-z0-9.+-]{0,60}/[a-z0-9][a-z0-9.+-]{0,100}$")


class BadUpload(ValueError):
    """A token that is forged, expired, malformed or someone else's."""


class _Claim(msgspec.Struct, frozen=True, array_like=True):
    agent: str
    expires: int
    name: str
    content_type: str
    size: int
    sha256: str


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(_Claim)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def content_type(declared: str | None) -> str:
    """The declared type if it looks like one, else ``application/octet-stream``."""
    value = (declared or "").split(";", 1)[0].strip().lower()
    return value if _CONTENT_TYPE.match(value) else "application/octet-stream"


def filename(declared: str | None) -> str:
    """A display name without paths or control characters (metadata only)."""
    name = (declared or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    return name[:200] or "file"


def sign(secret: bytes, attachment: Attachment, agent: str, expires: float) -> str:
    claim = _Claim(
        agent,
        int(expires),
        attachment.name,
        attachment.content_type,
        attachment.size,
        attachment.sha256,
    )
    body = _b64(_encoder.encode(claim))
    mac = hmac.new(secret, body.encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


def verify(secret: bytes, token: str, agent: str, now: float) -> Attachment:
    """The attachment a token names; :class:`BadUpload` unless it is genuine, unexpired and
    ``agent``'s own."""
    body, _, mac = token.partition(".")
    if not body or len(token) > 2000:
        raise BadUpload("malformed upload token")
    expected = _b64(hmac.new(secret, body.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(mac.encode(), expected.encode()):
        raise BadUpload("upload token signature does not match")
    try:
        claim = _decoder.decode(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (msgspec.DecodeError, ValueError):
        raise BadUpload("malformed upload token") from None
    if claim.agent != agent:
        raise BadUpload("this upload belongs to another agent")
    if claim.expires < now:
        raise BadUpload("the upload expired; upload the file again")
    return Attachment(
        name=claim.name,
        content_type=claim.content_type,
        size=claim.size,
        sha256=claim.sha256,
        blob_ref=f"sha256:{claim.sha256}",
    )
