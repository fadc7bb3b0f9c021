"""Twilio's messaging wire format, pure: webhook fields in, envelope and decisions out.

No I/O here: the connector reads requests, fetches media and calls the API; everything it
decides (which fields mean what, which keyword opts out, whether a media URL may be fetched,
what a status or error code means, how many segments a text costs) is decided here and tested
on recorded payloads.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from hub.envelope import Delivery, DeliveryStatus, Direction, Envelope, Identity, ThreadHints

WHATSAPP_PREFIX = "whatsapp:"
MAX_TEXT = 10_000

# Twilio's default keywords (Advanced Opt-Out off); `OptOutType` overrides when Twilio sends it.
STOP_WORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
)
START_WORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_WORDS = frozenset({"HELP", "INFO"})

# fields this module turns into envelope fields; everything else is kept as metadata
_CONSUMED = re.compile(
    r"^(From|To|Body|MessageSid|SmsSid|SmsMessageSid|AccountSid|NumMedia|ApiVersion|"
    r"MediaUrl\d+|MediaContentType\d+|ProfileName|Latitude|Longitude|Address|Label|"
    r"ButtonText|ButtonPayload|SmsStatus)$"
)


class BadWebhook(ValueError):
    """A webhook whose fields cannot be a message (answered 400 with this reason)."""


@dataclass(frozen=True, slots=True)
class Media:
    url: str
    content_type: str


@dataclass(frozen=True, slots=True)
class Inbound:
    """One parsed inbound message: the envelope without attachments, and what to fetch."""

    envelope: Envelope
    media: tuple[Media, ...] = ()
    keyword: str | None = None  # stop | start | help
    extra: dict[str, Any] = field(default_factory=dict)


def sender_identity(address: str, display_name: str | None = None) -> tuple[str, Identity]:
    """The channel and identity of a Twilio address (``+49…`` or ``whatsapp:+49…``)."""
    if address.startswith(WHATSAPP_PREFIX):
        number = address.removeprefix(WHATSAPP_PREFIX)
        return "whatsapp", Identity(kind="whatsapp", address=number, display_name=display_name)
    return "sms", Identity(kind="phone", address=address, display_name=display_name)


def keyword(body: str, opt_out_type: str | None = None) -> str | None:
    """``stop``, ``start`` or ``help`` when the message is one of the reserved keywords."""
    if opt_out_type:
        value = opt_out_type.strip().lower()
        return value if value in {"stop", "start", "help"} else None
    word = body.strip().rstrip(".!").upper()
    if word in STOP_WORDS:
        return "stop"
    if word in START_WORDS:
        return "start"
    if word in HELP_WORDS:
        return "help"
    return None


def _one(fields: Mapping[str, list[str]], name: str) -> str | None:
    values = fields.get(name)
    return values[0] if values else None


def parse_inbound(
    fields: Mapping[str, list[str]],
    *,
    inbox: str,
    account_sid: str,
    received_at: float,
    max_media: int,
) -> Inbound:
    """The envelope of a messaging webhook's fields (already signature-checked)."""
    sid = _one(fields, "MessageSid") or _one(fields, "SmsMessageSid")
    sender = _one(fields, "From")
    to = _one(fields, "To")
    if not sid or not re.fullmatch(r"[A-Za-z0-9_-]{2,64}", sid):
        raise BadWebhook("MessageSid is missing or malformed")
    if not sender or len(sender) > 64:
        raise BadWebhook("From is missing or malformed")
    if (_one(fields, "AccountSid") or "") != account_sid:
        raise BadWebhook("AccountSid is not this inbox's account")
    body = (_one(fields, "Body") or "")[:MAX_TEXT]
    channel, identity = sender_identity(sender, _one(fields, "ProfileName"))
    metadata: dict[str, Any] = {
        name: values[0] if len(values) == 1 else values
        for name, values in fields.items()
        if not _CONSUMED.match(name)
    }
    text = body
    latitude, longitude = _one(fields, "Latitude"), _one(fields, "Longitude")
    if latitude and longitude:
        location = {
            "latitude": latitude,
            "longitude": longitude,
            "address": _one(fields, "Address"),
            "label": _one(fields, "Label"),
        }
        metadata["location"] = location
        if not text:
            place = location["label"] or location["address"] or ""
            text = f"Location: {latitude}, {longitude} {place}".strip()
    button = _one(fields, "ButtonText")
    if button is not None:
        metadata["button"] = {"text": button, "payload": _one(fields, "ButtonPayload")}
        text = text or button
    try:
        count = int(_one(fields, "NumMedia") or "0")
    except ValueError:
        raise BadWebhook("NumMedia is not a number") from None
    media = []
    for index in range(min(max(count, 0), 20)):
        url = _one(fields, f"MediaUrl{index}")
        if url:
            kind = _one(fields, f"MediaContentType{index}") or "application/octet-stream"
            media.append(Media(url=url, content_type=kind[:255]))
    if len(media) > max_media:
        metadata["media_dropped"] = len(media) - max_media
        media = media[:max_media]
    found = keyword(body, _one(fields, "OptOutType")) if channel == "sms" else None
    if found is not None:
        metadata["keyword"] = found
    recipients = (sender_identity(to)[1],) if to else ()
    envelope = Envelope(
        channel=channel,
        inbox=inbox,
        direction=Direction.INBOUND,
        idempotency_key=f"twilio:{sid}",
        provider_id=sid,
        sender=identity,
        recipients=recipients,
        received_at=received_at,
        thread=ThreadHints(session=sender),
        text=text,
        metadata=metadata,
    )
    return Inbound(envelope=envelope, media=tuple(media), keyword=found)


