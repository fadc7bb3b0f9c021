"""Reading a provider's webhook: the whole body under a cap, and JSON that cannot blow up.

``request.content.read(n)`` returns what has arrived *so far* (up to n): a large webhook read
that way was cut short and failed its signature although the provider sent it whole, so the
body is read to its end here. msgspec gives up on JSON nested deeper than it can follow with a
RecursionError; :func:`decode_json` turns that into the ValueError a caller answers 400 with.
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from connectors.base import Unavailable


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole request body; 413 at once when its Content-Length, or as soon as what has
    arrived, is over ``limit`` bytes."""
    if (request.content_length or 0) > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length or 0)
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.readany():
        size += len(chunk)
        if size > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size)
        chunks.append(chunk)
    return b"".join(chunks)


def decode_json(data: bytes | str) -> Any:
    """JSON from a caller or provider; ValueError (never RecursionError: 100,000 nested
    brackets made a webhook answer 500) when it is not JSON we can take. Pure."""
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError:
        raise ValueError("the body is not JSON") from None
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None


def json_object(body: bytes) -> dict[str, Any]:
    """A provider's JSON answer as an object; {} for anything else (an HTML error page). Pure."""
    try:
        document = decode_json(body) if body else {}
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


#: seconds a provider is asked to wait before retrying a webhook the hub could not take
RETRY_AFTER = 10


def retry_later(what: str, error: BaseException | None = None) -> web.HTTPServiceUnavailable:
    """The 503 for a webhook whose message the hub did not take (``what``: "not stored"), with
    the reason and ``Retry-After``, so the provider retries it. The reason says whether the
    hub's storage is down (:class:`connectors.base.Unavailable`) without its internals."""
    reason = (
        "the hub's storage is unavailable" if isinstance(error, Unavailable) else "internal error"
    )
    return web.HTTPServiceUnavailable(
        text=f"{what}: {reason}; retry later", headers={"Retry-After": str(RETRY_AFTER)}
    )
