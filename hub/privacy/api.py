"""Admin-only endpoints for data-protection requests (docs/api.md, docs/privacy.md)."""

from __future__ import annotations

import asyncio
import tempfile

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hub.errors import InvalidState, NotFound
from hub.guards import error, read_json, requires
from hub.keys import BLOBS, CUSTOMERS, SETTINGS, STORE
from hub.permissions import Action
from hub.privacy import erase, export, retention
from hub.sessions import Principal

CHUNK = 256 * 1024


@requires(Action.CUSTOMER_PRIVACY)
async def export_customer(request: web.Request, principal: Principal) -> web.StreamResponse:
    """Everything held about a person as a zip (``customer.json`` and their files)."""
    key = request.match_info["key"][:320]
    customer_id = await request.app[CUSTOMERS].find(key)
    if customer_id is None:
        return error(404, "not_found", "no customer matches")
    try:
        document, files = await export.collect(request.app[STORE], customer_id, actor=principal.id)
    except NotFound as exc:
        return error(404, "not_found", str(exc))
    # spooled to a temporary file: a person with many faxes does not fill the memory
    with tempfile.TemporaryFile() as handle:
        await asyncio.to_thread(export.write_zip, document, files, request.app[BLOBS], handle)
        size = handle.tell()
        handle.seek(0)
        response = web.StreamResponse(
            headers={
                "Content-Type": "application/zip",
                "Content-Disposition": f'attachment; filename="customer-{customer_id}.zip"',
                "Content-Length": str(size),
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
            }
        )
        await response.prepare(request)
        while chunk := await asyncio.to_thread(handle.read, CHUNK):
            await response.write(chunk)
    await response.write_eof()
    return response


class EraseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer: str = Field(min_length=1, max_length=320, description="id, number, email, phone")
    confirm: str = Field(min_length=1, max_length=64, description="the customer's id, again")
    close_open: bool = False


@requires(Action.CUSTOMER_PRIVACY)
async def erase_customer(request: web.Request, principal: Principal) -> web.StreamResponse:
    """Erase a person for good; ``confirm`` must repeat the customer's id."""

    try:
        body = EraseRequest.model_validate(await read_json(request))
    except ValidationError as exc:
        return error(400, "bad_request", exc.errors(include_url=False)[0]["msg"])
    customer_id = await request.app[CUSTOMERS].find(body.customer)
    if customer_id is None:
        return error(404, "not_found", "no customer matches")
    if body.confirm != customer_id:
        return error(
            400,
            "not_confirmed",
            "confirm must be the id of the customer to erase (erasure cannot be undone)",
        )
    try:
        report = await erase.erase_customer(
            request.app[STORE],
            request.app[BLOBS],
            customer_id,
            actor=principal.id,
            close_open=body.close_open,
        )
    except NotFound as exc:
        return error(404, "not_found", str(exc))
    except InvalidState as exc:
        return error(409, "conflict", str(exc))
    return web.json_response({"erased": report.counts()})


@requires(Action.CUSTOMER_PRIVACY)
async def run_retention(request: web.Request, principal: Principal) -> web.StreamResponse:
    """Apply the retention policy now (``?dry_run=true``: only count what is due)."""
    policy = request.app[SETTINGS].retention
    store = request.app[STORE]
    dry_run = request.query.get("dry_run", "false").lower()
    if dry_run not in {"true", "false"}:
        return error(400, "bad_parameter", "dry_run must be true or false")
    if not policy.configured:
        return error(409, "conflict", "no retention policy is configured (retention: in hub.yaml)")
    if dry_run == "true":
        report = await retention.preview(store, policy, store.clock())
    else:
        report = await retention.apply_retention(store, request.app[BLOBS], policy, store.clock())
    return web.json_response({"retention": report.counts()})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/privacy/customers/{key}/export", export_customer)
    app.router.add_post("/api/privacy/customers/erase", erase_customer)
    app.router.add_post("/api/privacy/retention/run", run_retention)
