"""JSON API under ``/api/``: agent login, logout and who-am-I (documented in docs/api.md)."""

from __future__ import annotations

from typing import Any, TypeVar
from urllib.parse import unquote

import msgspec
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hub import __version__, uploads
from hub.auth import DEVICE_COOKIE, DEVICE_TTL, SECURE_DEVICE_COOKIE, retry_after_header
from hub.errors import AuthError, InvalidState, NotFound, TooManyAttempts
from hub.guards import error as _error
from hub.guards import read_json, requires
from hub.keys import (
    AUTH,
    BLOBS,
    CONSOLE,
    CUSTOMERS,
    DISPATCH,
    ROLE,
    RULES_WATCHER,
    SESSIONS,
    SETTINGS,
    STORE,
    UPLOAD_SECRET,
)
from hub.permissions import Action, ensure, needs_relation
from hub.privacy import api as privacy_api
from hub.reports import api as reports_api
from hub.sessions import SECURE_SESSION_COOKIE, SESSION_COOKIE, Ended, Principal, request_token
from hub.settings import AgentSettings
from hub.store.schema import QUEUED
from hub.websec import client_address, is_secure

CUSTOMER_ENDPOINT = "GET /api/customers/{key}"


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


def _agent_view(agent: AgentSettings) -> dict[str, str]:
    return {"id": agent.id, "name": agent.name, "role": agent.role}


def _set_cookie(
    request: web.Request,
    response: web.StreamResponse,
    names: tuple[str, str],
    value: str,
    ttl: float,
) -> None:
    """Set a cookie under its ``__Host-`` name (Secure) when the browser came over HTTPS, else
    under its plain name, and drop the other one."""
    secure = is_secure(request, request.app[SETTINGS].server)
    plain, prefixed = names
    response.set_cookie(
        prefixed if secure else plain,
        value,
        max_age=int(ttl),
        httponly=True,
        samesite="Strict",
        secure=secure,
        path="/",
    )
    _drop_cookie(response, plain if secure else prefixed)


def _drop_cookie(response: web.StreamResponse, name: str) -> None:
    # browsers ignore a __Host- cookie (even an expired one) without Secure
    response.del_cookie(
        name, path="/", secure=name.startswith("__Host-"), httponly=True, samesite="Strict"
    )


async def login(request: web.Request) -> web.StreamResponse:
    body = await read_json(request)
    try:
        credentials = LoginRequest.model_validate(body)
    except ValidationError as exc:
        return _error(400, "bad_request", exc.errors(include_url=False)[0]["msg"])
    server = request.app[SETTINGS].server
    auth = request.app[AUTH]
    device = request.cookies.get(SECURE_DEVICE_COOKIE) or request.cookies.get(DEVICE_COOKIE)
    try:
        agent = await auth.check_password(
            credentials.username,
            credentials.password,
            client_address(request, server.trusted_proxies),
            device,
        )
    except TooManyAttempts as exc:
        response = _error(429, "too_many_attempts", f"{exc}; try again later")
        response.headers["Retry-After"] = retry_after_header(exc.retry_after)
        return response
    except AuthError as exc:
        return _error(401, "invalid_credentials", str(exc))
    sessions = request.app[SESSIONS]
    token = await sessions.create(agent, server.session_ttl)
    response = web.json_response({"token": token, "agent": _agent_view(agent)})
    _set_cookie(
        request, response, (SESSION_COOKIE, SECURE_SESSION_COOKIE), token, server.session_ttl
    )
    _set_cookie(
        request,
        response,
        (DEVICE_COOKIE, SECURE_DEVICE_COOKIE),
        auth.device_token(agent.id),
        DEVICE_TTL,
    )
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    """End the session (its open agent sockets close at once); fine without one."""
    token = request_token(request)
    if token:
        await request.app[SESSIONS].end(token, Ended.LOGGED_OUT)
    response = web.json_response({"status": "logged_out"})
    for name in (SESSION_COOKIE, SECURE_SESSION_COOKIE):
        _drop_cookie(response, name)
    return response


class RevokeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agent: str | None = Field(None, min_length=1, max_length=64)


