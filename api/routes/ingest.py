"""POST /v1/ingest: stream a CSV into the landing area; GET /v1/ingest/{id}: follow it."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

import dagster as dg
from botocore.exceptions import ClientError
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api.deps import (
    InstanceDep,
    SettingsDep,
    StoreDep,
    current_manifests,
    dataset_name,
    log_tails,
    pusher,
)
from lakehouse.catalog import Manifest, latest_manifest
from lakehouse.commits import IngestError
from lakehouse.csvdialect import CsvOptions, InvalidOption
from lakehouse.csvschema import Column, NotCsv
from lakehouse.ingest_status import FINAL, IngestStatus, ingest_status
from lakehouse.ingests import (
    CommitUnconfirmed,
    IngestRecord,
    Landed,
    Landing,
    Mode,
    SchemaConflict,
    read_receipt,
)
from lakehouse.storage import InvalidIngestId, ObjectStore, StoreUnavailable
from lakehouse.streams import BadGzip, BadMultipart, Gunzip, MultipartFile, SizeCap, TooLarge

router = APIRouter(prefix="/ingest", tags=["ingest"])

WAIT_POLL_SECONDS = 0.25
RETRY_AFTER_SECONDS = 2


class InferredSchema(BaseModel):
    delimiter: str
    quote: str = Field(description='The quote character ("" for none).')
    escape: str = Field(
        description='What escapes a quote inside a quoted value: the quote (doubled) or "\\".'
    )
    header: bool = Field(
        description="Whether the first line read (after skipped_lines) names the columns."
    )
    skipped_lines: int = Field(
        description="Lines before the header (a title, notes, comments, blank lines)."
    )
    comment: str = Field(description='Lines starting with it are skipped ("" for none).')
    null: list[str] = Field(description="Values read as NULL.")
    encoding: str
    dialect_reasons: dict[str, str] = Field(
        description='Why each of the above was chosen ("given": sent as a parameter).'
    )
    fingerprint: str
    columns: list[Column]
    renamed: dict[str, str] = Field(description="New header name -> the header as sent.")


class IngestAnswer(BaseModel):
    ingest_id: str
    dataset: str
    mode: Mode
    seq: int = Field(description="Its place in the dataset's ingest log (apply order).")
    status: str = Field(description="queued, running, materialized or failed.")
    duplicate: bool = Field(
        False,
        description="True: the dataset already holds these bytes; this is the ingest that "
        "put them there, and nothing new was committed.",
    )
    bytes: int
    sha256: str
    received_at: datetime
    inferred_schema: InferredSchema
    run_id: str | None = None
    version: int | None = Field(None, description="The dataset version that applied it.")
    in_current_version: bool | None = Field(
        None, description="Once materialized: False if a later replace took its rows out."
    )
    duplicate_of: str | None = Field(
        None, description="Materialized as a duplicate of this ingest: no rows were added."
    )
    error: IngestError | None = None
    manifest: Manifest | None = Field(None, description="With wait, once materialized.")


def answer(record: IngestRecord, state: IngestStatus, **extra: Any) -> IngestAnswer:
    schema = record.csv_schema
    return IngestAnswer(
        ingest_id=record.ingest_id,
        dataset=record.dataset,
        mode=record.mode,
        seq=record.seq,
        bytes=record.bytes,
        sha256=record.sha256,
        received_at=record.received_at,
        inferred_schema=InferredSchema.model_validate(
            {
                **schema.described(),
                "fingerprint": schema.fingerprint,
                "columns": list(schema.columns),
                "renamed": schema.renamed,
            }
        ),
        **state.model_dump(),
        **extra,
    )


class UploadSlot:
    """One of the process's upload slots: it bounds uploads whose bytes are landing, so
    the handler gives it back as soon as they have landed (before waiting for the run)."""

    def __init__(self, state: Any) -> None:
        self._state = state
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._state.uploads_in_flight -= 1


async def upload_slot(request: Request, settings: SettingsDep) -> AsyncIterator[UploadSlot]:
    """One of the process's upload slots, or 503 + Retry-After when all are taken.

    The handler releases it as soon as the bytes have landed: a dependency's own exit
    comes only once the whole request is done, so it is just the backstop (errors).
    """
    state = request.app.state
    in_flight = state.uploads_in_flight
    if in_flight >= settings.max_concurrent_uploads:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=f"{in_flight} uploads already in flight, the most this server takes at "
            f"once: retry after {RETRY_AFTER_SECONDS} s",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    state.uploads_in_flight = in_flight + 1
    slot = UploadSlot(state)
    try:
        yield slot
    finally:
        slot.release()


UploadSlotDep = Annotated[UploadSlot, Depends(upload_slot)]


def csv_options(
    delimiter: Annotated[
        str | None, Query(description="One character, or `tab`; default: found in the file.")
    ] = None,
    quote: Annotated[str | None, Query(description="`\"`, `'` or `none`.")] = None,
    escape: Annotated[
        str | None, Query(description='`"` (doubled quotes), `\\` (backslash) or `none`.')
    ] = None,
    header: Annotated[
        str | None, Query(description="`true` (default) or `false`: line 1 is data.")
    ] = None,
    skip: Annotated[
        str | None, Query(description="Lines before the header (a title, notes).")
    ] = None,
    comment: Annotated[
        str | None, Query(description="Lines starting with it are skipped, e.g. `#`; `none`.")
    ] = None,
    null: Annotated[
        list[str] | None, Query(description="A value that means NULL (repeat for more).")
    ] = None,
    encoding: Annotated[
        str | None, Query(description="`utf-8` (default), `latin-1` or `utf-16`.")
    ] = None,
) -> CsvOptions:
    """The CSV dialect parameters a client sent (what no sniffer can know); 400 for one
    that cannot be used."""
    try:
        return CsvOptions.parse(
            delimiter=delimiter,
            quote=quote,
            escape=escape,
            header=header,
            skip=skip,
            comment=comment,
            nulls=null,
            encoding=encoding,
        )
    except InvalidOption as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(exc)) from exc


CsvOptionsDep = Annotated[CsvOptions, Depends(csv_options)]


def _body_limit(max_bytes: int) -> int:
    """The most bytes a body may take as sent: the CSV's limit, plus room for multipart
    headers and gzip's worst case (incompressible data grows by well under 1%)."""
    return max_bytes + max_bytes // 100 + 64 * 1024


