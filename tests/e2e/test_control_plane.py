"""The control plane on the real stack: Postgres instance storage (a server the tests start
themselves), one run at a time per dataset, and a run whose process is killed."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
import httpx
import psutil
import psycopg2
import pytest

from lakehouse.runs import PARTITION_TAG, active_run
from lakehouse.stack import Stack
from tests.e2e.conftest import file_chunks, sql_rows, start_stack, wait_for_ingest

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, postgres_url: str) -> Iterator[Stack]:
    stack = start_stack(tmp_path_factory.mktemp("postgres"), postgres_url=postgres_url)
    yield stack
    stack.stop()


def instance_of(stack: Stack) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(stack.settings.resolved_dagster_home))


def test_the_instance_lives_in_postgres(stack: Stack, postgres_url: str) -> None:
    with instance_of(stack) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    with psycopg2.connect(postgres_url) as con, con.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'runs'")
        assert cursor.fetchone() == (1,)


def test_ingest_and_query_on_postgres(stack: Stack, workers_csv: Path) -> None:
    response = httpx.post(
        f"{stack.api_url}/v1/ingest",
        params={"name": "workers_500k", "wait": "true"},
        content=file_chunks(workers_csv),
        timeout=300,
    )
    assert response.status_code == 200, response.text
    assert response.json()["manifest"]["row_count"] == 500_000
    assert sql_rows(stack.api_url, "SELECT count(*) FROM workers_500k") == [
        {"count_star()": 500_000}
    ]
    catalog = httpx.get(f"{stack.api_url}/v1/catalog").json()["datasets"]
    assert [(d["name"], d["row_count"]) for d in catalog] == [("workers_500k", 500_000)]


def test_runs_of_one_dataset_never_overlap(stack: Stack) -> None:
    """The invariant only: whether runs of different datasets overlapped depends on how
    busy the machine is, so `make bench` measures that, not this test."""

    def upload(i: int) -> str:
        body = b"n\n" + b"".join(b"%d\n" % (i * 10_000_000 + j) for j in range(300_000))
        while True:
            response = httpx.post(
                f"{stack.api_url}/v1/ingest", params={"name": f"lane_{i % 2}"}, content=body
            )
            if response.status_code != 503:
                break
            time.sleep(0.5)
        assert response.status_code == 202, response.text
        return response.json()["ingest_id"]

    with ThreadPoolExecutor(6) as pool:
        ids = list(pool.map(upload, range(6)))
    assert all(wait_for_ingest(stack.api_url, i)["status"] == "materialized" for i in ids)
    with instance_of(stack) as instance:  # runs that found nothing left may still be queued
        deadline = time.monotonic() + 120
        while any(active_run(instance, lane) for lane in ("lane_0", "lane_1")):
            assert time.monotonic() < deadline, "runs never finished"
            time.sleep(0.5)

    with instance_of(stack) as instance:
        records = instance.get_run_records(
            dg.RunsFilter(tags={PARTITION_TAG: ["lane_0", "lane_1"]})  # type: ignore[dict-item]
        )
    spans: dict[str, list[tuple[float, float]]] = {}
    for record in records:
        assert record.start_time and record.end_time
        dataset = record.dagster_run.tags[PARTITION_TAG]
        spans.setdefault(dataset, []).append((record.start_time, record.end_time))
    for dataset, intervals in spans.items():
        intervals.sort()
        for (_, end), (start, _) in zip(intervals, intervals[1:], strict=False):
            assert start >= end, f"two runs of {dataset} overlapped"
    assert sorted(spans) == ["lane_0", "lane_1"]
    assert sql_rows(stack.api_url, "SELECT count(*) AS n FROM lane_0") == [{"n": 3 * 300_000}]


def test_a_killed_run_is_marked_failed_and_its_ingest_runs_again(
    stack: Stack, workers_csv: Path
) -> None:
    response = httpx.post(
        f"{stack.api_url}/v1/ingest",
        params={"name": "killed"},
        content=file_chunks(workers_csv),
        timeout=300,
    )
    ingest_id = response.json()["ingest_id"]
    run_id = wait_for_status(stack.api_url, ingest_id, "running")
    with instance_of(stack) as instance:
        worker_pid = run_worker_pid(instance, run_id)
    psutil.Process(worker_pid).kill()

    with instance_of(stack) as instance:
        deadline = time.monotonic() + 120
        while (run := instance.get_run_by_id(run_id)) and not run.is_finished:
            assert time.monotonic() < deadline, "the killed run was never marked failed"
            time.sleep(0.5)
        assert run is not None and run.status == dg.DagsterRunStatus.FAILURE
    # The ingest was never decided: it is still pending, and the daemon's run retry (or
    # the sensor) applies it, once.
    receipt = wait_for_ingest(stack.api_url, ingest_id)
    assert receipt["status"] == "materialized"
    assert sql_rows(stack.api_url, "SELECT count(*) AS n FROM killed") == [{"n": 500_000}]


def run_worker_pid(instance: dg.DagsterInstance, run_id: str) -> int:
    """The run's process, as Dagster logged it ("Started process for run (pid: N).")."""
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        found = re.search(r"Started process for run \(pid: (\d+)\)", entry.message or "")
        if found:
            return int(found.group(1))
    raise AssertionError(f"no process logged for run {run_id}")


def wait_for_status(api: str, ingest_id: str, status: str, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        receipt = httpx.get(f"{api}/v1/ingest/{ingest_id}").json()
        if receipt["status"] == status:
            return receipt["run_id"]
        time.sleep(0.05)
    raise AssertionError(f"ingest {ingest_id} never reached {status}")
