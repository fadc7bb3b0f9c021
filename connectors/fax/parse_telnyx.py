"""Telnyx Programmable Fax, its wire format. Pure.

Every webhook is signed with Ed25519 over ``{telnyx-timestamp}|{raw body}``
(``telnyx-signature-ed25519``, base64) and is refused unless the signature verifies with the
account's public key (:func:`verify`), the timestamp is within the tolerance (5 minutes) and
the same signed request was not seen before (:class:`Replays`). ``fax.received`` carries a
pre-signed ``media_url`` that expires. The I/O is :mod:`connectors.fax.client_telnyx`.
"""

from __future__ import annotations

import base64
import binascii
from collections import OrderedDict
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from connectors.base import SendError
from connectors.fax.parse import CLOCK_SKEW, IncomingFax, created_before, iso_time, reply_ref
from connectors.shared.webhooks import decode_json
from hub.envelope import Delivery, DeliveryStatus

MAX_BODY = 256 * 1024
SEEN = 10_000  # signatures remembered to refuse replays within the tolerance
_STATUS = {
    "fax.queued": DeliveryStatus.QUEUED,
    "fax.sending.started": DeliveryStatus.SENT,
    "fax.delivered": DeliveryStatus.DELIVERED,
    "fax.failed": DeliveryStatus.FAILED,
}


class BadSignature(ValueError):
    """A webhook that is not provably from Telnyx, or too old, or a replay (answered 403)."""


def public_key(encoded: str) -> Ed25519PublicKey:
    """The account's public key from its base64 text; ValueError saying which setting."""
    try:
        raw = base64.b64decode(encoded, validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError):
        raise ValueError("telnyx.public_key is not a base64 Ed25519 public key") from None


def verify(
    key: Ed25519PublicKey,
    signature: str | None,
    timestamp: str | None,
    body: bytes,
    now: float,
    tolerance: float,
) -> None:
    """Raise :class:`BadSignature` unless ``body`` is signed by ``key`` within ``tolerance``."""
    if not signature or not timestamp:
        raise BadSignature("telnyx-signature-ed25519 and telnyx-timestamp are required")
    if not timestamp.isdigit() or len(timestamp) > 12:
        raise BadSignature("telnyx-timestamp is not a Unix time")
    if abs(now - int(timestamp)) > tolerance:
        raise BadSignature("the webhook is too old (or from the future)")
    try:
        key.verify(base64.b64decode(signature, validate=True), timestamp.encode() + b"|" + body)
    except (InvalidSignature, binascii.Error, ValueError):
        raise BadSignature("the signature does not verify") from None


class Replays:
    """The signatures of requests received within the tolerance: a signed request counts
    once (Telnyx signs each delivery anew, so its own retry is never refused)."""

    def __init__(self, tolerance: float, remember: int = SEEN) -> None:
        self.tolerance = tolerance
        self.remember = remember
        self._seen: OrderedDict[str, float] = OrderedDict()

    def check(self, signature: str, now: float) -> None:
        """Remember ``signature``; :class:`BadSignature` if it was received already."""
        while self._seen and next(iter(self._seen.values())) < now - self.tolerance:
            self._seen.popitem(last=False)
        if signature in self._seen:
            raise BadSignature("this signed request was already received (replay)")
        self._seen[signature] = now
        while len(self._seen) > self.remember:
            self._seen.popitem(last=False)

    def forget(self, signature: str) -> None:
        """Let ``signature`` in again (its request was not handled; a retry may repeat it)."""
        self._seen.pop(signature, None)


def event_of(body: bytes) -> tuple[str, str, dict[str, Any]]:
    """(event id, event type, payload) of a webhook body; ValueError if malformed."""
    document = decode_json(body)
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, dict):
        raise ValueError("the body has no data object")
    payload = data.get("payload")
    kind = data.get("event_type")
    if not isinstance(payload, dict) or not isinstance(kind, str):
        raise ValueError("data needs event_type and payload")
    return str(data.get("id") or ""), kind, payload


