"""JSON API under ``/api/``: agent login, logout and who-am-I (documented in docs/api.md)."""

from __future__ import annotations

from typing import Any, TypeVar
from urllib.parse import unquote

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hub import __version__, uploads
from hub.auth import SESSION_COOKIE
from hub.console.service import origin_allowed
from hub.errors import AuthError, InvalidState, NotFound
from hub.keys import (
    AUTH,
    BLOBS,
    CONSOLE,
    CUSTOMERS,
    RULES_WATCHER,
    SETTINGS,
    STORE,
    UPLOAD_SECRET,
)
from hub.settings import AgentSettings


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


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


async def login(request: web.Request) -> web.StreamResponse:
    body = await read_json(request)
    try:
        credentials = LoginRequest.model_validate(body)
    except ValidationError as exc:
        return _error(400, "bad_request", exc.errors(include_url=False)[0]["msg"])
    try:
        agent = await request.app[AUTH].check_password(
            credentials.username, credentials.password, request.remote or "unknown"
        )
    except AuthError as exc:
        return _error(401, "invalid_credentials", str(exc))
    ttl = request.app[SETTINGS].server.session_ttl
    token = await request.app[STORE].create_session(agent.id, ttl)
    response = web.json_response({"token": token, "agent": {"id": agent.id, "name": agent.name}})
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(ttl),
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        path="/",
    )
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    token = request.cookies.get(SESSION_COOKIE) or _bearer(request)
    if token:
        await request.app[STORE].delete_session(token)
    response = web.json_response({"status": "logged_out"})
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


async def _agent(request: web.Request) -> AgentSettings | None:
    """The configured agent behind the request's session cookie or bearer token."""
    token = request.cookies.get(SESSION_COOKIE) or _bearer(request)
    agent_id = await request.app[STORE].session_agent(token) if token else None
    agents = {agent.id: agent for agent in request.app[SETTINGS].agents}
    return agents.get(agent_id) if agent_id else None


async def me(request: web.Request) -> web.StreamResponse:
    agent = await _agent(request)
    if agent is None:
        return _error(401, "not_authenticated", "log in first")
    return web.json_response({"agent": {"id": agent.id, "name": agent.name}})


async def rules_status(request: web.Request) -> web.StreamResponse:
    """The running rules revision and, if the file on disk was rejected, why."""
    if await _agent(request) is None:
        return _error(401, "not_authenticated", "log in first")
    watcher = request.app.get(RULES_WATCHER)
    settings = request.app[SETTINGS]
    if watcher is None:
        return web.json_response(
            {"path": settings.rules.path, "watching": False, "revision": None, "problems": []}
        )
    ruleset = watcher.holder.current
    return web.json_response(
        {
            "path": watcher.path,
            "watching": True,
            "revision": ruleset.digest,
            "rules": len(ruleset.rules),
            "problems": watcher.last_problems,
        }
    )


async def rules_revision(request: web.Request) -> web.StreamResponse:
    """An accepted rules file by its SHA-256 (conversations record the one that routed them)."""
    if await _agent(request) is None:
        return _error(401, "not_authenticated", "log in first")
    revision = await request.app[STORE].rules_revision(request.match_info["digest"])
    if revision is None:
        return _error(404, "not_found", "no rules revision with this SHA-256")
    return web.json_response(revision)


async def customer(request: web.Request) -> web.StreamResponse:
    """A customer's context by id, customer number, email address or phone number."""
    if await _agent(request) is None:
        return _error(401, "not_authenticated", "log in first")
    customers = request.app[CUSTOMERS]
    customer_id = await customers.find(request.match_info["key"])
    if customer_id is None:
        return _error(404, "not_found", "no customer matches")
    return web.json_response(await customers.context(customer_id))


BodyT = TypeVar("BodyT", bound=BaseModel)


class MergeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: str = Field(min_length=1, max_length=320)
    target: str = Field(min_length=1, max_length=320)


class UnmergeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    merge_id: int


async def _authorized_body(
    request: web.Request, model: type[BodyT]
) -> tuple[AgentSettings, BodyT] | web.Response:
    """The logged-in agent and the validated JSON body, or the error response to send."""
    agent = await _agent(request)
    if agent is None:
        return _error(401, "not_authenticated", "log in first")
    try:
        return agent, model.model_validate(await read_json(request))
    except ValidationError as exc:
        return _error(400, "bad_request", exc.errors(include_url=False)[0]["msg"])


