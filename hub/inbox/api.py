"""``GET /api/conversations?view=…`` (docs/api.md, "Inbox views").

Everyone with a session; what a view lists is narrowed to what the caller may read
(``conversations.read``, ``hub.scope``): an agent's *queues* are the queues they
serve, *unassigned*, *closed* and *all* what their scope covers; *mine* what they hold.
"""

from __future__ import annotations

from aiohttp import web

from hub.guards import error, requires
from hub.inbox import sql
from hub.inbox.query import BadRequest, parse
from hub.keys import SETTINGS, STORE
from hub.permissions import Action
from hub.scope import scope_of
from hub.sessions import Principal


@requires(Action.READ_CONVERSATIONS)
async def conversations(request: web.Request, principal: Principal) -> web.StreamResponse:
    try:
        query = parse(request.query)
    except BadRequest as exc:
        return error(400, "bad_parameter", str(exc))
    all_queues = [queue.name for queue in request.app[SETTINGS].queues]
    served = frozenset(principal.agent.queues or all_queues)
    scope = scope_of(principal.role, principal.id, principal.agent.queues, all_queues)
    async with request.app[STORE].read() as connection:
        items, cursor = await sql.page(connection, query, scope, principal.id, served)
    return web.json_response(
        {"view": query.view.value, "conversations": items, "next_cursor": cursor}
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/conversations", conversations)
