"""Waiting for the run that applies an upload (`wait=`), polling where it stands."""

from __future__ import annotations

import asyncio
import time

import dagster as dg
from fastapi import HTTPException, status
from starlette.concurrency import run_in_threadpool

from api.upload.receipts import Answered, answer
from lakehouse.ingest.records import IngestRecord
from lakehouse.publish.catalog import latest_manifest
from lakehouse.publish.status import FINAL, ingest_status
from lakehouse.store import ObjectStore

WAIT_POLL_SECONDS = 0.25


async def wait_for_run(
    instance: dg.DagsterInstance, store: ObjectStore, record: IngestRecord, seconds: float
) -> Answered:
    """The receipt once the ingest is materialized (200) or when time is up (202, still on
    its way: follow GET /v1/ingest/{id}); 422 with the receipt if it failed."""
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
        manifest = await run_in_threadpool(latest_manifest, instance, record.dataset)
        return Answered(answer(record, state, manifest=manifest), status.HTTP_200_OK)
    return Answered(answer(record, state), status.HTTP_202_ACCEPTED)
