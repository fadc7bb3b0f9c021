"""Twilio's messaging wire format, pure: webhook bodies in, envelope and decisions out.

No I/O here: the connector reads requests, fetches media and calls the API; everything it
decides (whether a webhook is genuinely Twilio's, which fields mean what, which keyword opts
out, what a status or error code means) is decided here and tested on recorded payloads.
Whether a webhook is Twilio's is :mod:`connectors.shared.twilio_webhooks` (shared with voice). Which
media URLs may be fetched is :mod:`connectors.shared.fetch_policy`; what a text costs in
segments, :mod:`connectors.sms.segments`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from connectors.base import SendError
from connectors.shared.twilio_webhooks import BadSignature as BadSignature
from connectors.shared.twilio_webhooks import BadWebhook as BadWebhook
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
    idempotency_token: str | None = None,
) -> Inbound:
    """The envelope of a messaging webhook's fields (already signature-checked).

    A webhook without a MessageSid (some compatible providers) is keyed by its
    ``I-Twilio-Idempotency-Token`` header, passed as ``idempotency_token``."""
    sid = _one(fields, "MessageSid") or _one(fields, "SmsMessageSid")
    absent = "MessageSid" not in fields and "SmsMessageSid" not in fields
    if absent and idempotency_token:
        sid = re.sub(r"[^A-Za-z0-9_-]", "", idempotency_token)[:64]
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


def send_error(status: int, code: int | str | None, message: str | None) -> SendError:
    """A failed API call as a :class:`SendError`: 429 and 5xx are worth another try; other
    4xx will fail the same way again."""
    reason_code = str(code) if code else None
    text = reason(reason_code, message) or message
    return SendError(
        text or f"HTTP {status}",
        code=reason_code or f"http_{status}",
        retryable=status == 429 or status >= 500,
    )


def template_variables(names: tuple[str, ...], values: dict[str, str]) -> str:
    """Twilio's ContentVariables: JSON of {"1": …, "2": …} from the agent's named values."""
    return json.dumps(
        {str(index): values[name] for index, name in enumerate(names, 1)}, ensure_ascii=False
    )


def delivery_status(status: str | None) -> DeliveryStatus:
    """Our state for a status the REST API answered with (unknown ones count as queued)."""
    return _STATUS.get((status or "").lower(), DeliveryStatus.QUEUED)