# -- delivery reports --------------------------------------------------------------------------

_STATUS = {
    "accepted": DeliveryStatus.QUEUED,
    "scheduled": DeliveryStatus.QUEUED,
    "queued": DeliveryStatus.QUEUED,
    "sending": DeliveryStatus.QUEUED,
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "read": DeliveryStatus.READ,
    "undelivered": DeliveryStatus.UNDELIVERED,
    "failed": DeliveryStatus.FAILED,
    "canceled": DeliveryStatus.FAILED,
}

#: Twilio error codes an agent meets, in words (https://www.twilio.com/docs/api/errors)
ERROR_REASONS = {
    "20003": "the provider rejected the credentials (check account_sid and auth_token)",
    "20429": "too many requests to the provider; it will be retried",
    "21211": "the recipient's number is not a valid phone number",
    "21408": "sending to this country is not enabled on the account",
    "21606": "the sending number cannot send SMS from this account",
    "21610": "the recipient has opted out (replied STOP); they must send START first",
    "21612": "the recipient cannot be reached from this sending number",
    "21614": "the recipient's number is not a mobile number",
    "21617": "the text is too long (at most 1,600 characters)",
    "30001": "the provider's queue overflowed; try again later",
    "30002": "the provider account is suspended",
    "30003": "the recipient's phone is unreachable (off or out of coverage)",
    "30004": "the message was blocked (the recipient blocks it or the carrier does)",
    "30005": "the recipient's number is unknown or no longer in service",
    "30006": "the recipient's number is a landline or its carrier cannot take SMS",
    "30007": "the carrier filtered the message (suspected spam)",
    "30008": "the carrier failed to deliver it for an unknown reason",
    "30034": "the sending number is not registered for A2P 10DLC (US)",
    "63016": "WhatsApp allows free text only within 24 hours of the customer's last message: "
    "use a template",
    "63018": "WhatsApp rate limit reached for this sender",
    "63024": "the recipient cannot receive WhatsApp messages",
}


def reason(code: str | None, fallback: str | None = None) -> str | None:
    """A readable reason for a provider error code."""
    if code is None:
        return fallback
    return ERROR_REASONS.get(code, fallback or f"provider error {code}")


