"""Twilio's signed webhooks (messaging and voice alike): proving a request is Twilio's. Pure,
except :func:`verified_request`, which reads the request.

Twilio signs every webhook with ``X-Twilio-Signature``: HMAC-SHA1 with the account's auth
token over the URL it called plus the sorted form fields (a JSON body is signed through a
``bodySHA256`` query parameter instead). The SMS and voice connectors both check it here, so a
fix reaches both.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import parse_qsl

import msgspec
from aiohttp import web
from multidict import MultiDict
from twilio.request_validator import RequestValidator

from connectors.shared.webhooks import read_body

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


class BadWebhook(ValueError):
    """A webhook whose fields cannot be what it claims (answered 400 with this reason)."""


class BadSignature(ValueError):
    """A webhook not provably from the provider (answered 403 with this reason)."""


def webhook_url(base: str, path_qs: str) -> str:
    """The URL the provider called: our public base (no trailing slash) plus path and query."""
    return base.rstrip("/") + path_qs


def verified_fields(
    content_type: str,
    body: bytes,
    *,
    url: str,
    signature: str | None,
    validator: RequestValidator,
    body_hash_in_url: bool,
) -> dict[str, list[str]]:
    """The posted fields (name -> values) of a webhook body Twilio signed; :class:`BadSignature`
    or :class:`BadWebhook`. ``url`` is the URL Twilio called (:func:`webhook_url`);
    ``body_hash_in_url``, whether its query carries ``bodySHA256``, which is how a JSON body
    is signed (the signature covers the URL, the URL hashes the body)."""
    if not signature:
        raise BadSignature("X-Twilio-Signature is missing")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadWebhook("the body is not UTF-8") from None
    if content_type == FORM:
        try:
            pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=500)
        except ValueError as exc:
            raise BadWebhook(f"bad form body: {exc}") from None
        if not validator.validate(url, MultiDict(pairs), signature):
            raise BadSignature("X-Twilio-Signature does not match")
        return grouped(pairs)
    if not body_hash_in_url:
        raise BadSignature("a JSON webhook must carry bodySHA256")
    if not validator.validate(url, text, signature):
        raise BadSignature("X-Twilio-Signature does not match")
    try:
        document = msgspec.json.decode(body)
    except msgspec.DecodeError:
        raise BadWebhook("the body is not JSON") from None
    except RecursionError:  # nesting no webhook has; msgspec gives up on it
        raise BadWebhook("the JSON body is nested too deeply") from None
    if not isinstance(document, dict):
        raise BadWebhook("the JSON body must be an object")
    return grouped(
        (str(key), value if isinstance(value, str) else msgspec.json.encode(value).decode())
        for key, value in document.items()
    )


def grouped(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Posted fields as name -> values, the shape the connectors' parsers take."""
    fields: dict[str, list[str]] = {}
    for key, value in pairs:
        fields.setdefault(key, []).append(value)
    return fields


async def verified_request(
    request: web.Request,
    *,
    validator: RequestValidator,
    public_base: str,
    max_body_bytes: int,
    json_allowed: bool = True,
) -> dict[str, list[str]]:
    """The posted fields of a genuine Twilio request, or the HTTP error to answer: 413 over
    ``max_body_bytes``, 415 for another content type, 403 for a bad signature (nothing else
    is read or stored), 400 for a body that is not a form."""
    limit = max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    kind = request.content_type
    if kind not in ((FORM, JSON) if json_allowed else (FORM,)):
        raise web.HTTPUnsupportedMediaType(text=f"expected {FORM}, got {kind or 'nothing'}")
    body = await read_body(request, limit)
    try:
        return verified_fields(
            kind,
            body,
            url=webhook_url(public_base, request.raw_path),  # as sent: Twilio signed these bytes
            signature=request.headers.get("X-Twilio-Signature"),
            validator=validator,
            body_hash_in_url="bodySHA256" in request.query,
        )
    except BadSignature as exc:
        raise web.HTTPForbidden(text=str(exc)) from None
    except BadWebhook as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
