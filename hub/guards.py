"""aiohttp handler decorators that apply ``hub.permissions`` to API endpoints.

``@requires(Action.X)`` resolves the caller's session (401 without one), refuses roles the
policy does not grant (403), and passes the :class:`~hub.sessions.Principal` on. When the
caller's role is granted the action only for related records, the handler decides the relation
and calls :func:`hub.permissions.ensure` with it; a :class:`~hub.errors.NotAllowed` raised
there becomes the same 403.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

from aiohttp import web

from hub.errors import NotAllowed
from hub.keys import SESSIONS
from hub.permissions import Action, may, needs_relation
from hub.sessions import Principal, request_token

PrincipalHandler = Callable[[web.Request, Principal], Awaitable[web.StreamResponse]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


async def principal(request: web.Request) -> Principal | None:
    """The caller behind the request's session cookie or bearer token, if the session lives."""
    return await request.app[SESSIONS].resolve(request_token(request))


def requires(action: Action | None) -> Callable[[PrincipalHandler], Handler]:
    """Decorate a handler that needs a session and, unless ``action`` is None, the right to do
    ``action`` (fully, or for related records the handler checks itself)."""

    def decorate(handler: PrincipalHandler) -> Handler:
        @wraps(handler)
        async def checked(request: web.Request) -> web.StreamResponse:
            caller = await principal(request)
            if caller is None:
                return error(401, "not_authenticated", "log in first")
            if action is not None and not (
                may(caller.role, action) or needs_relation(caller.role, action)
            ):
                return error(403, "forbidden", f"{action} is not for the role {caller.role}")
            try:
                return await handler(request, caller)
            except NotAllowed as exc:
                return error(403, "forbidden", str(exc))

        return checked

    return decorate


async def read_json(request: web.Request) -> Any:
    """The request's JSON body; 415 for another content type, 400 for malformed JSON."""
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(
            text='{"error": "unsupported_media_type", "message": "send application/json"}',
            content_type="application/json",
        )
    try:
        return await request.json()
    except ValueError:
        raise web.HTTPBadRequest(
            text='{"error": "bad_json", "message": "the body is not valid JSON"}',
            content_type="application/json",
        ) from None
