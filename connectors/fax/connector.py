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
import concurrent.futures
import datetime
import multiprocessing
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from connectors import media_links
from connectors.base import (
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
PENDING = "pending:"  # state keys of faxes kept (the gateway answered) but not yet stored
STALE = 3600.0  # a pending fax this old is taken up by any process: its own may have died
SWEEP = 300.0  # how often to look for such faxes
MARGIN = 30.0  # past the document's time budget, the worker process is killed
T = TypeVar("T")


class Pending(msgspec.Struct, frozen=True, kw_only=True):
    """A received fax kept durably before the gateway was answered, not yet read and stored."""

    fax_id: str
    from_number: str
    to_number: str
    document: Attachment | None
    pages_declared: int | None = None
    partial: bool = False
    problem: str | None = None
    metadata: dict[str, Any] = {}
    received_at: float


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
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._ocr_problem: str | None = None
        self._inflight: dict[str, asyncio.Future[None]] = {}  # being kept
        self._pending: dict[str, asyncio.Task[None]] = {}  # kept, being read and stored
        self._recent: OrderedDict[str, None] = OrderedDict()  # stored lately
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
        return MailGateway(settings.email, partial(self._in_pool, limit=120.0))

    # -- lifecycle -------------------------------------------------------------------------

    def routes(self) -> Sequence[Route]:
        return (*self.gateway.routes(), Route("GET", "/media/{token}", self._serve_media))

    async def start(self, ctx: ConnectorContext) -> None:
        self._ctx = ctx
        self._stopped = False
        self._pool = self._new_pool()
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
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    async def idle(self) -> None:
        """Wait until every fax kept so far is read and stored (tests; each keeps retrying
        while the hub cannot store it)."""
        while self._inflight or self._pending:
            waiting: list[asyncio.Future[Any]] = [*self._inflight.values()]
            waiting.extend(self._pending.values())
            await asyncio.gather(*waiting, return_exceptions=True)

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
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
            # that arrives as the job finishes, and stop() then waited forever for this task
            async with asyncio.timeout(limit):
                return await future
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
        key = self._key(fax_id)
        return key in self._recent or key in self._pending or key in self._inflight

    async def receive(self, fax: IncomingFax) -> None:
        """Keep one received fax durably and read it after the gateway is answered; raises
        only if it could not be kept (the gateway then answers so that the provider retries).
        A retry or a concurrent copy of a fax kept or stored already costs nothing."""
        key = self._key(fax.fax_id)
        ctx = self._ctx
        assert ctx is not None
        if key in self._recent or key in self._pending:
            await ctx.sink.redelivered(self.channel, self.name, key)
            return
        running = self._inflight.get(key)
        if running is not None:  # the same fax, concurrently: answer when the first is kept
            await asyncio.shield(running)
            await ctx.sink.redelivered(self.channel, self.name, key)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            pending = await self._keep(key, fax)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it themselves
            raise
        finally:
            self._inflight.pop(key, None)
        future.set_result(None)
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
        pending = Pending(
            fax_id=fax.fax_id,
            from_number=fax.from_number,
            to_number=fax.to_number,
            document=document,
            pages_declared=fax.pages_declared,
            partial=fax.partial,
            problem=fax.problem,
            metadata=fax.metadata,
            received_at=ctx.clock(),
        )
        await ctx.state.put(PENDING + key, msgspec.json.encode(pending).decode())
        return pending

    def _schedule(self, key: str, pending: Pending) -> None:
        if key in self._pending or key in self._recent:
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
        self._recent[key] = None
        while len(self._recent) > RECENT:
            self._recent.popitem(last=False)
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
            if key in self._pending or key in self._inflight:
                continue
            if key in self._recent:  # stored; only removing its record had failed
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
        return await self._in_pool(partial(worker.examine, data, job), limit=job.seconds + MARGIN)

    async def _read(self, key: str, fax: Pending) -> Envelope:
        """The envelope of a kept fax: its document read, its previews stored."""
        ctx = self._ctx
        assert ctx is not None
        problems = [fax.problem] if fax.problem else []
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
            if examined.stopped:
                metadata["pages_read"] = len(examined.pages)
                problems.append(examined.stopped)
            elif examined.page_count > len(examined.pages):
                problems.append(
                    f"only the first {len(examined.pages)} of {examined.page_count} pages were read"
                )
        metadata["ocr"] = self._ocr_state(examined)
        if problems:
            metadata["problems"] = problems
        pages = examined.page_count if examined else fax.pages_declared
        count = f" ({pages} page{'s' if pages != 1 else ''})" if pages else ""
        subject = f"Fax from {sender.address}{count}"
        return Envelope(
            channel="fax",
            inbox=self.name,
            direction=Direction.INBOUND,
            idempotency_key=key,
            provider_id=fax.fax_id,
            sender=sender,
            recipients=(Identity(kind="fax", address=fax.to_number),) if fax.to_number else (),
            received_at=fax.received_at,
            subject=subject,
            text=examined.text[:100_000] if examined else "",
            attachments=tuple(files),
            sender_verified=sender.address != "anonymous",
            thread=ThreadHints(session=f"{sender.address}|{self.settings.number}"),
            metadata=metadata,
        )

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
