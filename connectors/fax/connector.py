"""Fax: a gateway's webhooks (or mail) in, the agent's reply rendered to PDF and faxed out.

Every received fax takes one path whatever the gateway: its document is read in a worker
process (pages, a PNG preview per page, the text layer or OCR with a timeout), the document and
previews go to the blob store, and the envelope (channel ``fax``, the sender's number as a
``fax`` identity, the recognized text as ``text``) to the hub, before the gateway is answered.
See docs/fax.md.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import multiprocessing
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import partial
from typing import TypeVar

import msgspec
from aiohttp import web

from connectors import media_links
from connectors.base import (
    Accepted,
    Capabilities,
    Connector,
    ConnectorContext,
    Route,
    SendError,
    attachment_bytes,
)
from connectors.fax import documents, ocr, render, worker
from connectors.fax.gateway import Gateway, Hooks, IncomingFax, OutgoingFax
from connectors.fax.mail import MailGateway
from connectors.fax.settings import FaxSettings
from connectors.fax.sinch import SinchGateway
from connectors.fax.telnyx import TelnyxGateway
from connectors.workers import die_with_parent
from hub.envelope import Attachment, Delivery, Direction, Envelope, Identity, Outbound, ThreadHints

MEDIA_LINK_TTL = 3600.0
RECENT = 4096  # stored faxes remembered, so a webhook retry costs no OCR
T = TypeVar("T")


class FaxConnector(Connector):
    """One fax line behind one gateway."""

    channel = "fax"
    settings_model = FaxSettings
    capabilities = Capabilities(attachments=True, delivery_receipts=True, recipient_kinds=("fax",))
    settings: FaxSettings

    def __init__(self, name: str, settings: FaxSettings) -> None:
        super().__init__(name, settings)
        self._ctx: ConnectorContext | None = None
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._ocr_problem: str | None = None
        self._inflight: dict[str, asyncio.Future[Accepted]] = {}
        self._recent: OrderedDict[str, Accepted] = OrderedDict()
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
        return MailGateway(settings.email, partial(self._in_pool, limit=120.0))

    # -- lifecycle -------------------------------------------------------------------------

    def routes(self) -> Sequence[Route]:
        return (*self.gateway.routes(), Route("GET", "/media/{token}", self._serve_media))

    async def start(self, ctx: ConnectorContext) -> None:
        self._ctx = ctx
        self._pool = self._new_pool()
        if self.settings.ocr.enabled:
            self._ocr_problem = await asyncio.to_thread(ocr.problem, self.settings.ocr.languages)
            if self._ocr_problem:
                ctx.logger.warning("fax OCR is off: %s", self._ocr_problem)
        base = (self.settings.public_url or ctx.public_url).rstrip("/")
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
        await self.gateway.stop()
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def health(self) -> str | None:
        problems = [p for p in (self.gateway.health(), self._ocr_problem) if p]
        if self._ocr_problem:
            problems[-1] = f"OCR: {self._ocr_problem}; faxes arrive without text"
        return "; ".join(problems) or None

    # -- the worker pool -------------------------------------------------------------------

    def _new_pool(self) -> concurrent.futures.ProcessPoolExecutor | None:
        if not self.settings.ocr.workers:
            return None
        # forkserver: a clean child, not a fork of a process with running threads; its workers
        # end with the hub even when it is killed (die_with_parent)
        return concurrent.futures.ProcessPoolExecutor(
            self.settings.ocr.workers,
            mp_context=multiprocessing.get_context("forkserver"),
            initializer=die_with_parent,
            initargs=(os.getpid(),),
        )

    async def _in_pool(self, job: Callable[[], T], *, limit: float) -> T:
        """Run ``job`` in a worker; on timeout the pool is replaced (its stuck process with it)."""
        loop = asyncio.get_running_loop()
        pool = self._pool
        future = loop.run_in_executor(pool, job) if pool is not None else asyncio.to_thread(job)
        try:
            return await asyncio.wait_for(future, limit)
        except TimeoutError:
            if pool is not None and pool is self._pool:
                self._pool = self._new_pool()
                for process in list(getattr(pool, "_processes", {}).values()):
                    process.kill()
                pool.shutdown(wait=False, cancel_futures=True)
            raise

    # -- inbound ---------------------------------------------------------------------------

    def _key(self, fax_id: str) -> str:
        return f"fax:{self.gateway.name}:{fax_id}"

    def _already(self, fax_id: str) -> bool:
        return self._key(fax_id) in self._recent

    async def receive(self, fax: IncomingFax) -> Accepted:
        """Read, store and hand over one received fax; raises only if the hub did not store it
        (the gateway then answers so that the provider retries)."""
        key = self._key(fax.fax_id)
        known = self._recent.get(key)
        if known is not None:
            return msgspec.structs.replace(known, duplicate=True)
        running = self._inflight.get(key)
        if running is not None:  # the same fax, concurrently: answer when the first is stored
            return await asyncio.shield(running)
        future: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            accepted = await self._store(key, fax)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it themselves
            raise
        finally:
            self._inflight.pop(key, None)
        future.set_result(accepted)
        self._recent[key] = accepted
        while len(self._recent) > RECENT:
            self._recent.popitem(last=False)
        return accepted

    def _job(self) -> worker.Job:
        settings = self.settings
        languages = (
            settings.ocr.languages if settings.ocr.enabled and not self._ocr_problem else None
        )
        return worker.Job(
            documents.Limits(
                settings.max_document_bytes, settings.max_pages, settings.max_page_pixels
            ),
            settings.preview_width,
            languages,
            settings.ocr.timeout,
        )

    async def _examine(self, data: bytes, pages: int | None) -> worker.Examined:
        job = self._job()
        # tesseract has its own per-page timeout; this bounds a worker stuck elsewhere (a
        # hostile PDF), generously enough for every page when the count is not known yet
        pages_read = min(max(pages or self.settings.max_pages, 1), self.settings.max_pages)
        budget = 30.0 + job.ocr_timeout * pages_read
        return await self._in_pool(partial(worker.examine, data, job), limit=budget)

    async def _store(self, key: str, fax: IncomingFax) -> Accepted:
        ctx = self._ctx
        assert ctx is not None
        problems = [fax.problem] if fax.problem else []
        examined: worker.Examined | None = None
        if fax.data is not None:
            try:
                examined = await self._examine(fax.data, fax.pages_declared)
            except documents.BadDocument as exc:
                problems.append(f"the document could not be read: {exc}")
            except TimeoutError:
                problems.append("reading the document took too long; it is attached unread")
        files: list[Attachment] = []
        if fax.data is not None:
            kind = documents.sniff(fax.data)
            files.append(
                await ctx.blobs.put(
                    fax.data,
                    name=f"fax.{kind or 'bin'}",
                    content_type={"pdf": "application/pdf", "tiff": "image/tiff"}.get(
                        kind or "", "application/octet-stream"
                    ),
                )
            )
        for page in examined.pages if examined else ():
            if page.preview is not None:
                stored = await ctx.blobs.put(
                    page.preview, name=f"page-{page.number}.png", content_type="image/png"
                )
                files.append(msgspec.structs.replace(stored, inline=True))
        sender = _number(fax.from_number)
        metadata: dict[str, object] = {**fax.metadata, "gateway": self.gateway.name}
        if fax.to_number:
            metadata["to"] = fax.to_number
        if fax.pages_declared is not None:
            metadata["pages_declared"] = fax.pages_declared
        if fax.partial:
            metadata["partial"] = True
            problems.append("the gateway reports the fax as incomplete (the call broke off)")
        if examined is not None:
            metadata["pages"] = examined.page_count
            metadata["text_sources"] = [page.source for page in examined.pages]
            failed = [p.number for p in examined.pages if p.problem]
            if failed:
                metadata["ocr_failed_pages"] = failed
                problems.append(f"text recognition failed on page(s) {', '.join(map(str, failed))}")
            unread = [p.number for p in examined.pages if p.source == "none" and p.preview]
            if unread and self._ocr_problem:
                problems.append(f"no text recognized: {self._ocr_problem}")
            if examined.page_count > len(examined.pages):
                problems.append(
                    f"only the first {len(examined.pages)} of {examined.page_count} pages were read"
                )
        metadata["ocr"] = self._ocr_state(examined)
        if problems:
            metadata["problems"] = problems
        pages = examined.page_count if examined else fax.pages_declared
        count = f" ({pages} page{'s' if pages != 1 else ''})" if pages else ""
        subject = f"Fax from {sender.address}{count}"
        envelope = Envelope(
            channel="fax",
            inbox=self.name,
            direction=Direction.INBOUND,
            idempotency_key=key,
            provider_id=fax.fax_id,
            sender=sender,
            recipients=(Identity(kind="fax", address=fax.to_number),) if fax.to_number else (),
            received_at=ctx.clock(),
            subject=subject,
            text=examined.text[:100_000] if examined else "",
            attachments=tuple(files),
            sender_verified=sender.address != "anonymous",
            thread=ThreadHints(session=f"{sender.address}|{self.settings.number}"),
            metadata=metadata,
        )
        return await ctx.sink.ingest(envelope)

    def _ocr_state(self, examined: worker.Examined | None) -> str:
        if not self.settings.ocr.enabled:
            return "off"
        if self._ocr_problem:
            return f"unavailable: {self._ocr_problem}"
        if examined is None:
            return "no document"
        if any(page.problem for page in examined.pages):
            return "partly failed"
        return "done"

    # -- outbound media ----------------------------------------------------------------------

    def _media_url(self, ref: str, content_type: str) -> str:
        ctx = self._ctx
        assert ctx is not None
        base = (self.settings.public_url or ctx.public_url).rstrip("/")
        token = media_links.sign(ctx.secret, ref, content_type, ctx.clock() + MEDIA_LINK_TTL)
        return f"{base}/channels/{self.name}/media/{token}"

    async def _serve_media(self, request: web.Request) -> web.StreamResponse:
        ctx = self._ctx
        assert ctx is not None
        try:
            link = media_links.verify(ctx.secret, request.match_info["token"], ctx.clock())
            data = await ctx.blobs.get(link.ref)
        except (media_links.BadLink, FileNotFoundError, ValueError):
            raise web.HTTPNotFound() from None
        return web.Response(
            body=data,
            content_type=link.content_type,
            headers={"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"},
        )

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
            rendered = await self._in_pool(job, limit=120.0)
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


def _number(value: str) -> Identity:
    """The sender as a ``fax`` identity (the hub normalizes it to E.164); ``anonymous`` when
    the caller withheld the number."""
    compact = "".join(ch for ch in value if ch.isdigit() or ch == "+")
    if len(compact.lstrip("+")) < 3:
        return Identity(kind="fax", address="anonymous")
    return Identity(kind="fax", address=compact[:20])
