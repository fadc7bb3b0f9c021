"""The console's pages and their files, served from memory with a strict content policy.

The files are read once when the app is built (they ship with the package), so serving them
touches no disk and no path from a request ever reaches the file system.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).parent / "static"
HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": "default-src 'self'; connect-src 'self' ws: wss:",
    "X-Content-Type-Options": "nosniff",
}
FILES = {
    "/console/": ("index.html", "text/html"),
    "/console/console.js": ("console.js", "application/javascript"),
    "/console/console.css": ("console.css", "text/css"),
    # the admins' rules replay page (hub.replay.api)
    "/console/rules-diff": ("rules-diff.html", "text/html"),
    "/console/rules-diff.js": ("rules-diff.js", "application/javascript"),
    "/console/rules-diff.css": ("rules-diff.css", "text/css"),
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def add_routes(app: web.Application) -> None:
    """``/`` and ``/console`` lead to ``/console/``; the page's files under ``/console/``."""
    app.router.add_get("/", to_console)
    app.router.add_get("/console", to_console)
    for path, (name, content_type) in FILES.items():
        app.router.add_get(path, static_file(name, content_type))


async def to_console(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/console/")


def static_file(name: str, content_type: str) -> Handler:
    """A handler answering with the bytes of ``static/name``, read now."""
    body = (STATIC / name).read_bytes()

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type=content_type, headers=HEADERS)

    return handler
