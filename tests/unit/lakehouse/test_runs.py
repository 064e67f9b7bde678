"""`WaitingRuns`: a dataset's waiting run, looked up again only when a run may have
changed status (lakehouse/runs.py)."""

from __future__ import annotations

import dagster as dg
import pytest

from lakehouse import runs
from lakehouse.runs import INGEST_JOB, PARTITION_TAG, WaitingRuns


@pytest.fixture
def looks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The datasets whose waiting run was looked up in the run storage."""
    asked: list[str] = []
    query = runs.waiting_run

    def counted(instance: dg.DagsterInstance, dataset: str) -> dg.DagsterRun | None:
        asked.append(dataset)
        return query(instance, dataset)

    monkeypatch.setattr(runs, "waiting_run", counted)
    return asked


def _waiting(instance: dg.DagsterInstance, dataset: str, run_id: str) -> dg.DagsterRun:
    return instance.add_run(
        dg.DagsterRun(
            job_name=INGEST_JOB,
            run_id=run_id,
            tags={PARTITION_TAG: dataset},
            status=dg.DagsterRunStatus.NOT_STARTED,
        )
    )


def test_a_run_found_waiting_is_trusted_while_nothing_is_logged(tmp_path, looks) -> None:
    with dg.DagsterInstance.local_temp(str(tmp_path)) as instance:
        _waiting(instance, "sales", "run-1")
        waiting = WaitingRuns(instance)
        assert [waiting.find("sales") for _ in range(5)] == ["run-1"] * 5
        assert looks == ["sales"]  # one look for the burst


def test_a_change_of_the_runs_status_is_looked_up_again(tmp_path, looks) -> None:
    with dg.DagsterInstance.local_temp(str(tmp_path)) as instance:
        run = _waiting(instance, "sales", "run-1")
        waiting = WaitingRuns(instance)
        assert waiting.find("sales") == "run-1"
        instance.report_run_canceled(run)  # it no longer waits: an event says so
        assert waiting.find("sales") is None
        assert looks == ["sales", "sales"]


def test_no_waiting_run_is_never_remembered(tmp_path, looks) -> None:
    """A dataset without a waiting run is looked up each time: the run pushed next (made
    without an event of its own on some paths) must be found."""
    with dg.DagsterInstance.local_temp(str(tmp_path)) as instance:
        waiting = WaitingRuns(instance)
        assert waiting.find("sales") is None
        _waiting(instance, "sales", "run-2")
        assert waiting.find("sales") == "run-2"
        assert waiting.find("other") is None
        assert looks == ["sales", "sales", "other"]
