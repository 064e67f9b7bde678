"""An upload's body, streamed: the raw body or its multipart field `file`, decompressed
(gzip), capped in size as the bytes arrive, and landed a part at a time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from api import metrics
from api.upload.streams import (
    Gunzip,
    MultipartFile,
    SizeCap,
    SlowUpload,
    TooLarge,
    UnknownEncoding,
)
from lakehouse.ingest.landing import Landed, Landing
from lakehouse.settings import Settings

# A large upload's run is asked for when the rest of its body is due within this long: about
# the run's start-up, which then ends as the bytes do. Earlier, the run would only take cores
# from the upload and hold a run worker idle (a slow client's upload: up to a minute).
EARLY_RUN_LEAD_SECONDS = 0.5


@dataclass
class Arrival:
    """How much of the body, as sent, has arrived, and when the rest is due."""

    declared: int | None  # its Content-Length, if it has one
    received: int = 0
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def of(cls, request: Request) -> Arrival:
        declared = request.headers.get("content-length", "")
        return cls(int(declared) if declared.isdigit() else None)

    def due_within(self, seconds: float, now: float | None = None) -> bool:
        """Whether the rest should arrive within `seconds`, at the rate so far; never, for
        a body of unknown length (a chunked one): its end cannot be foreseen, and a run
        asked for too early holds a run worker idle while a slow client trickles on."""
        if self.declared is None:
            return False
        if self.received == 0:
            return True
        elapsed = (time.monotonic() if now is None else now) - self.started
        return elapsed * (self.declared - self.received) <= seconds * self.received


def body_limit(max_bytes: int) -> int:
    """The most bytes a body may take as sent: the CSV's limit, plus room for multipart
    headers and gzip's worst case (incompressible data grows by well under 1%)."""
    return max_bytes + max_bytes // 100 + 64 * 1024


async def body_chunks(
    request: Request,
    max_bytes: int,
    read_timeout: float,
    on_filename: Callable[[str], None] | None = None,
    arrival: Arrival | None = None,
) -> AsyncIterator[bytes]:
    """The CSV bytes, decompressed, from the multipart field `file` or the raw body (the
    bytes as sent are counted in `arrival`).

    Both stream: a multipart body is parsed as it arrives (never spooled). Both caps, on
    the body as sent and on the CSV it holds, apply as the bytes arrive, so a body without
    a Content-Length is stopped as soon as it passes them. A client that sends nothing
    for `read_timeout` seconds is stopped too (a slow peer would hold an upload slot).
    """
    content_type = request.headers.get("content-type", "")
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding not in ("", "identity", "gzip", "x-gzip"):
        raise UnknownEncoding(encoding)
    gzipped = encoding in ("gzip", "x-gzip")
    multipart = (
        MultipartFile(content_type) if content_type.startswith("multipart/form-data") else None
    )
    _refuse_declared_size(request, max_bytes, exact=plain_length(request) is not None)
    cap = SizeCap(max_bytes)
    gunzip: Gunzip | None = None
    arriving = _arriving(request, read_timeout, arrival or Arrival.of(request))
    async for chunk in _csv_bytes(arriving, multipart, body_limit(max_bytes)):
        if on_filename is not None and multipart is not None:
            on_filename(multipart.filename)  # its part headers came before these bytes
            on_filename = None
        named_gz = multipart is not None and multipart.filename.lower().endswith(".gz")
        if gunzip is None and (gzipped or named_gz):
            gunzip = Gunzip()
        for piece in gunzip.feed(chunk) if gunzip else (chunk,):
            yield cap.check(piece)
    if gunzip:
        gunzip.finish()


def plain_length(request: Request) -> int | None:
    """The CSV's length in bytes, when the request says it exactly: the Content-Length of a
    body neither gzip-encoded nor a multipart form (whose file may be a `.gz`), nor sent in
    chunks besides (whatever the HTTP parser would make of both); else None."""
    headers = request.headers
    declared = headers.get("content-length", "")
    encoding = headers.get("content-encoding", "").strip().lower()
    multipart = headers.get("content-type", "").startswith("multipart/form-data")
    exact = declared.isdigit() and encoding in ("", "identity") and not multipart
    if not exact or "transfer-encoding" in headers:
        return None
    return int(declared)


def _refuse_declared_size(request: Request, max_bytes: int, *, exact: bool) -> None:
    """413 before reading a byte when the declared length is already too much."""
    declared = request.headers.get("content-length", "")
    limit = max_bytes if exact else body_limit(max_bytes)
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(max_bytes)


async def _csv_bytes(
    arriving: AsyncIterator[bytes], multipart: MultipartFile | None, body_limit: int
) -> AsyncIterator[bytes]:
    """The raw body, or its multipart field's data; the body as sent is capped."""
    cap = SizeCap(body_limit)
    async for chunk in arriving:
        cap.check(chunk)
        for piece in multipart.feed(chunk) if multipart else (chunk,):
            yield piece
    if multipart:
        multipart.finish()


async def _arriving(
    request: Request, read_timeout: float, arrival: Arrival
) -> AsyncIterator[bytes]:
    """The body's chunks as they arrive, each within `read_timeout` of the last."""
    chunks = request.stream().__aiter__()
    while True:
        try:
            async with asyncio.timeout(read_timeout):  # no task per chunk, as wait_for made
                chunk = await anext(chunks)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise SlowUpload(read_timeout) from None
        arrival.received += len(chunk)
        yield chunk


