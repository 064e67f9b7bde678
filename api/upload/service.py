"""An upload, start to end: land the body (holding an upload slot only while its bytes
arrive), commit it to the dataset's log, ask for a run, and wait for it if asked."""

from __future__ import annotations

import contextlib

import dagster as dg
from fastapi import Request, status
from starlette.concurrency import run_in_threadpool

from api.deps import current_manifests, log_tails, pusher
from api.upload.body import land
from api.upload.params import UploadParams
from api.upload.receipts import Answered, answer
from api.upload.slots import UploadSlot
from api.upload.wait import wait_for_run
from lakehouse.formats.structured import format_of
from lakehouse.ingest.landing import Landing, check_room
from lakehouse.publish.status import IngestStatus, ingest_status
from lakehouse.settings import Settings
from lakehouse.store import ObjectStore, StoreUnavailable


async def upload(
    request: Request,
    params: UploadParams,
    slot: UploadSlot,
    settings: Settings,
    store: ObjectStore,
    instance: dg.DagsterInstance,
) -> Answered:
    """Land and commit the request's body as an ingest of `params.name`. A refused upload
    (too large, not CSV, the wrong columns) raises, and leaves nothing behind."""
    current = await run_in_threadpool(current_manifests(instance, store).latest, params.name)
    request_id = request.state.audit["request_id"]
    # A large upload's run is asked for as its first part is accepted, so that it starts
    # while the rest arrives (`lakehouse.ingest.underway`); every other one's at its commit.
    runs = pusher(instance, settings.resolved_webserver_url) if settings.push_runs else None
    check_room(current, params.mode, settings.max_dataset_bytes)
    landing = Landing(
        store,
        params.name,
        mode=params.mode,
        current=current,
        sample_rows=settings.sample_rows,
        max_columns=settings.max_columns,
        tails=log_tails(store),
        options=params.options,
        request_id=request_id,
        key=params.key,
        dedup=params.dedup,
        evolve=params.evolve,
        fmt=format_of(params.format, request.headers.get("content-type", "")),
        on_under_way=(
            (lambda ingest_id: runs.request(params.name, request_id, ingest_id)) if runs else None
        ),
    )
    # A multipart upload's file name may say its format, unless the request already did.
    said = params.format or format_of(None, request.headers.get("content-type", "")) != "csv"
    try:
        landed = await land(
            request, landing, settings, slot.count_bytes, None if said else landing.name_file
        )
    except BaseException:
        # If the store is gone, the unfinished multipart upload never became visible anyway.
        with contextlib.suppress(StoreUnavailable):
            await run_in_threadpool(landing.abort)
        raise
    finally:
        slot.release()  # the slots bound uploads landing, not waits for a run
    record = landed.record
    if landed.duplicate:
        state = await run_in_threadpool(ingest_status, instance, store, record)
        return Answered(answer(record, state, duplicate=True), status.HTTP_200_OK)
    # Committed: from here the ingest will be applied whatever happens to this request.
    if runs:
        runs.request(
            params.name, record.request_id, record.ingest_id if landing.announced else None
        )
    if params.wait_seconds:
        return await wait_for_run(instance, store, record, params.wait_seconds)
    return Answered(answer(record, IngestStatus(status="queued")), status.HTTP_202_ACCEPTED)
