"""Serving stored blobs to a provider that fetches outbound media by URL (Twilio MMS, Telnyx
fax): the signed URL to hand it, and the ``GET /channels/NAME/media/{token}`` handler.

The token is a :mod:`connectors.shared.media_links` link: one blob, its type and an expiry,
signed with the instance's key. Anything else, and a blob that is gone, is a plain 404.
"""

from __future__ import annotations

from aiohttp import web

from connectors.base import ConnectorContext
from connectors.shared import media_links

PATH = "/media/{token}"
TTL = 3600.0  # seconds a link stays valid: long enough for a provider's retries


def url(ctx: ConnectorContext, public_base: str, instance: str, ref: str, content_type: str) -> str:
    """Where a provider fetches blob ``ref`` during the next :data:`TTL` seconds;
    ``public_base`` is where the hub is reachable from outside."""
    token = media_links.sign(ctx.secret, ref, content_type, ctx.clock() + TTL)
    return f"{public_base.rstrip('/')}/channels/{instance}/media/{token}"


async def serve(ctx: ConnectorContext, request: web.Request) -> web.Response:
    """The blob the request's token names, never cached, never sniffed; 404 otherwise."""
    try:
        link = media_links.verify(ctx.secret, request.match_info["token"], ctx.clock())
        data = await ctx.blobs.get(link.ref)
    except (media_links.BadLink, FileNotFoundError, ValueError):
        raise web.HTTPNotFound() from None
    return web.Response(
        body=data,
        content_type=link.content_type,
        headers={"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"},
    )