async def body_chunks(request: Request, max_bytes: int) -> AsyncIterator[bytes]:
    """The CSV bytes, decompressed, from the multipart field `file` or the raw body.

    Both stream: a multipart body is parsed as it arrives (never spooled). Both caps, on
    the body as sent and on the CSV it holds, apply as the bytes arrive, so a body without
    a Content-Length is stopped as soon as it passes them.
    """
    content_type = request.headers.get("content-type", "")
    gzipped = request.headers.get("content-encoding", "").lower() == "gzip"
    try:
        multipart = (
            MultipartFile(content_type) if content_type.startswith("multipart/form-data") else None
        )
        _refuse_declared_size(request, max_bytes, exact=not (gzipped or multipart))
        cap = SizeCap(max_bytes)
        gunzip: Gunzip | None = None
        async for chunk in _csv_bytes(request, multipart, _body_limit(max_bytes)):
            if gunzip is None and (gzipped or (multipart and multipart.filename.endswith(".gz"))):
                gunzip = Gunzip()
            for piece in gunzip.feed(chunk) if gunzip else (chunk,):
                yield cap.check(piece)
        if gunzip:
            gunzip.finish()
    except BadMultipart as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(exc)) from exc


def _refuse_declared_size(request: Request, max_bytes: int, *, exact: bool) -> None:
    """413 before reading a byte when the declared length is already too much."""
    declared = request.headers.get("content-length", "")
    limit = max_bytes if exact else _body_limit(max_bytes)
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(max_bytes)