@requires(Action.REVOKE_SESSIONS)
async def revoke_sessions(request: web.Request, principal: Principal) -> web.StreamResponse:
    """Log an agent out everywhere (their own sessions, or anyone's for an admin)."""
    try:
        body = RevokeRequest.model_validate(await read_json(request))
    except ValidationError as exc:
        return _error(400, "bad_request", exc.errors(include_url=False)[0]["msg"])
    target = body.agent or principal.id
    ensure(principal.role, Action.REVOKE_SESSIONS, related=target == principal.id)
    if target not in {agent.id for agent in request.app[SETTINGS].agents}:
        return _error(404, "not_found", f"no agent {target!r} is configured")
    revoked = await request.app[SESSIONS].end_all(target, Ended.REVOKED)
    await request.app[STORE].audit(
        "sessions.revoked", agent=principal.id, data={"target": target, "sessions": revoked}
    )
    return web.json_response({"agent": target, "revoked": revoked})


@requires(None)
async def me(request: web.Request, principal: Principal) -> web.StreamResponse:
    return web.json_response({"agent": _agent_view(principal.agent)})


@requires(Action.READ_RULES)
async def rules_status(request: web.Request, principal: Principal) -> web.StreamResponse:
    """The running rules revision and, if the file on disk was rejected, why."""
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


@requires(Action.READ_RULES)
async def rules_revision(request: web.Request, principal: Principal) -> web.StreamResponse:
    """An accepted rules file by its SHA-256 (conversations record the one that routed them)."""
    revision = await request.app[STORE].rules_revision(request.match_info["digest"])
    if revision is None:
        return _error(404, "not_found", "no rules revision with this SHA-256")
    return web.json_response(msgspec.to_builtins(revision))


async def _related_customer(request: web.Request, principal: Principal, customer_id: str) -> bool:
    """Whether the customer has a conversation the agent holds, is offered, or that waits in
    one of the queues the agent serves (all queues when the agent lists none). Dispatch's live
    state decides, not the stored queue column; on a standby (several processes), which has
    none, the stored conversations decide (assignee, or queued in a queue the agent serves)."""
    if not request.app[ROLE].owner:
        return await _related_stored(request, principal, customer_id)
    dispatch = request.app[DISPATCH]
    offered = {conversation_id for conversation_id, _ in dispatch.offers_for(principal.id)}
    served = set(principal.agent.queues or (q.name for q in request.app[SETTINGS].queues))
    return any(
        dispatch.owner(conversation_id) == principal.id
        or conversation_id in offered
        or dispatch.waiting_queue(conversation_id) in served
        for conversation_id in await request.app[CUSTOMERS].open_conversations(customer_id)
    )


async def _related_stored(request: web.Request, principal: Principal, customer_id: str) -> bool:
    served = set(principal.agent.queues or (q.name for q in request.app[SETTINGS].queues))
    store = request.app[STORE]
    for conversation_id in await request.app[CUSTOMERS].open_conversations(customer_id):
        conversation = await store.conversation(conversation_id)
        if conversation.assignee == principal.id or (
            conversation.status == QUEUED and conversation.queue in served
        ):
            return True
    return False


@requires(Action.READ_CUSTOMER)
async def customer(request: web.Request, principal: Principal) -> web.StreamResponse:
    """A customer's context by id, customer number, email address or phone number; every view
    (and every refusal) is audited."""
    key = request.match_info["key"]
    customers = request.app[CUSTOMERS]
    store = request.app[STORE]
    customer_id = await customers.find(key)
    if needs_relation(principal.role, Action.READ_CUSTOMER) and (
        customer_id is None or not await _related_customer(request, principal, customer_id)
    ):
        # the same answer whether or not the customer exists: no probing for who is a customer
        await store.audit(
            "customer.view_refused",
            agent=principal.id,
            data={"customer_id": customer_id, "key": key[:320], "endpoint": CUSTOMER_ENDPOINT},
        )
        return _error(
            403,
            "forbidden",
            "agents may read the customers of conversations they hold, are offered, "
            "or that wait in their queues",
        )
    if customer_id is None:
        return _error(404, "not_found", "no customer matches")
    context = await customers.context(customer_id)
    await store.audit(
        "customer.viewed",
        agent=principal.id,
        data={"customer_id": customer_id, "endpoint": CUSTOMER_ENDPOINT},
    )
    return web.json_response(context)


BodyT = TypeVar("BodyT", bound=BaseModel)


class MergeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: str = Field(min_length=1, max_length=320)
    target: str = Field(min_length=1, max_length=320)


class UnmergeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    merge_id: int


