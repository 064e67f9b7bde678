"""Waiting for the run that applies an upload (`wait=`): where it stands is looked up again
each time the event log grows, so the answer leaves as its version is published."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Callable
from functools import partial

import dagster as dg
from fastapi import HTTPException, status
from starlette.concurrency import run_in_threadpool

from api.upload.receipts import Answered, answer
from lakehouse.ingest.records import IngestRecord
from lakehouse.publish.catalog import latest_manifest
from lakehouse.publish.status import FINAL, ingest_status
from lakehouse.runtime.compat import event_log_high_water
from lakehouse.store import ObjectStore

log = logging.getLogger(__name__)

# How often the event log's high-water mark is read while uploads wait: one indexed query
# per process, however many wait. Where the upload stands (reads of the catalog and the
# store) is looked up only when the mark moved.
WATCH_SECONDS = 0.02

_UNREAD = object()  # the mark before the watch has read it


class MarkWatch:
    """The event log's high-water mark, read every WATCH_SECONDS while anyone waits on it,
    by one task of the event loop: a thousand waiting uploads cost one query a tick."""

    def __init__(self, read: Callable[[], int | None]) -> None:
        self._read = read
        self._waiting = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._mark: object = _UNREAD
        self._tick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def after(self, seen: object, deadline: float) -> object:
        """The mark once it differs from `seen`, or at `deadline` (monotonic)."""
        self._join_loop()
        self._waiting += 1
        try:
            if self._task is None or self._task.done():
                self._task = asyncio.create_task(self._watch())
            while self._mark is _UNREAD or self._mark == seen:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._tick.wait(), left)
            return self._mark
        finally:
            self._waiting -= 1

    def _join_loop(self) -> None:
        """Start afresh under a new event loop (a test's app may run under several)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop = loop
            self._mark = _UNREAD
            self._tick = asyncio.Event()
            self._task = None

    async def _watch(self) -> None:
        self._mark = _UNREAD  # what it read before it last stopped may be old
        while self._waiting:
            mark: object
            try:
                mark = await run_in_threadpool(self._read)
            except Exception:  # any storage's error: the waiters look for themselves
                log.warning("could not read the event log's high-water mark", exc_info=True)
                mark = object()
            if mark != self._mark:
                self._mark = mark
                tick, self._tick = self._tick, asyncio.Event()
                tick.set()
            await asyncio.sleep(WATCH_SECONDS)


_watches: weakref.WeakKeyDictionary[dg.DagsterInstance, MarkWatch] = weakref.WeakKeyDictionary()


def mark_watch(instance: dg.DagsterInstance) -> MarkWatch:
    """The watch of `instance`'s event log (one per instance: the API keeps one)."""
    watch = _watches.get(instance)
    if watch is None:
        watch = _watches[instance] = MarkWatch(partial(event_log_high_water, instance))
    return watch


async def wait_for_run(
    instance: dg.DagsterInstance, store: ObjectStore, record: IngestRecord, seconds: float
) -> Answered:
    """The receipt once the ingest is materialized (200) or when time is up (202, still on
    its way: follow GET /v1/ingest/{id}); 422 with the receipt if it failed."""
    deadline = time.monotonic() + seconds
    seen: object = await run_in_threadpool(event_log_high_water, instance)  # before the look
    while True:
        state = await run_in_threadpool(ingest_status, instance, store, record)
        if state.status in FINAL or time.monotonic() >= deadline:
            break
        seen = await mark_watch(instance).after(seen, deadline)
    if state.status == "failed":
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=answer(record, state).model_dump(mode="json"),
        )
    if state.status == "materialized":
        manifest = await run_in_threadpool(latest_manifest, instance, record.dataset)
        return Answered(answer(record, state, manifest=manifest), status.HTTP_200_OK)
    return Answered(answer(record, state), status.HTTP_202_ACCEPTED)