def incoming(payload: dict[str, Any], event_id: str) -> IncomingFax:
    """The received fax of a ``fax.received`` event (its document still to download)."""
    fax_id = payload.get("fax_id")
    if not isinstance(fax_id, str) or not fax_id:
        raise ValueError("fax.received without fax_id")
    pages = payload.get("page_count")
    return IncomingFax(
        fax_id=fax_id[:100],
        from_number=str(payload.get("from") or "")[:40],
        to_number=str(payload.get("to") or "")[:40],
        data=None,
        pages_declared=pages if isinstance(pages, int) and pages >= 0 else None,
        partial=bool(payload.get("partial_content")),
        metadata={
            k: v
            for k, v in {
                "event_id": event_id or None,
                "connection_id": payload.get("connection_id"),
                "status": payload.get("status"),
                "call_duration_secs": payload.get("call_duration_secs"),
            }.items()
            if isinstance(v, str | int) and v != ""
        },
    )


def status_report(kind: str, payload: dict[str, Any]) -> tuple[str, Delivery] | None:
    """(fax id, delivery) of an outbound fax's event; None for events that change nothing."""
    status = _STATUS.get(kind)
    fax_id = payload.get("fax_id")
    if status is None or not isinstance(fax_id, str) or not fax_id:
        return None
    if status is DeliveryStatus.FAILED:
        reason = str(payload.get("failure_reason") or "failed")[:60]
        return fax_id, Delivery(
            status=status,
            provider_id=fax_id,
            error_code=reason,
            error_message=f"the fax was not delivered ({reason.replace('_', ' ')})",
        )
    return fax_id, Delivery(status=status, provider_id=fax_id)


def media_url_of(answer: object) -> str | None:
    """The fresh ``media_url`` in the answer to ``GET /v2/faxes/{id}``, if there is one."""
    data = answer.get("data") if isinstance(answer, dict) else None
    found = data.get("media_url") if isinstance(data, dict) else None
    return found if isinstance(found, str) else None


def client_state(key: str) -> str:
    """Telnyx's ``client_state`` for a reply (it must be base64): the reply's mark."""
    return base64.b64encode(reply_ref(key).encode()).decode()


def earlier_query(to_number: str, created_at: float) -> dict[str, str]:
    """The ``GET /v2/faxes`` filter listing the faxes an earlier attempt of a reply created
    at ``created_at`` could have made."""
    return {
        "filter[to][eq]": to_number,
        "filter[direction][eq]": "outbound",
        "filter[created_at][gte]": iso_time(created_at - CLOCK_SKEW),
        "page[size]": "50",
    }


def earlier_fax(listing: dict[str, Any], state: str, created_at: float) -> Delivery | None:
    """The fax an earlier attempt of this reply created (its answer lost), in that listing:
    one that carries this reply's ``client_state`` and is not dated before the reply."""
    for item in listing.get("data") or ():
        if not isinstance(item, dict) or not item.get("id"):
            continue
        if item.get("client_state") != state:
            continue
        if created_before(item.get("created_at"), created_at):
            continue
        return Delivery(status=DeliveryStatus.QUEUED, provider_id=str(item["id"]))
    return None


def sent(status: int, answer: dict[str, Any]) -> Delivery:
    """The outcome of ``POST /v2/faxes``: queued with its id, or :class:`SendError` (429 and
    5xx retryable)."""
    if status >= 400:
        errors = answer.get("errors")
        first = errors[0] if isinstance(errors, list) and errors else {}
        first = first if isinstance(first, dict) else {}
        detail = str(first.get("detail") or first.get("title") or f"HTTP {status}")[:300]
        raise SendError(
            f"Telnyx refused the fax: {detail}",
            code=str(first.get("code") or status)[:60],
            retryable=status == 429 or status >= 500,
        )
    data = answer.get("data")
    fax_id = data.get("id") if isinstance(data, dict) else None
    if not isinstance(fax_id, str) or not fax_id:
        raise SendError("Telnyx answered without a fax id", code="bad_answer")
    return Delivery(status=DeliveryStatus.QUEUED, provider_id=fax_id)
