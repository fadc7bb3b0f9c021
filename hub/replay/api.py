"""``POST /api/rules/diff``: replay stored messages through a proposed rules file (admins).

The body is the rules file itself (YAML as ``text/yaml``, ``application/yaml`` or
``text/plain``); the query says against what (``against``: ``CURRENT``, the running rules, or
a stored revision's SHA-256), over which period (``since``, default ``7d``) and channels
(``channel``, repeatable). A file that ``rules check`` would refuse is a 400 listing each problem
with its line and column; otherwise the summary as JSON (``hub.replay.diff.Summary``).
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import msgspec
from aiohttp import web

from hub.errors import ConfigError
from hub.guards import error, requires
from hub.keys import DECIDER, RULES_WATCHER, SETTINGS, STORE
from hub.permissions import Action
from hub.replay import service
from hub.routing import ClosedQueueReplies, RulesDecider
from hub.sessions import Principal
from rules.compiler import RuleSet
from rules.loader import MAX_BYTES

YAML_TYPES = frozenset({"text/yaml", "application/yaml", "application/x-yaml", "text/plain"})
UPLOAD_NAME = "rules.yaml"  # what problems name as the file
MAX_EXAMPLES = 10
_PROBLEM = re.compile(r"^(?P<path>.*?):(?P<line>\d+):(?P<column>\d+): (?P<message>.*)$", re.S)
LOCK: web.AppKey[asyncio.Lock] = web.AppKey("rules_diff_lock", asyncio.Lock)


def problem(text: str) -> dict[str, Any]:
    """A ``path:line:col: message`` line as its parts (line and column None when it has none)."""
    found = _PROBLEM.match(text)
    if found is None:
        return {"line": None, "column": None, "message": text, "text": text}
    return {
        "line": int(found["line"]),
        "column": int(found["column"]),
        "message": found["message"],
        "text": text,
    }


def running_rules(app: web.Application) -> RuleSet:
    """The rules the hub routes with now (defaults only while hub.yaml names no file)."""
    watcher = app.get(RULES_WATCHER)
    if watcher is not None:
        return watcher.holder.current
    found = app.get(DECIDER)
    decider: object = found
    while isinstance(decider, ClosedQueueReplies):
        decider = decider.inner
    if isinstance(decider, RulesDecider):
        return decider.holder.current
    return service.no_rules(app[SETTINGS])


def _invalid(exc: ConfigError) -> web.Response:
    problems = [problem(text) for text in exc.problems]
    return web.json_response(
        {
            "error": "invalid_rules",
            "message": problems[0]["text"] if problems else "invalid rules",
            "problems": problems,
        },
        status=400,
    )


@requires(Action.DIFF_RULES)
async def diff_rules(request: web.Request, principal: Principal) -> web.StreamResponse:
    """The replay summary of the posted rules file against the running (or a stored) one."""
    if request.content_type not in YAML_TYPES:
        return error(415, "unsupported_media_type", "send the rules file as text/yaml")
    if (request.content_length or 0) > MAX_BYTES:
        return error(413, "too_large", f"a rules file has at most {MAX_BYTES} bytes")
    body = await request.content.read(MAX_BYTES + 1)
    if len(body) > MAX_BYTES:
        return error(413, "too_large", f"a rules file has at most {MAX_BYTES} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return error(400, "bad_encoding", "the rules file is not UTF-8")
    try:
        examples = int(request.query.get("examples", "3"))
    except ValueError:
        examples = -1
    if not 0 <= examples <= MAX_EXAMPLES:
        return error(400, "bad_parameter", f"examples must be 0 to {MAX_EXAMPLES}")
    settings = request.app[SETTINGS]
    store = request.app[STORE]
    try:
        proposed = await asyncio.to_thread(service.proposed_rules, text, UPLOAD_NAME, settings)
    except ConfigError as exc:
        return _invalid(exc)
    try:
        wanted = service.period(
            settings,
            time.time(),
            request.query.get("since", "7d")[:32],
            [name[:64] for name in request.query.getall("channel", [])][:20],
        )
        against = request.query.get("against", service.CURRENT)[:64]
        if against.upper() == service.CURRENT:
            current = running_rules(request.app)
        else:
            current = await service.stored_revision(store, against)
    except ConfigError as exc:
        message = "; ".join(text.removeprefix("--") for text in exc.problems)
        return error(400, "bad_parameter", message)
    lock = request.app[LOCK]
    if lock.locked():
        return error(409, "busy", "another rules replay is running; try again in a moment")
    async with lock:
        summary = await service.run_diff(
            store, settings, current, proposed, wanted, examples=examples
        )
    return web.Response(
        body=msgspec.json.encode(summary),
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def add_routes(app: web.Application) -> None:
    app[LOCK] = asyncio.Lock()
    app.router.add_post("/api/rules/diff", diff_rules)
