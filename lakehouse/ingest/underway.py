"""Uploads under way, so that a large upload's run can start while its bytes still arrive.

The API asks for a large upload's run when its first part is accepted rather than when it
commits, so that the run's start-up (Dagster planning, queueing and starting it: ~0.4 s)
overlaps the rest of the upload. The upload is first announced by an empty object,
`landing/<dataset>/uploading/<ingest_id>`, which is deleted once the upload is committed
or refused; an apply run waits while its dataset has one, then reads the log as always.

Nothing here decides what a run applies: a run that stops waiting early (an announcement
older than `MAX_WAIT_SECONDS`, from an API that died mid-upload, or a wait that long in
all) reads the log at that moment, and whatever is committed later goes to the next run,
as for any run. Retention deletes an announcement left behind like any unused landing
object.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from lakehouse.store import ObjectStore, StoreUnavailable
from lakehouse.store.layout import uploading_key, uploading_prefix

log = logging.getLogger(__name__)

MAX_WAIT_SECONDS = 60.0
POLL_SECONDS = 0.05


def announce(store: ObjectStore, dataset: str, ingest_id: str) -> None:
    store.put_bytes(uploading_key(dataset, ingest_id), b"")


def withdraw(store: ObjectStore, dataset: str, ingest_id: str) -> None:
    """Best effort: an announcement the store kept only makes runs of `dataset` wait
    until it is `MAX_WAIT_SECONDS` old; said in the log, not to the uploader."""
    try:
        store.delete([uploading_key(dataset, ingest_id)])
    except StoreUnavailable as exc:
        log.warning(
            "upload %s of %s stays announced as under way (%s): runs of %s wait for it "
            "until it is %.0f s old",
            ingest_id, dataset, exc, dataset, MAX_WAIT_SECONDS,
        )  # fmt: skip


def await_uploads(
    store: ObjectStore,
    dataset: str,
    say: Callable[[str], None],
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> float:
    """Wait while `dataset` has an upload under way, at most `MAX_WAIT_SECONDS`; the
    seconds waited."""
    started = clock()
    said = False
    while clock() - started < MAX_WAIT_SECONDS:
        fresh = [
            key
            for key, modified in store.list_objects(uploading_prefix(dataset))
            if clock() - modified.timestamp() < MAX_WAIT_SECONDS
        ]
        if not fresh:
            break
        if not said:
            say(f"{dataset}: waiting for {len(fresh)} upload(s) under way to be committed")
            said = True
        sleep(POLL_SECONDS)
    return clock() - started
