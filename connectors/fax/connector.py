"""Fax: a gateway's webhooks (or mail) in, the agent's reply rendered to PDF and faxed out.

Every received fax takes one path whatever the gateway. First it is *kept*: its document goes
to the blob store and a pending record to the connector's durable state, and only then is the
gateway answered, so a webhook never waits for the heavy work. Then, in a worker process, the
document is read (pages, a PNG preview per page, the text layer or OCR), within the document's
pixel and time budgets, and the envelope (channel ``fax``, the sender's number as a ``fax``
identity, the recognized text as ``text``) goes to the hub; the pending record is removed after
that. Pending records left by a stop or a crash are taken up again at start. See docs/fax.md.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Sequence
from functools import partial
from typing import Any

import msgspec
from aiohttp import web

from connectors.base import (
    Capabilities,
    Connector,
    ConnectorContext,
    Route,
    SendError,
    attachment_bytes,
)
from connectors.fax import documents, ocr, parse, render, worker
from connectors.fax.client import Gateway, Hooks
from connectors.fax.client_email import MailGateway
from connectors.fax.client_sinch import SinchGateway
from connectors.fax.client_telnyx import TelnyxGateway
from connectors.fax.parse import IncomingFax, OutgoingFax, Pending
from connectors.fax.pool import DocumentPool
from connectors.fax.settings import FaxSettings
from connectors.shared import media_route
from connectors.shared.single_flight import SingleFlight
from hub.envelope import Attachment, Delivery, Envelope, Outbound

RECENT = 4096  # stored faxes remembered, so a webhook retry costs no OCR
PENDING = "pending:"  # state keys of faxes kept (the gateway answered) but not yet stored
STALE = 3600.0  # a pending fax this old is taken up by any process: its own may have died
SWEEP = 300.0  # how often to look for such faxes
MARGIN = 30.0  # past the document's time budget, the worker process is killed


class FaxConnector(Connector):
    """One fax line behind one gateway."""

    channel = "fax"
    settings_model = FaxSettings
    capabilities = Capabilities(attachments=True, delivery_receipts=True, recipient_kinds=("fax",))
    settings: FaxSettings

    def __init__(self, name: str, settings: FaxSettings) -> None:
        super().__init__(name, settings)
        self._ctx: ConnectorContext | None = None
        self._stopped = False
        self._documents = DocumentPool(settings.ocr.workers)
        self._ocr_problem: str | None = None
        # being kept (running), and stored lately (remembered)
        self._flights: SingleFlight[Pending] = SingleFlight(RECENT)
        self._pending: dict[str, asyncio.Task[None]] = {}  # kept, being read and stored
        self._slots: asyncio.Semaphore | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.gateway: Gateway = self._gateway()

    def _gateway(self) -> Gateway:
        settings = self.settings
        if settings.gateway == "sinch":
            assert settings.sinch is not None
            return SinchGateway(settings.sinch, settings.max_document_bytes)
        if settings.gateway == "telnyx":
            assert settings.telnyx is not None
            return TelnyxGateway(settings.telnyx, settings.max_document_bytes)
        assert settings.email is not None
        return MailGateway(settings.email, partial(self._documents.run, limit=120.0))

    # -- lifecycle -------------------------------------------------------------------------

    def routes(self) -> Sequence[Route]:
        return (*self.gateway.routes(), Route("GET", media_route.PATH, self._serve_media))

    async def start(self, ctx: ConnectorContext) -> None:
        self._ctx = ctx
        self._stopped = False
        self._documents.start()
        self._slots = asyncio.Semaphore(max(1, self.settings.ocr.workers))
        if self.settings.ocr.enabled:
            self._ocr_problem = await asyncio.to_thread(ocr.problem, self.settings.ocr.languages)
            if self._ocr_problem:
                ctx.logger.warning("fax OCR is off: %s", self._ocr_problem)
        base = (self.settings.public_url or ctx.public_url).rstrip("/")
        await self._resume(older_than=None)
        self._sweeper = asyncio.create_task(self._sweep(), name=f"fax-{self.name}-sweep")
        await self.gateway.start(
            Hooks(
                ctx=ctx,
                receive=self.receive,
                report=partial(ctx.sink.delivery_update, self.name),
                public_base=f"{base}/channels/{self.name}",
                media_url=self._media_url,
                already=self._already,
            )
        )

    async def stop(self) -> None:
        self._stopped = True
        await self.gateway.stop()
        # faxes being read stay pending in the state and are read again at the next start
        tasks = [task for task in (self._sweeper, *self._pending.values()) if task is not None]
        self._sweeper = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._documents.close()

    async def idle(self) -> None:
        """Wait until every fax kept so far is read and stored (tests; each keeps retrying
        while the hub cannot store it)."""
        while self._flights.waiting() or self._pending:
            waiting: list[asyncio.Future[Any]] = [*self._flights.waiting()]
            waiting.extend(self._pending.values())
            await asyncio.gather(*waiting, return_exceptions=True)

    def health(self) -> str | None:
        problems = [p for p in (self.gateway.health(), self._ocr_problem) if p]
        if self._ocr_problem:
            problems[-1] = f"OCR: {self._ocr_problem}; faxes arrive without text"
        return "; ".join(problems) or None

    # -- inbound ---------------------------------------------------------------------------

    def _key(self, fax_id: str) -> str:
        return f"fax:{self.gateway.name}:{fax_id}"

    def _already(self, fax_id: str) -> bool:
        key = self._key(fax_id)
        flights = self._flights
        return flights.remembered(key) or key in self._pending or flights.running(key)

    async def receive(self, fax: IncomingFax) -> None:
        """Keep one received fax durably and read it after the gateway is answered; raises
        only if it could not be kept (the gateway then answers so that the provider retries).
        A retry or a concurrent copy of a fax kept or stored already costs nothing."""
        key = self._key(fax.fax_id)
        ctx = self._ctx
        assert ctx is not None
        if self._flights.remembered(key) or key in self._pending:
            await ctx.sink.redelivered(self.channel, self.name, key)
            return
        # the same fax, concurrently: answered when the first is kept; remembered only once
        # it is stored (_finish)
        pending, first = await self._flights.run(key, lambda: self._keep(key, fax), remember=False)
        if not first:
            await ctx.sink.redelivered(self.channel, self.name, key)
            return
        self._schedule(key, pending)

    async def _keep(self, key: str, fax: IncomingFax) -> Pending:
        """The document in the blob store and the fax's record in the durable state: from here
        on it survives a crash (both writes are durable before they return)."""
        ctx = self._ctx
        assert ctx is not None
        document = None
        if fax.data is not None:
            kind = documents.sniff(fax.data)
            document = await ctx.blobs.put(
                fax.data,
                name=f"fax.{kind or 'bin'}",
                content_type={"pdf": "application/pdf", "tiff": "image/tiff"}.get(
                    kind or "", "application/octet-stream"
                ),
            )
        pending = parse.pending(fax, document, ctx.clock())
        await ctx.state.put(PENDING + key, msgspec.json.encode(pending).decode())
        return pending

    def _schedule(self, key: str, pending: Pending) -> None:
        if key in self._pending or self._flights.remembered(key):
            return
        task = asyncio.create_task(self._finish(key, pending), name=f"fax-{key}")
        self._pending[key] = task

        def done(finished: asyncio.Task[None]) -> None:
            if self._pending.get(key) is finished:
                del self._pending[key]

        task.add_done_callback(done)

    async def _finish(self, key: str, pending: Pending) -> None:
        """Read the kept fax, hand it to the hub (retrying while the hub cannot store it),
        then drop its pending record."""
        ctx = self._ctx
        assert ctx is not None and self._slots is not None
        async with self._slots:  # one document per worker process at a time
            envelope = await self._read(key, pending)
        delay = 5.0
        while True:
            try:
                await ctx.sink.ingest(envelope)
                break
            except Exception:
                if self._stopped:  # the pending record is taken up at the next start
                    return
                ctx.logger.exception("fax %s not stored yet; trying again in %.0f s", key, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 300.0)
        self._flights.remember(key)
        try:
            await ctx.state.delete(PENDING + key)
        except Exception:  # stored all the same: a later resume finds it a duplicate
            ctx.logger.exception("fax %s stored, but its pending record stays", key)

    async def _resume(self, *, older_than: float | None) -> None:
        """Take up pending faxes (all of them at start; later only those old enough that the
        process which kept them has surely died)."""
        ctx = self._ctx
        assert ctx is not None
        now = ctx.clock()
        for state_key in await ctx.state.keys(PENDING):
            key = state_key.removeprefix(PENDING)
            if key in self._pending or self._flights.running(key):
                continue
            if self._flights.remembered(key):  # stored; only removing its record had failed
                await ctx.state.delete(state_key)
                continue
            value = await ctx.state.get(state_key)
            if value is None:
                continue
            try:
                pending = msgspec.json.decode(value, type=Pending)
            except (msgspec.DecodeError, RecursionError):
                ctx.logger.error("pending fax record %s is unreadable; left as it is", state_key)
                continue
            if older_than is None or pending.received_at < now - older_than:
                self._schedule(key, pending)

    async def _sweep(self) -> None:
        ctx = self._ctx
        assert ctx is not None
        while True:
            await asyncio.sleep(SWEEP)
            try:
                await self._resume(older_than=STALE)
            except Exception:
                ctx.logger.exception("looking for pending faxes failed; trying again later")

    def _job(self) -> worker.Job:
        settings = self.settings
        languages = (
            settings.ocr.languages if settings.ocr.enabled and not self._ocr_problem else None
        )
        return worker.Job(
            documents.Limits(
                settings.max_document_bytes,
                settings.max_pages,
                settings.max_page_pixels,
                settings.max_document_pixels,
            ),
            settings.preview_width,
            languages,
            settings.ocr.timeout,
            settings.document_seconds,
        )

    async def _examine(self, data: bytes) -> worker.Examined:
        job = self._job()
        # the worker stops beginning pages at its time budget; this kills one stuck past it
        # (a hostile PDF, a page that decodes for minutes)
        return await self._documents.run(
            partial(worker.examine, data, job), limit=job.seconds + MARGIN
        )

    async def _read(self, key: str, fax: Pending) -> Envelope:
        """The envelope of a kept fax: its document read, its previews stored."""
        ctx = self._ctx
        assert ctx is not None
        problems: list[str] = []
        examined: worker.Examined | None = None
        files: list[Attachment] = []
        if fax.document is not None:
            files.append(fax.document)
            try:
                data = await ctx.blobs.get(fax.document.blob_ref)
                examined = await self._examine(data)
            except (FileNotFoundError, ValueError) as exc:
                if isinstance(exc, documents.BadDocument):
                    problems.append(f"the document could not be read: {exc}")
                else:
                    problems.append("the document is gone from the blob store")
            except TimeoutError:
                problems.append("reading the document took too long; it is attached unread")
        for page in examined.pages if examined else ():
            if page.preview is not None:
                stored = await ctx.blobs.put(
                    page.preview, name=f"page-{page.number}.png", content_type="image/png"
                )
                files.append(msgspec.structs.replace(stored, inline=True))
        line = parse.Line(
            inbox=self.name,
            number=self.settings.number,
            gateway=self.gateway.name,
            ocr_enabled=self.settings.ocr.enabled,
            ocr_problem=self._ocr_problem,
        )
        return parse.envelope(line, key, fax, examined, tuple(files), tuple(problems))

    # -- outbound media ----------------------------------------------------------------------

    def _media_url(self, ref: str, content_type: str) -> str:
        ctx = self._ctx
        assert ctx is not None
        base = self.settings.public_url or ctx.public_url
        return media_route.url(ctx, base, self.name, ref, content_type)

    async def _serve_media(self, request: web.Request) -> web.StreamResponse:
        assert self._ctx is not None
        return await media_route.serve(self._ctx, request)

    # -- outbound --------------------------------------------------------------------------

    async def send(self, outbound: Outbound) -> Delivery:
        ctx = self._ctx
        if ctx is None:
            raise SendError("the fax connector is not started", code="not_started")
        if outbound.recipient.kind not in ("fax", "phone"):
            raise SendError(
                f"fax cannot reach a {outbound.recipient.kind} address",
                code="unsupported_recipient",
                retryable=False,
            )
        enclosures = [
            render.Enclosure(item.name, item.content_type, await attachment_bytes(ctx.blobs, item))
            for item in outbound.attachments
        ]
        letter = self.settings.letter
        job = partial(
            render.render,
            outbound.text,
            render.Letter(
                letter.company,
                letter.header_lines,
                letter.cover_page,
                letter.font,
                self.settings.number,
            ),
            to_number=outbound.recipient.address,
            subject=outbound.subject,
            enclosures=tuple(enclosures),
            now=datetime.datetime.fromtimestamp(outbound.created_at or ctx.clock(), datetime.UTC),
            limits=self._job().limits,
        )
        try:
            rendered = await self._documents.run(job, limit=120.0)
        except render.CannotFax as exc:
            raise SendError(str(exc), code="cannot_fax", retryable=False) from None
        stored = await ctx.blobs.put(rendered.pdf, name="fax.pdf", content_type="application/pdf")
        return await self.gateway.send(
            OutgoingFax(
                key=outbound.idempotency_key,
                to_number=outbound.recipient.address,
                from_number=self.settings.number,
                pdf=rendered.pdf,
                pages=rendered.pages,
                ref=stored.blob_ref,
                subject=outbound.subject,
                attempt=outbound.attempt,
                created_at=outbound.created_at,
            )
        )