def _body(model: type[BodyT], data: Any) -> BodyT | web.Response:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        return _error(400, "bad_request", exc.errors(include_url=False)[0]["msg"])


@requires(Action.MERGE_CUSTOMERS)
async def merge_customers(request: web.Request, principal: Principal) -> web.StreamResponse:
    body = _body(MergeRequest, await read_json(request))
    if isinstance(body, web.Response):
        return body
    customers = request.app[CUSTOMERS]
    ids = [await customers.find(key) for key in (body.source, body.target)]
    if ids[0] is None or ids[1] is None:
        return _error(404, "not_found", "source or target matches no customer")
    try:
        merge_id = await customers.merge(ids[0], ids[1], actor=principal.id)
    except (NotFound, InvalidState) as exc:
        return _error(409, "conflict", str(exc))
    return web.json_response({"merge_id": merge_id, "source": ids[0], "target": ids[1]})


@requires(Action.MERGE_CUSTOMERS)
async def unmerge_customers(request: web.Request, principal: Principal) -> web.StreamResponse:
    body = _body(UnmergeRequest, await read_json(request))
    if isinstance(body, web.Response):
        return body
    try:
        result = await request.app[CUSTOMERS].unmerge(body.merge_id, actor=principal.id)
    except NotFound as exc:
        return _error(404, "not_found", str(exc))
    except InvalidState as exc:
        return _error(409, "conflict", str(exc))
    return web.json_response(result)


# shown in the console as pictures; anything else (SVG included) only ever downloads
_INLINE_TYPES = {"image/png", "image/jpeg", "image/gif"}


@requires(Action.READ_ATTACHMENT)
async def attachment(request: web.Request, principal: Principal) -> web.StreamResponse:
    """A message's file for the agent working on its conversation (or a supervisor)."""
    found = await request.app[STORE].attachment(request.match_info["id"][:64])
    if found is None:
        return _error(404, "not_found", "no such attachment")
    if needs_relation(principal.role, Action.READ_ATTACHMENT) and found.assignee != principal.id:
        return _error(403, "forbidden", "this conversation is not assigned to you")
    try:
        data = await request.app[BLOBS].get(found.blob_ref)
    except (FileNotFoundError, ValueError):
        return _error(404, "not_found", "the file is gone from the blob store")
    kind = found.content_type.lower()
    inline = kind in _INLINE_TYPES
    filename = "".join(ch for ch in found.name if ch.isalnum() or ch in "._- ")[:100]
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


@requires(None)
async def upload(request: web.Request, principal: Principal) -> web.StreamResponse:
    """Store a file an agent will send with a reply; answers a token for ``reply.attachments``.

    The body is the file itself; ``Content-Type`` is its type and ``X-Filename`` its name
    (percent-encoded), both metadata only."""
    limit = uploads.MAX_UPLOAD_BYTES
    if (request.content_length or 0) > limit:
        return _error(413, "too_large", f"files are limited to {limit // (1024 * 1024)} MiB")
    # to its end: one read returns only what has arrived, and a large file would be cut short
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(256 * 1024):
        size += len(chunk)
        if size > limit:
            return _error(413, "too_large", f"files are limited to {limit // (1024 * 1024)} MiB")
        chunks.append(chunk)
    data = b"".join(chunks)
    if not data:
        return _error(400, "bad_request", "the file is empty")
    stored = await request.app[BLOBS].put(
        data,
        name=uploads.filename(unquote(request.headers.get("X-Filename", ""))),
        content_type=uploads.content_type(request.headers.get("Content-Type")),
    )
    now = request.app[CONSOLE].clock()
    token = uploads.sign(request.app[UPLOAD_SECRET], stored, principal.id, now + uploads.TTL)
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


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/login", login)
    app.router.add_post("/api/logout", logout)
    app.router.add_post("/api/sessions/revoke", revoke_sessions)
    app.router.add_get("/api/me", me)
    app.router.add_get("/api/version", version)
    app.router.add_get("/api/attachments/{id}", attachment)
    app.router.add_post("/api/uploads", upload)
    app.router.add_get("/api/rules", rules_status)
    app.router.add_get("/api/customers/{key}", customer)
    app.router.add_post("/api/customers/merge", merge_customers)
    app.router.add_post("/api/customers/unmerge", unmerge_customers)
    app.router.add_get("/api/rules/revisions/{digest}", rules_revision)
    reports_api.add_routes(app)
    privacy_api.add_routes(app)
