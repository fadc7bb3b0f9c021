"""``GET /api/reports/{by}`` and ``GET /api/exports/conversations`` (docs/api.md, docs/reports.md).

Supervisors and admins only; a bad parameter answers 400 with what to fix. CSV answers are
attachments, UTF-8 with BOM, with formula triggers neutralised (``hub.reports.csvout``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from hub.guards import error, requires
from hub.keys import CUSTOMERS, SETTINGS, STORE
from hub.permissions import Action
from hub.reports import service
from hub.reports.params import BadParameter, Format, export_request, report_request
from hub.sessions import Principal


def _today(request: web.Request, timezone: str) -> datetime:
    from zoneinfo import ZoneInfo

    try:
        zone = ZoneInfo(timezone)
    except (ValueError, KeyError):
        zone = ZoneInfo("UTC")
    return datetime.fromtimestamp(request.app[STORE].clock(), UTC).astimezone(zone)


def _filename(stem: str, extension: str) -> str:
    return "".join(ch for ch in stem if ch.isalnum() or ch in "-_.") + extension


@requires(Action.READ_REPORTS)
async def report(request: web.Request, principal: Principal) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    params = dict(request.query)
    timezone = params.get("tz") or settings.timezone
    try:
        wanted = report_request(
            request.match_info["by"],
            params,
            today=_today(request, timezone).date(),
            default_timezone=settings.timezone,
        )
    except BadParameter as exc:
        return error(400, "bad_parameter", str(exc))
    rows = await service.report_rows(request.app[STORE], wanted, settings)
    if wanted.format is Format.JSON:
        return web.json_response(service.report_document(wanted, rows))
    name = _filename(f"report-{wanted.by}-{wanted.period.first}-{wanted.period.last}", ".csv")
    return web.Response(
        body=service.report_csv(wanted, rows),
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{name}"',
            "X-Content-Type-Options": "nosniff",
        },
    )


@requires(Action.EXPORT_CONVERSATIONS)
async def export_conversations(request: web.Request, principal: Principal) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    params = dict(request.query)
    timezone = params.get("tz") or settings.timezone
    try:
        wanted = export_request(
            params, today=_today(request, timezone).date(), default_timezone=settings.timezone
        )
    except BadParameter as exc:
        return error(400, "bad_parameter", str(exc))
    customer_id = None
    if wanted.customer is not None:
        customer_id = await request.app[CUSTOMERS].find(wanted.customer)
        if customer_id is None:
            return error(404, "not_found", "no customer matches the customer filter")
    store = request.app[STORE]
    # recorded before anything leaves: who exported what (the customer by id, not by address)
    await store.audit(
        "conversations.exported",
        agent=principal.id,
        data={
            "from": wanted.period.first.isoformat(),
            "to": wanted.period.last.isoformat(),
            "messages": wanted.messages,
            "customer_id": customer_id,
            **{
                name: getattr(wanted, name)
                for name in ("queue", "channel", "inbox", "status", "agent", "disposition")
                if getattr(wanted, name) is not None
            },
        },
    )
    json_answer = wanted.format is Format.JSON
    kind = "messages" if wanted.messages else "conversations"
    name = _filename(
        f"{kind}-{wanted.period.first}-{wanted.period.last}", ".json" if json_answer else ".csv"
    )
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/json; charset=utf-8"
            if json_answer
            else "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{name}"',
            "X-Content-Type-Options": "nosniff",
        }
    )
    await response.prepare(request)
    async for chunk in service.export_chunks(store, wanted, customer_id):
        await response.write(chunk)
    await response.write_eof()
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/reports/{by}", report)
    app.router.add_get("/api/exports/conversations", export_conversations)
