"""Where one ingest stands, from what the store and Dagster already know:

landed        record written, no run yet (the sensor has not seen it)
queued        its run waits in Dagster's run queue
running       its run is executing
materialized  its run succeeded; `version` is the dataset version it produced
failed        its run failed or was canceled; `error` says why
"""

from __future__ import annotations

from typing import Any, Literal

import dagster as dg
from dagster import DagsterEventType, DagsterRunStatus
from pydantic import BaseModel

from lakehouse.ingests import IngestRecord
from lakehouse_assets.jobs import INGEST_TAG

Status = Literal["landed", "queued", "running", "materialized", "failed"]

_STATUS_OF_RUN: dict[DagsterRunStatus, Status] = {
    DagsterRunStatus.QUEUED: "queued",
    DagsterRunStatus.NOT_STARTED: "queued",
    DagsterRunStatus.STARTING: "queued",
    DagsterRunStatus.STARTED: "running",
    DagsterRunStatus.CANCELING: "running",
    DagsterRunStatus.SUCCESS: "materialized",
    DagsterRunStatus.FAILURE: "failed",
    DagsterRunStatus.CANCELED: "failed",
}
FINAL: set[Status] = {"materialized", "failed"}


class IngestError(BaseModel):
    message: str
    rejected_rows: int | None = None
    total_rows: int | None = None
    samples: list[dict[str, Any]] = []


class IngestStatus(BaseModel):
    status: Status
    run_id: str | None = None
    version: int | None = None
    error: IngestError | None = None


def ingest_status(instance: dg.DagsterInstance, record: IngestRecord) -> IngestStatus:
    runs = instance.get_runs(dg.RunsFilter(tags={INGEST_TAG: record.ingest_id}), limit=1)
    if not runs:
        return IngestStatus(status="landed")
    run = runs[0]  # the newest: a retry's run supersedes the one it retried
    status = _STATUS_OF_RUN.get(run.status, "running")
    if status == "materialized":
        return IngestStatus(status=status, run_id=run.run_id, version=_version(instance, run))
    if status == "failed":
        return IngestStatus(status=status, run_id=run.run_id, error=_error(instance, run))
    return IngestStatus(status=status, run_id=run.run_id)


def _version(instance: dg.DagsterInstance, run: dg.DagsterRun) -> int | None:
    for entry in instance.all_logs(run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
        materialization = entry.asset_materialization
        if materialization is not None and "version" in materialization.metadata:
            return int(materialization.metadata["version"].value)  # type: ignore[arg-type]
    return None


def _error(instance: dg.DagsterInstance, run: dg.DagsterRun) -> IngestError:
    if run.status == DagsterRunStatus.CANCELED:
        return IngestError(message="the run was canceled")
    failures = instance.all_logs(
        run.run_id, of_type={DagsterEventType.STEP_FAILURE, DagsterEventType.RUN_FAILURE}
    )
    for entry in failures:  # a step's failure says more than the run's
        event = entry.dagster_event
        if event is None or event.event_type != DagsterEventType.STEP_FAILURE:
            continue
        data = event.step_failure_data
        if data.user_failure_data is not None:
            meta = {k: v.value for k, v in data.user_failure_data.metadata.items()}
            return IngestError(
                message=data.user_failure_data.description or "the run failed",
                rejected_rows=meta.get("rejected_rows"),
                total_rows=meta.get("total_rows"),
                samples=meta.get("samples") or [],
            )
        if data.error is not None:
            return IngestError(message=data.error.message.strip())
    messages = [e.message for e in failures if e.message]
    return IngestError(message=messages[-1] if messages else "the run failed")