async def land(
    request: Request,
    landing: Landing,
    settings: Settings,
    count_bytes: Callable[[int], None],
    on_filename: Callable[[str], None] | None = None,
) -> Landed:
    """Stream the body into the store: up to `ingest_parts_in_flight` parts are uploaded
    and taken in (hashed, counted, the first one's columns checked: in order) while the next
    ones arrive, so neither waits for the other and memory stays at a few parts whatever
    the file's size; the last part goes out beside those still in flight. Each part, and
    the last bytes, are first charged to the token's allowance (`count_bytes`). An upload
    with a declared length is announced (its run asked for) with the first part taken once
    the rest is due within EARLY_RUN_LEAD_SECONDS."""

    def charge(size: int) -> None:
        count_bytes(size)  # 429 past the token's allowance, before the bytes are sent on
        metrics.UPLOAD_BYTES.inc(size)

    arrival = Arrival.of(request)
    chunks = body_chunks(
        request,
        settings.max_upload_bytes,
        settings.upload_read_timeout_seconds,
        on_filename,
        arrival,
    )
    parts = Parts(settings.ingest_part_bytes)
    sending = PartsInFlight(landing, settings.ingest_parts_in_flight, charge)
    try:
        async for chunk in chunks:
            for part in parts.cut(chunk):
                await sending.send(part, arrival.due_within(EARLY_RUN_LEAD_SECONDS))
        rest = parts.rest()
        if sending.taken is not None and rest:
            # The rest is the last part of an upload under way: sent beside the parts still
            # in flight, not after them (the commit then only completes the upload).
            await sending.send(rest, False, last=True)
            rest = b""
        await sending.all_sent()
    finally:
        await sending.settled()
    if rest:  # the last bytes, when they did not go as a part
        charge(len(rest))
    return await run_in_threadpool(landing.finish, rest)


class Parts:
    """The body's bytes cut into parts of exactly `size` bytes, each part's bytes copied
    once (a chunk split where a part ends is viewed, not copied)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._held: list[bytes | memoryview] = []
        self._held_bytes = 0

    def cut(self, chunk: bytes) -> Iterator[bytes]:
        """The parts `chunk` completes; its bytes past them are held for the next."""
        piece: bytes | memoryview = chunk
        while self._held_bytes + len(piece) >= self.size:
            cut = self.size - self._held_bytes
            self._held.append(memoryview(piece)[:cut])
            piece, self._held_bytes = memoryview(piece)[cut:], 0
            part = b"".join(self._held)
            self._held.clear()
            yield part
        if piece:
            self._held.append(piece)
            self._held_bytes += len(piece)

    def rest(self) -> bytes:
        """The bytes held once the body ended (fewer than a part)."""
        rest = b"".join(self._held)
        self._held.clear()
        return rest


class PartsInFlight:
    """An upload's parts being sent and taken in: at most `most` at once (the last part, held
    already, does not wait for a place); takes follow the parts' order, sends need not."""

    def __init__(self, landing: Landing, most: int, charge: Callable[[int], None]) -> None:
        self.landing, self.most, self.charge = landing, most, charge
        self.tasks: list[asyncio.Task[None]] = []
        # The latest part's take-in; None until a part is sent.
        self.taken: asyncio.Future[None] | None = None

    async def send(self, part: bytes, announce: bool, *, last: bool = False) -> None:
        self.charge(len(part))
        if not last and len(self.tasks) >= self.most:
            await self.tasks.pop(0)
        number = await run_in_threadpool(self.landing.open_part)
        after, self.taken = self.taken, asyncio.get_running_loop().create_future()
        self.tasks.append(
            asyncio.create_task(
                _take_and_send(self.landing, number, part, announce, after, self.taken)
            )
        )

    async def all_sent(self) -> None:
        """Wait for every part; the first failure is raised."""
        while self.tasks:
            await self.tasks.pop(0)

    async def settled(self) -> None:
        """Whatever stopped the body, the parts under way finish first (a take-in half done
        would race the abort that follows): a few parts at most. Their errors are seen."""
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.taken is not None and self.taken.done() and not self.taken.cancelled():
            self.taken.exception()


async def _take_and_send(
    landing: Landing,
    number: int,
    part: bytes,
    announce: bool,
    after: asyncio.Future[None] | None,
    taken: asyncio.Future[None],
) -> None:
    """Send `part` at once, and take it in (hash, count, the first part's columns checked)
    once the part before it is: takes follow the bytes' order, sends need not. The first
    part's columns are checked while it is sent (~60 ms of sampling off the store's path);
    a refused upload is aborted, so nothing of it stays."""
    sending = asyncio.ensure_future(run_in_threadpool(landing.upload_part, number, part))
    try:
        if after is not None:
            await after
        await run_in_threadpool(landing.take_part, part, announce)
    except BaseException as exc:
        if not taken.done():
            taken.set_exception(exc)
        await asyncio.gather(sending, return_exceptions=True)  # done before the abort
        raise
    taken.set_result(None)
    await sending