async def _csv_bytes(
    request: Request, multipart: MultipartFile | None, body_limit: int
) -> AsyncIterator[bytes]:
    """The raw body, or its multipart field's data; the body as sent is capped."""
    cap = SizeCap(body_limit)
    async for chunk in request.stream():
        cap.check(chunk)
        for piece in multipart.feed(chunk) if multipart else (chunk,):
            yield piece
    if multipart:
        multipart.finish()


async def land(request: Request, landing: Landing, settings: SettingsDep) -> Landed:
    """Stream the body into the store: up to `ingest_parts_in_flight` parts upload while the
    next ones arrive, so memory stays at a few parts whatever the file's size."""
    part_bytes = settings.ingest_part_bytes
    buffer = bytearray()
    in_flight: list[asyncio.Future[None]] = []
    async for chunk in body_chunks(request, settings.max_upload_bytes):
        buffer += chunk
        if len(buffer) >= part_bytes:
            part, buffer = bytes(buffer[:part_bytes]), buffer[part_bytes:]
            number = await run_in_threadpool(landing.take_part, part)  # in order
            if len(in_flight) >= settings.ingest_parts_in_flight:
                await in_flight.pop(0)
            send = run_in_threadpool(landing.upload_part, number, part)
            in_flight.append(asyncio.ensure_future(send))
    try:
        for upload in in_flight:
            await upload
    finally:
        for upload in in_flight:
            upload.cancel()
    return await run_in_threadpool(landing.finish, bytes(buffer))


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        200: {"description": "Duplicate bytes, or materialized while waiting."},
        400: {
            "description": "Empty, not UTF-8 CSV text, no header on line 1, mixed line ends, "
            "broken gzip or malformed multipart."
        },
        409: {"description": "Columns differ from the dataset's; the diff says how."},
        413: {"description": "Larger than the upload limit (after decompression)."},
        422: {"description": "Invalid dataset name or wait, or (with wait) the ingest failed."},
        503: {"description": "Too many uploads in flight (Retry-After), or store down."},
    },
    openapi_extra={
        "requestBody": {
            "content": {
                "text/csv": {"schema": {"type": "string", "format": "binary"}},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"file": {"type": "string", "format": "binary"}},
                        "required": ["file"],
                    }
                },
            },
            "required": True,
        }
    },
)
async def ingest(
    request: Request,
    response: Response,
    settings: SettingsDep,
    store: StoreDep,
    instance: InstanceDep,
    slot: UploadSlotDep,
    options: CsvOptionsDep,
    name: Annotated[str, Query(description="Dataset name: ^[a-z][a-z0-9_]{0,62}$")],
    mode: Annotated[Mode, Query(description="append (default) or replace")] = "append",
    wait: Annotated[
        str | None, Query(description="true, or seconds: answer once materialized or failed")
    ] = None,
) -> IngestAnswer:
    """Land a CSV (raw body, or multipart field `file`; gzip by `Content-Encoding: gzip` or
    a `.gz` file name) for dataset `name`.

    Answers 202 once the ingest is committed to the dataset's log: from then on it will be
    applied exactly once, in log order, by the next run of the dataset. Bytes the dataset
    already holds answer 200 with the ingest that put them there, and add nothing.
    """
    name = dataset_name(name)
    wait_seconds = _wait_seconds(wait, settings.ingest_wait_seconds)
    current = await run_in_threadpool(current_manifests(instance, store).latest, name)
    landing = Landing(
        store,
        name,
        mode=mode,
        current=current,
        sample_rows=settings.sample_rows,
        tails=log_tails(store),
        options=options,
    )
    try:
        landed = await land(request, landing, settings)
    except BaseException as exc:
        # If the store is gone, the unfinished multipart upload never became visible anyway.
        with contextlib.suppress(StoreUnavailable):
            await run_in_threadpool(landing.abort)
        refusal = _refusal(exc)
        if refusal is exc:
            raise
        raise refusal from exc
    finally:
        slot.release()  # the slots bound uploads landing, not waits for a run
    record = landed.record
    if landed.duplicate:
        response.status_code = status.HTTP_200_OK
        state = await run_in_threadpool(ingest_status, instance, store, record)
        return answer(record, state, duplicate=True)
    # Committed: from here the ingest will be applied whatever happens to this request.
    if settings.push_runs:
        pusher(instance, settings.resolved_webserver_url).request(name)
    if wait_seconds:
        return await _wait(instance, store, record, wait_seconds, response)
    return answer(record, IngestStatus(status="queued"))