async def merge_customers(request: web.Request) -> web.StreamResponse:
    checked = await _authorized_body(request, MergeRequest)
    if isinstance(checked, web.Response):
        return checked
    agent, body = checked
    customers = request.app[CUSTOMERS]
    ids = [await customers.find(key) for key in (body.source, body.target)]
    if ids[0] is None or ids[1] is None:
        return _error(404, "not_found", "source or target matches no customer")
    try:
        merge_id = await customers.merge(ids[0], ids[1], actor=agent.id)
    except (NotFound, InvalidState) as exc:
        return _error(409, "conflict", str(exc))
    return web.json_response({"merge_id": merge_id, "source": ids[0], "target": ids[1]})


async def unmerge_customers(request: web.Request) -> web.StreamResponse:
    checked = await _authorized_body(request, UnmergeRequest)
    if isinstance(checked, web.Response):
        return checked
    agent, body = checked
    try:
        result = await request.app[CUSTOMERS].unmerge(body.merge_id, actor=agent.id)
    except NotFound as exc:
        return _error(404, "not_found", str(exc))
    except InvalidState as exc:
        return _error(409, "conflict", str(exc))
    return web.json_response(result)


# shown in the console as pictures; anything else (SVG included) only ever downloads
_INLINE_TYPES = {"image/png", "image/jpeg", "image/gif"}


async def attachment(request: web.Request) -> web.StreamResponse:
    """A message's file for the agent working on its conversation (or a supervisor)."""
    agent = await _agent(request)
    if agent is None:
        return _error(401, "not_authenticated", "log in first")
    found = await request.app[STORE].attachment(request.match_info["id"][:64])
    if found is None:
        return _error(404, "not_found", "no such attachment")
    if not agent.supervisor and found["assignee"] != agent.id:
        return _error(403, "forbidden", "this conversation is not assigned to you")
    try:
        data = await request.app[BLOBS].get(found["blob_ref"])
    except (FileNotFoundError, ValueError):
        return _error(404, "not_found", "the file is gone from the blob store")
    kind = str(found["content_type"]).lower()
    inline = kind in _INLINE_TYPES
    filename = "".join(ch for ch in str(found["name"]) if ch.isalnum() or ch in "._- ")[:100]
    return web.Response(
        body=data,
        content_type=kind if inline else "application/octet-stream",
        headers={
            "Content-Disposition": (
                f'{"inline" if inline else "attachment"}; filename="{filename or "file"}"'
            ),
            "Cache-Control": "private, max-age=3600",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
        },
    )


async def upload(request: web.Request) -> web.StreamResponse:
    """Store a file an agent will send with a reply; answers a token for ``reply.attachments``.

    The body is the file itself; ``Content-Type`` is its type and ``X-Filename`` its name
    (percent-encoded), both metadata only."""
    agent = await _agent(request)
    if agent is None:
        return _error(401, "not_authenticated", "log in first")
    if not origin_allowed(request, request.app[SETTINGS].server.allowed_origins):
        return _error(403, "forbidden", "this origin may not upload")
    limit = uploads.MAX_UPLOAD_BYTES
    if (request.content_length or 0) > limit:
        return _error(413, "too_large", f"files are limited to {limit // (1024 * 1024)} MiB")
    data = await request.content.read(limit + 1)
    if len(data) > limit:
        return _error(413, "too_large", f"files are limited to {limit // (1024 * 1024)} MiB")
    if not data:
        return _error(400, "bad_request", "the file is empty")
    stored = await request.app[BLOBS].put(
        data,
        name=uploads.filename(unquote(request.headers.get("X-Filename", ""))),
        content_type=uploads.content_type(request.headers.get("Content-Type")),
    )
    now = request.app[CONSOLE].clock()
    token = uploads.sign(request.app[UPLOAD_SECRET], stored, agent.id, now + uploads.TTL)
    return web.json_response(
        {
            "token": token,
            "name": stored.name,
            "content_type": stored.content_type,
            "size": stored.size,
        },
        status=201,
    )


async def version(request: web.Request) -> web.StreamResponse:
    return web.json_response({"version": __version__})


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    return header[7:] if header.startswith("Bearer ") else None


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/login", login)
    app.router.add_post("/api/logout", logout)
    app.router.add_get("/api/me", me)
    app.router.add_get("/api/version", version)
    app.router.add_get("/api/attachments/{id}", attachment)
    app.router.add_post("/api/uploads", upload)
    app.router.add_get("/api/rules", rules_status)
    app.router.add_get("/api/customers/{key}", customer)
    app.router.add_post("/api/customers/merge", merge_customers)
    app.router.add_post("/api/customers/unmerge", unmerge_customers)
    app.router.add_get("/api/rules/revisions/{digest}", rules_revision)
