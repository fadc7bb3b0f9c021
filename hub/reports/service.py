"""Reports and exports over a store: the glue the API and the CLI share."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from hub.reports import csvout, figures, queries
from hub.reports.params import ExportRequest, Format, ReportRequest
from hub.settings import HubSettings
from hub.store.store import Store

NO_RATINGS = "the hub collects no customer ratings yet: satisfaction stays empty"


def queue_slas(settings: HubSettings) -> dict[str, float | None]:
    return {queue.name: queue.sla for queue in settings.queues}


async def report_rows(
    store: Store, request: ReportRequest, settings: HubSettings
) -> list[figures.Row]:
    async with store.read() as connection:
        found, info = await queries.report_events(connection, request.period)
    return figures.compute(
        found,
        info,
        request.period,
        request.by,
        now=store.clock(),
        queue_sla=queue_slas(settings),
    )


def report_document(request: ReportRequest, rows: list[figures.Row]) -> dict[str, Any]:
    """The JSON answer: the request echoed, one object per row, and what stays empty why."""
    return {
        "by": str(request.by),
        "from": request.period.first.isoformat(),
        "to": request.period.last.isoformat(),
        "tz": request.period.timezone,
        "rows": [
            {
                **{k: v for k, v in row.figures().items() if k != "group"},
                **({str(request.by): row.group} if request.by is not figures.GroupBy.DAY else {}),
            }
            for row in rows
        ],
        "notes": {"satisfaction": NO_RATINGS},
    }


def report_csv(request: ReportRequest, rows: list[figures.Row]) -> bytes:
    header, cells = figures.table(rows, request.by)
    return csvout.render(header, cells, request.format.dialect)


async def export_chunks(
    store: Store, request: ExportRequest, customer_id: str | None
) -> AsyncIterator[bytes]:
    """The conversations export as UTF-8 pieces (CSV with BOM, or a JSON array of objects)."""
    header = queries.MESSAGE_COLUMNS if request.messages else queries.CONVERSATION_COLUMNS
    async with store.read() as connection:
        pages = queries.conversation_pages(connection, request, customer_id)
        if request.format is Format.JSON:
            yield b"["
            first = True
            async for page in pages:
                for row in page:
                    text = json.dumps(dict(zip(header, row, strict=True)), ensure_ascii=False)
                    yield (text if first else "," + text).encode()
                    first = False
            yield b"]\n"
            return
        dialect = request.format.dialect
        yield "".join(csvout.lines(header, [], dialect)).encode()
        async for page in pages:
            pieces = csvout.lines(header, page, dialect)
            next(pieces)  # the header again
            yield "".join(pieces).encode()