@router.get("/{ingest_id}")
def get_ingest(ingest_id: str, store: StoreDep, instance: InstanceDep) -> IngestAnswer:
    """Where an ingest stands: landed, queued, running, materialized (with the dataset
    version it produced) or failed (with the reason, and bad rows with line numbers)."""
    record = _receipt(store, ingest_id)
    return answer(record, ingest_status(instance, store, record))


def _receipt(store: StoreDep, ingest_id: str) -> IngestRecord:
    try:
        return read_receipt(store, ingest_id)
    except InvalidIngestId as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from exc
    except ClientError as exc:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail=f"no ingest {ingest_id!r}: use the ingest_id that POST /v1/ingest returned",
        ) from exc


async def _wait(
    instance: dg.DagsterInstance,
    store: ObjectStore,
    record: IngestRecord,
    seconds: float,
    response: Response,
) -> IngestAnswer:
    deadline = time.monotonic() + seconds
    while True:
        state = await run_in_threadpool(ingest_status, instance, store, record)
        if state.status in FINAL or time.monotonic() >= deadline:
            break
        await asyncio.sleep(WAIT_POLL_SECONDS)
    if state.status == "failed":
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=answer(record, state).model_dump(mode="json"),
        )
    if state.status == "materialized":
        response.status_code = status.HTTP_200_OK
        manifest = await run_in_threadpool(latest_manifest, instance, record.dataset)
        return answer(record, state, manifest=manifest)
    return answer(record, state)  # still on its way: 202, follow GET /v1/ingest/{id}


def _wait_seconds(wait: str | None, longest: float) -> float:
    """How long to wait for the run: `true` the longest allowed, `false` (or none) not at
    all, else a finite number of seconds up to the longest."""
    if wait is None or wait.strip().lower() in {"false", ""}:
        return 0.0
    if wait.strip().lower() == "true":
        return longest
    try:
        seconds = float(wait)
    except ValueError:
        seconds = math.nan
    if not 0 <= seconds <= longest:  # NaN compares false: refused too
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=f"wait={wait!r}: use wait=true (waits up to {longest:g} s), wait=false, "
            f"or a number of seconds from 0 to {longest:g}, e.g. wait=60",
        )
    return seconds


def _refusal(exc: BaseException) -> BaseException:
    """The HTTP answer for why an upload was refused (unknown errors pass through)."""
    if isinstance(exc, SchemaConflict):
        return HTTPException(
            status.HTTP_409_CONFLICT,
            detail={
                "message": str(exc),
                "dataset": exc.dataset,
                "upload_fingerprint": exc.upload_fingerprint,
                **exc.diff,
            },
        )
    if isinstance(exc, TooLarge):
        return HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail=str(exc))
    if isinstance(exc, NotCsv | BadGzip):
        return HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(exc))
    if isinstance(exc, CommitUnconfirmed):
        return HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail={
                "message": str(exc),
                "ingest_id": exc.record.ingest_id,
                "committed": True if exc.certain else "unknown",
            },
            headers={"Retry-After": "10"},
        )
    if isinstance(exc, StoreUnavailable):
        return HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=f"{exc}; nothing was stored, retry when the object store is back",
            headers={"Retry-After": "10"},
        )
    return exc
