"""Sinch Fax API v3 (formerly Phaxio), its wire format. Pure.

Sinch signs nothing: a webhook is genuine when it carries the Basic credentials written into
the webhook URL given to Sinch (:func:`callback_url`) and, when configured, comes from an
allowed address (:func:`source_allowed`). Both events arrive at one path: ``INCOMING_FAX``
(the fax and its PDF, as multipart/form-data or JSON with the file in base64) and
``FAX_COMPLETED`` (an outbound fax's outcome). The I/O is :mod:`connectors.fax.client_sinch`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from connectors.base import SendError
from connectors.fax import formdata
from connectors.fax.parse import IncomingFax, created_before
from connectors.shared.webhooks import decode_json
from hub.envelope import Delivery, DeliveryStatus

MAX_PARTS = 20
MAX_FIELD_BYTES = 256 * 1024
MULTIPART = "multipart/form-data"
JSON = "application/json"


class BadWebhook(ValueError):
    """A webhook body that is not what Sinch sends (answered 400)."""


class TooLarge(ValueError):
    """A webhook whose document or a field is over its limit (answered 413); ``message``
    None keeps the server's standard wording."""

    def __init__(self, limit: int, size: int, message: str | None = None) -> None:
        super().__init__(message or f"over {limit} bytes")
        self.limit = limit
        self.size = size
        self.message = message


def credentials_match(given: str, expected: str) -> bool:
    """Whether a webhook's ``Authorization`` header is the one in our callback URL (in
    constant time)."""
    return hmac.compare_digest(given.encode(), expected.encode())


def client_address(
    remote: str | None, forwarded_for: str, trusted_proxies: tuple[str, ...]
) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The caller's address: the peer, or the last ``X-Forwarded-For`` hop a trusted proxy
    added."""
    try:
        peer = ipaddress.ip_address(remote or "")
    except ValueError:
        return None
    proxies = [ipaddress.ip_network(cidr, strict=False) for cidr in trusted_proxies]
    if any(peer in net for net in proxies):
        hops = [h.strip() for h in forwarded_for.split(",")]
        for hop in reversed([h for h in hops if h]):
            try:
                address = ipaddress.ip_address(hop)
            except ValueError:
                return None
            if not any(address in net for net in proxies):
                return address
    return peer


def source_allowed(
    remote: str | None,
    forwarded_for: str,
    allowed: tuple[str, ...],
    trusted_proxies: tuple[str, ...],
) -> bool:
    """Whether the caller may post webhooks (any caller when ``allowed`` is empty)."""
    if not allowed:
        return True
    address = client_address(remote, forwarded_for, trusted_proxies)
    return address is not None and any(
        address in ipaddress.ip_network(cidr, strict=False) for cidr in allowed
    )


def webhook_fields(
    content_type: str, content_type_header: str, body: bytes, max_document_bytes: int
) -> tuple[dict[str, Any], bytes | None]:
    """The fields and the document of a webhook body (``content_type`` is multipart/form-data
    or application/json); :class:`BadWebhook` or :class:`TooLarge`."""
    if content_type == MULTIPART:
        return _form(content_type_header, body, max_document_bytes)
    try:
        document = decode_json(body)
    except ValueError as exc:
        raise BadWebhook(str(exc)) from None
    if not isinstance(document, dict):
        raise BadWebhook("the JSON body must be an object")
    file = None
    if isinstance(document.get("file"), str) and document["file"]:
        try:
            file = base64.b64decode(document["file"], validate=True)
        except (binascii.Error, ValueError):
            raise BadWebhook("file is not base64") from None
        if len(file) > max_document_bytes:
            raise TooLarge(max_document_bytes, len(file))
    return document, file


def _form(
    content_type_header: str, body: bytes, max_document_bytes: int
) -> tuple[dict[str, Any], bytes | None]:
    """The fields and the file of a multipart body (parsed off the wire, see formdata)."""

    def limit_of(name: str) -> int:
        return max_document_bytes if name == "file" else MAX_FIELD_BYTES

    try:
        parts = formdata.parse(
            body, formdata.boundary_of(content_type_header), max_parts=MAX_PARTS, limit_of=limit_of
        )
    except formdata.FormTooLarge as exc:
        raise TooLarge(exc.limit, len(body), str(exc)) from None
    except formdata.BadForm as exc:
        raise BadWebhook(f"bad multipart body: {exc}") from None
    fields: dict[str, Any] = {}
    file = None
    for part in parts:
        if part.name == "file":
            file = part.data
            continue
        try:
            fields[part.name] = part.data.decode("utf-8")
        except UnicodeDecodeError:
            raise BadWebhook(f"field {part.name[:40]!r} is not UTF-8") from None
    return fields, file


def parse_event(fields: dict[str, Any], file: bytes | None) -> tuple[str, dict[str, Any]]:
    """(event, fax object) of a webhook; ``fields['fax']`` may be a JSON text or an object."""
    event = fields.get("event")
    if event not in ("INCOMING_FAX", "FAX_COMPLETED"):
        raise BadWebhook(f"unknown event {str(event)[:40]!r}")
    fax = fields.get("fax")
    if isinstance(fax, str | bytes):
        try:
            fax = decode_json(fax)
        except ValueError as exc:
            raise BadWebhook(f"the fax field: {exc}") from None
    if not isinstance(fax, dict) or not isinstance(fax.get("id"), str) or not fax["id"]:
        raise BadWebhook("the fax object with an id is missing")
    return event, fax


def incoming(fax: dict[str, Any], file: bytes | None, event_time: str | None) -> IncomingFax:
    """The received fax of an ``INCOMING_FAX`` event."""
    pages = fax.get("numberOfPages")
    status = str(fax.get("status") or "")
    problem = None if file else "Sinch sent no document with this fax"
    return IncomingFax(
        fax_id=str(fax["id"])[:100],
        from_number=str(fax.get("from") or "")[:40],
        to_number=str(fax.get("to") or "")[:40],
        data=file or None,
        pages_declared=pages if isinstance(pages, int) and pages >= 0 else None,
        partial=status not in ("", "COMPLETED"),
        problem=problem,
        metadata={
            k: v
            for k, v in {
                "status": status or None,
                "event_time": event_time,
                "service_id": fax.get("serviceId"),
                "error": fax.get("errorMessage") or fax.get("errorCode"),
            }.items()
            if isinstance(v, str | int) and v != ""
        },
    )


def completion(fax: dict[str, Any]) -> Delivery:
    """The outcome of an outbound fax from a ``FAX_COMPLETED`` event."""
    status = str(fax.get("status") or "")
    if status == "COMPLETED":
        return Delivery(status=DeliveryStatus.DELIVERED, provider_id=str(fax["id"]))
    code = str(fax.get("errorCode") or fax.get("errorType") or "failure")[:60]
    message = str(
        fax.get("errorMessage") or fax.get("errorType") or "the fax could not be delivered"
    )
    return Delivery(
        status=DeliveryStatus.FAILED,
        provider_id=str(fax["id"]),
        error_code=code,
        error_message=message[:300],
    )


def faxes_url(api_base_url: str, project_id: str) -> str:
    """The project's ``…/faxes`` collection."""
    base = api_base_url.rstrip("/")
    return f"{base}/v3/projects/{quote(project_id, safe='')}/faxes"


