"""Short-lived signed links to stored blobs, for providers that fetch outbound media by URL.

Twilio (MMS) and Telnyx (fax) take a media URL rather than the bytes; the hub must serve the
file to them without making the blob store public. A link names one blob, its type and an
expiry, signed with the connector instance's key; anything else is refused. Pure.
"""

from __future__ import annotations

import base64
import re

import msgspec

from connectors.shared import signed_tokens


class Link(msgspec.Struct, frozen=True, array_like=True):
    ref: str
    content_type: str
    expires: int


class BadLink(ValueError):
    """A link that is forged, malformed or expired."""


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Link)
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,600}\.[A-Za-z0-9_-]{43}$")


def sign(secret: bytes, ref: str, content_type: str, expires: float) -> str:
    """A token for ``ref``, valid until ``expires`` (seconds since the epoch)."""
    body = signed_tokens.b64(_encoder.encode(Link(ref, content_type, int(expires))))
    return signed_tokens.sign(secret, body)


def verify(secret: bytes, token: str, now: float) -> Link:
    """The link a token names; :class:`BadLink` unless genuine and unexpired."""
    if not _TOKEN.match(token):
        raise BadLink("malformed link")
    body = signed_tokens.verify(secret, token)
    if body is None:
        raise BadLink("bad signature")
    try:
        link = _decoder.decode(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (msgspec.DecodeError, ValueError):
        raise BadLink("malformed link") from None
    if link.expires < now:
        raise BadLink("link expired")
    return link