def status_report(fields: Mapping[str, list[str]]) -> tuple[str, Delivery]:
    """The message id and delivery state of a status callback."""
    sid = _one(fields, "MessageSid") or _one(fields, "SmsSid")
    status = (_one(fields, "MessageStatus") or _one(fields, "SmsStatus") or "").lower()
    if not sid or not re.fullmatch(r"[A-Za-z0-9_-]{2,64}", sid):
        raise BadWebhook("MessageSid is missing or malformed")
    if status not in _STATUS:
        raise BadWebhook(f"unknown MessageStatus {status!r}")
    code = _one(fields, "ErrorCode") or None
    delivery = Delivery(
        status=_STATUS[status],
        provider_id=sid,
        error_code=code,
        error_message=reason(code, _one(fields, "ErrorMessage")) if code else None,
    )
    return sid, delivery


def delivery_status(status: str | None) -> DeliveryStatus:
    """Our state for a status the REST API answered with (unknown ones count as queued)."""
    return _STATUS.get((status or "").lower(), DeliveryStatus.QUEUED)


# -- segments ----------------------------------------------------------------------------------

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")


def _pack(sizes: list[int], single: int, multi: int) -> int:
    """Segments for units of ``sizes`` (an escape pair or surrogate pair never splits)."""
    if sum(sizes) <= single:
        return 1 if sizes else 0
    segments, used = 1, 0
    for size in sizes:
        if used + size > multi:
            segments, used = segments + 1, 0
        used += size
    return segments


def segments(text: str) -> dict[str, Any]:
    """How an SMS of ``text`` is encoded and how many parts it is billed as.

    GSM-7 fits 160 characters in one part and 153 per part when split (extension characters
    like € count twice); any other character switches the whole text to UCS-2: 70, then 67 per
    part, counted in UTF-16 units (an emoji is two).
    """
    outside = [char for char in text if char not in GSM7_BASIC and char not in GSM7_EXTENDED]
    if not outside:
        sizes = [2 if char in GSM7_EXTENDED else 1 for char in text]
        return {
            "encoding": "GSM-7",
            "segments": _pack(sizes, 160, 153),
            "units": sum(sizes),
            "unicode_characters": [],
        }
    sizes = [2 if ord(char) > 0xFFFF else 1 for char in text]
    return {
        "encoding": "UCS-2",
        "segments": _pack(sizes, 70, 67),
        "units": sum(sizes),
        "unicode_characters": sorted(set(outside))[:10],
    }


# -- media URLs --------------------------------------------------------------------------------


def host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    host = host.lower().rstrip(".")
    for pattern in allowed:
        pattern = pattern.lower().rstrip(".")
        if pattern == "*":  # any host (private addresses are still refused separately)
            return True
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and host != pattern[2:]:
                return True
        elif host == pattern:
            return True
    return False


def address_private(value: str) -> bool:
    """True for addresses a webhook must never make us call: loopback, private, link-local
    (cloud metadata at 169.254.169.254), multicast, reserved, unspecified, and IPv6 forms of
    them (IPv4-mapped included)."""
    address = ipaddress.ip_address(value.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast


def media_refusal(url: str, allowed: tuple[str, ...], allow_private: bool) -> str | None:
    """Why ``url`` must not be fetched, or None if it may be (DNS answers are checked again
    when connecting)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return "not a valid URL"
    schemes = {"https", "http"} if allow_private else {"https"}
    if parts.scheme.lower() not in schemes:
        return f"scheme {parts.scheme or '(none)'!r} is not allowed"
    if parts.username is not None or parts.password is not None:
        return "credentials in the URL are not allowed"
    host = parts.hostname or ""
    if not host:
        return "no host"
    if not host_allowed(host, allowed):
        return f"host {host!r} is not on media_hosts"
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None and not allow_private and address_private(host):
        return f"address {host} is private"
    return None


def webhook_url(base: str, path_qs: str) -> str:
    """The URL the provider called: our public base (no trailing slash) plus path and query."""
    return base.rstrip("/") + path_qs