def callback_url(public_base: str, username: str, password: str, key: str) -> str:
    """Our webhook with its credentials in the URL (how Sinch authenticates callbacks) and
    the reply's key, by which a retry recognizes a fax an earlier attempt created."""
    parts = urlsplit(f"{public_base}/webhook")
    netloc = f"{quote(username, safe='')}:{quote(password, safe='')}@"
    netloc += parts.netloc.rpartition("@")[2]
    query = f"ref={quote(key, safe='')}"
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def without_credentials(url: str) -> str:
    """``url`` without its user:password part (Sinch shows it masked, or not at all)."""
    parts = urlsplit(url)
    return urlunsplit(
        (parts.scheme, parts.netloc.rpartition("@")[2], parts.path, parts.query, parts.fragment)
    )


def earlier_fax(listing: dict[str, Any], callback: str, created_at: float) -> Delivery | None:
    """The fax an earlier attempt of this reply created (its answer lost), in a listing of
    outbound faxes: known by our callback URL, which names this reply's key. Sinch masks the
    Basic credentials of a callback URL it lists, so URLs are compared without them; a fax
    dated before the reply existed is never taken."""
    wanted = without_credentials(callback)
    for item in listing.get("faxes") or ():
        if not isinstance(item, dict) or not item.get("id"):
            continue
        listed = item.get("callbackUrl")
        if not isinstance(listed, str) or without_credentials(listed) != wanted:
            continue
        if created_before(item.get("createTime"), created_at):
            continue
        return Delivery(status=DeliveryStatus.QUEUED, provider_id=str(item["id"]))
    return None


def sent(status: int, answer: dict[str, Any]) -> Delivery:
    """The outcome of ``POST …/faxes``: queued with its id, or :class:`SendError` (429 and 5xx
    retryable)."""
    if status >= 400:
        nested = answer.get("error")
        error: dict[str, Any] = nested if isinstance(nested, dict) else answer
        message = str(error.get("message") or f"HTTP {status}")[:300]
        code = str(error.get("code") or error.get("status") or status)[:60]
        retryable = status == 429 or status >= 500
        raise SendError(f"Sinch refused the fax: {message}", code=code, retryable=retryable)
    fax_id = answer.get("id")
    if not isinstance(fax_id, str) or not fax_id:
        raise SendError("Sinch answered without a fax id", code="bad_answer")
    return Delivery(status=DeliveryStatus.QUEUED, provider_id=fax_id)
