"""POST /v1/ingest: stream a CSV into the landing area and record the ingest."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, status
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from api.deps import SettingsDep, StoreDep, dataset_name
from lakehouse.csvschema import Column, NotCsv
from lakehouse.ingests import Landing
from lakehouse.storage import StoreUnavailable

router = APIRouter(prefix="/ingest", tags=["ingest"])

READ_CHUNK = 256 * 1024


class InferredSchema(BaseModel):
    delimiter: str
    fingerprint: str
    columns: list[Column]
    renamed: dict[str, str] = Field(description="New header name -> the header as sent.")


class IngestReceipt(BaseModel):
    ingest_id: str
    dataset: str
    status: str = Field(description="'landed': stored and recorded, waiting for its run.")
    bytes: int
    sha256: str
    inferred_schema: InferredSchema


async def body_chunks(request: Request) -> AsyncIterator[bytes]:
    """The CSV bytes: the multipart field `file`, or else the raw request body."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form()
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST,
                detail="multipart upload has no file field named 'file': send -F file=@data.csv",
            )
        while chunk := await upload.read(READ_CHUNK):
            yield chunk
    else:
        async for chunk in request.stream():
            yield chunk


async def land(request: Request, landing: Landing, part_bytes: int) -> bytes:
    """Stream the body into the store, one part uploading while the next arrives; returns
    the last, short part."""
    buffer = bytearray()
    pending: asyncio.Future[None] | None = None
    async for chunk in body_chunks(request):
        buffer += chunk
        if len(buffer) >= part_bytes:
            part, buffer = bytes(buffer[:part_bytes]), buffer[part_bytes:]
            if pending is not None:
                await pending
            pending = asyncio.ensure_future(run_in_threadpool(landing.write_part, part))
    if pending is not None:
        await pending
    return bytes(buffer)


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
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
    settings: SettingsDep,
    store: StoreDep,
    name: Annotated[str, Query(description="Dataset name: ^[a-z][a-z0-9_]{0,62}$")],
) -> IngestReceipt:
    """Land a CSV (raw body or multipart field `file`) for dataset `name`.

    Answers 202 with the ingest id and the schema inferred from the first rows; the ingest
    sensor then materializes it into the dataset.
    """
    landing = Landing(store, dataset_name(name), sample_rows=settings.sample_rows)
    try:
        last_part = await land(request, landing, settings.ingest_part_bytes)
        record = await run_in_threadpool(landing.finish, last_part)
    except NotCsv as exc:
        await _abort(landing)
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(exc)) from exc
    except StoreUnavailable as exc:
        await _abort(landing)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=f"{exc}; nothing was stored, retry when the object store is back",
        ) from exc
    except BaseException:
        await _abort(landing)
        raise
    schema = record.csv_schema
    return IngestReceipt(
        ingest_id=record.ingest_id,
        dataset=record.dataset,
        status="landed",
        bytes=record.bytes,
        sha256=record.sha256,
        inferred_schema=InferredSchema(
            delimiter=schema.delimiter,
            fingerprint=schema.fingerprint,
            columns=list(schema.columns),
            renamed=schema.renamed,
        ),
    )


async def _abort(landing: Landing) -> None:
    # If the store is gone, the unfinished multipart upload never became visible anyway.
    with contextlib.suppress(StoreUnavailable):
        await run_in_threadpool(landing.abort)
