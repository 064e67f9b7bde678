"""Where one ingest stands, read from the ingest log, the catalog and the commit records
(the states are those of `lakehouse.ingest.log`):

queued        committed to the log, waiting for a run of its dataset
running       committed, and a run of its dataset is executing (it may be in this batch)
materialized  applied in `version`; `in_current_version` says whether a later replace has
              taken it out since. Or a duplicate: `duplicate_of` names the ingest whose rows
              these bytes already were, and nothing was added.
failed        a run decided it cannot be applied: `error` says why
"""

from __future__ import annotations

from typing import Literal

import dagster as dg
from pydantic import BaseModel

from lakehouse.ingest.records import IngestRecord
from lakehouse.publish.catalog import latest_manifest
from lakehouse.runs import running_run, waiting_run
from lakehouse.store import ObjectStore
from lakehouse.store.layout import receipt_key
from lakehouse.versions.commits import (
    CommitRecord,
    IngestError,
    RowChanges,
    deciding_commit,
    read_commit,
)

Status = Literal["queued", "running", "materialized", "failed"]
FINAL: set[Status] = {"materialized", "failed"}


class IngestStatus(BaseModel):
    status: Status
    run_id: str | None = None
    version: int | None = None
    in_current_version: bool | None = None
    duplicate_of: str | None = None
    error: IngestError | None = None
    changes: RowChanges | None = None  # a merge's or delete's counts


def ingest_status(
    instance: dg.DagsterInstance, store: ObjectStore, record: IngestRecord
) -> IngestStatus:
    current = latest_manifest(instance, record.dataset)
    if current is None or record.seq > current.applied_through:
        if (run := running_run(instance, record.dataset)) is not None:
            return IngestStatus(status="running", run_id=run.run_id)
        waiting = waiting_run(instance, record.dataset)
        return IngestStatus(status="queued", run_id=waiting.run_id if waiting else None)
    commit = _deciding(store, record, current.version)
    outcome = commit.outcome(record.seq) if commit else None
    if commit is None or outcome is None:
        return IngestStatus(
            status="failed",
            error=IngestError(message="no version records this ingest: it was lost"),
        )
    if outcome.status == "failed":
        return IngestStatus(
            status="failed", run_id=commit.run_id, version=commit.version, error=outcome.error
        )
    return IngestStatus(
        status="materialized",
        run_id=commit.run_id,
        version=commit.version,
        in_current_version=current.contains(record.seq) if outcome.status == "applied" else None,
        duplicate_of=outcome.duplicate_of,
        changes=outcome.changes,
    )


def _deciding(store: ObjectStore, record: IngestRecord, latest: int) -> CommitRecord | None:
    """The commit record of the version that decided `record`: named by its receipt once
    the run wrote it there, else found by binary search."""
    receipt = store.get_json_or_none(receipt_key(record.ingest_id))
    if receipt and receipt.get("version"):
        found = read_commit(store, record.dataset, receipt["version"])
        if found is not None and found.outcome(record.seq) is not None:
            return found
    return deciding_commit(store, record.dataset, record.seq, latest)
