"""``GET /api/search?q=…&cursor=…&limit=…`` (docs/api.md, "Search").

Everyone with a session may search; what they find is narrowed to what they may see
(``conversations.read``, ``hub.scope``). A query that cannot be searched answers 400
with what to change.
"""

from __future__ import annotations

from aiohttp import web

from hub.guards import error, requires
from hub.keys import SETTINGS, STORE
from hub.permissions import Action
from hub.scope import scope_of
from hub.search import sql
from hub.search.query import BadQuery, parse
from hub.sessions import Principal


@requires(Action.READ_CONVERSATIONS)
async def search(request: web.Request, principal: Principal) -> web.StreamResponse:
    params = request.query
    try:
        query = parse(params.get("q"), params.get("cursor"), params.get("limit"))
    except BadQuery as exc:
        return error(400, "bad_query", str(exc))
    settings = request.app[SETTINGS]
    scope = scope_of(
        principal.role,
        principal.id,
        principal.agent.queues,
        [queue.name for queue in settings.queues],
    )
    async with request.app[STORE].read() as connection:
        page = await sql.search(connection, query, scope)
    return web.json_response(
        {
            "query": query.text,
            "terms": list(query.terms),
            "hits": page.hits,
            "next_cursor": page.next_cursor,
        }
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/search", search)
