"""The control plane on the real stack, as production runs it: Postgres instance storage (a
server the tests start themselves), a Redis broker, Celery run workers (one the stack
starts, one started by hand as another machine would); one run at a time per dataset; a
run whose process is killed, a worker that is killed whole, and the stack stopped while a
worker is busy."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
import psutil
import psycopg2
import pytest
from dagster_celery.tags import DAGSTER_CELERY_TASK_ID_TAG

from devstack.stack import Stack
from lakehouse.runs import PARTITION_TAG, active_run
from tests.e2e.conftest import file_chunks, http, sql_rows, start_stack, wait_for_ingest

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, postgres_url: str) -> Iterator[Stack]:
    # One worker of the stack's own, and room for one more started elsewhere.
    stack = start_stack(
        tmp_path_factory.mktemp("postgres"),
        postgres_url=postgres_url,
        workers=1,
        max_concurrent_runs=2,
    )
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def worker_elsewhere(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A run worker started as on another machine: its own process, environment and state
    directory (so its own Dagster home), sharing only the broker, Postgres and S3 URLs."""
    settings = stack.settings
    shared = {
        "LAKEHOUSE_BROKER_URL": settings.resolved_broker_url,
        "LAKEHOUSE_POSTGRES_URL": settings.postgres_url,
        "LAKEHOUSE_S3_ENDPOINT": settings.s3_endpoint,
        "LAKEHOUSE_S3_ACCESS_KEY": settings.s3_access_key,
        "LAKEHOUSE_S3_SECRET_KEY": settings.s3_secret_key,
    }
    state = tmp_path_factory.mktemp("elsewhere")
    log = (state / "worker.log").open("wb")
    worker = subprocess.Popen(
        [str(Path(sys.executable).parent / "lakehouse"), "worker", "--name", "elsewhere"],
        env={"PATH": os.environ["PATH"], "LAKEHOUSE_STATE_DIR": str(state), **shared},
        cwd=state,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while " ready." not in (state / "worker.log").read_text(errors="replace"):
        assert worker.poll() is None, (state / "worker.log").read_text()
        assert time.monotonic() < deadline, "the worker started elsewhere never got ready"
        time.sleep(0.2)
    yield f"elsewhere@{socket.gethostname()}"
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.pid, signal.SIGTERM)
    worker.wait(timeout=60)
    log.close()


def instance_of(stack: Stack) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(stack.settings.resolved_dagster_home))


def test_the_instance_lives_in_postgres(stack: Stack, postgres_url: str) -> None:
    with instance_of(stack) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    with psycopg2.connect(postgres_url) as con, con.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'runs'")
        assert cursor.fetchone() == (1,)


def test_ingest_and_query_on_postgres(stack: Stack, workers_csv: Path) -> None:
    response = http.post(
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
    catalog = http.get(f"{stack.api_url}/v1/catalog").json()["datasets"]
    assert [(d["name"], d["row_count"]) for d in catalog] == [("workers_500k", 500_000)]


def test_runs_of_one_dataset_never_overlap(stack: Stack) -> None:
    """The invariant only: whether runs of different datasets overlapped depends on how
    busy the machine is, so `make bench` measures that, not this test."""

    def upload(i: int) -> str:
        body = b"n\n" + b"".join(b"%d\n" % (i * 10_000_000 + j) for j in range(300_000))
        while True:
            response = http.post(
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


def test_the_daemon_looks_at_the_queue_when_it_changes(stack: Stack) -> None:
    """Told not to sleep between looks, the daemon must be paced by the coordinator (its
    queue thread is found by name): else it would look at the queue in a tight loop."""
    daemon = next(p for p in stack.processes if p.name == "dagster-daemon")
    deadline = time.monotonic() + 60  # its first look comes once its threads are up
    while "Looking at the run queue as soon as it changes" not in daemon.output():
        assert time.monotonic() < deadline, daemon.tail()
        time.sleep(0.5)


def test_the_daemon_loads_the_definitions_from_the_stack_code_server(stack: Stack) -> None:
    """A code server of the daemon's own would be replaced every minute, each time
    importing Dagster and the definitions again: the daemon and the webserver spawn none
    (the sensor, evaluated there, is covered by the tests of runs it launches)."""
    dagster = [p for p in stack.processes if p.name in {"dagster-daemon", "dagster-webserver"}]
    assert dagster
    for process in dagster:
        assert psutil.Process(process.popen.pid).children(recursive=True) == [], process.name
    assert "grpc_server" in stack.workspace_file.read_text()


def test_a_killed_run_is_marked_failed_and_its_ingest_runs_again(
    stack: Stack, workers_csv: Path
) -> None:
    ingest_id, run_id = upload_until_running(stack, "killed", workers_csv)
    with instance_of(stack) as instance:
        worker_pid = run_worker_pid(instance, run_id)
    psutil.Process(worker_pid).kill()

    with instance_of(stack) as instance:
        assert finished_run(instance, run_id).status == dg.DagsterRunStatus.FAILURE
    # The ingest was never decided: it is still pending, and the daemon's run retry (or
    # the sensor) applies it, once.
    receipt = wait_for_ingest(stack.api_url, ingest_id)
    assert receipt["status"] == "materialized"
    assert sql_rows(stack.api_url, "SELECT count(*) AS n FROM killed") == [{"n": 500_000}]


def test_a_worker_started_elsewhere_takes_runs(stack: Stack, worker_elsewhere: str) -> None:
    """Runs go to whichever worker is free: with uploads to two datasets at once, both
    workers end up running some (the invariant: every row lands once, wherever it ran)."""
    workers_seen: set[str] = set()
    for attempt in range(6):
        names = [f"spread_{attempt}_{i}" for i in range(2)]
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda name: upload_numbers(stack, name, 200_000), names))
        for name, answer in zip(names, answers, strict=True):
            assert answer["status"] == "materialized", answer
            assert sql_rows(stack.api_url, f"SELECT count(*) AS n FROM {name}") == [{"n": 200_000}]
            workers_seen.add(worker_of(stack, answer["run_id"]))
        if worker_elsewhere in workers_seen and len(workers_seen) == 2:
            return
    raise AssertionError(f"runs only ever ran on {workers_seen}")


def test_a_killed_worker_is_noticed_and_its_run_retried_elsewhere(
    stack: Stack, workers_csv: Path, worker_elsewhere: str
) -> None:
    """The whole worker dies (main process and pool), not just the run's process: the
    launcher's health check notices that no worker has the run, run monitoring fails it,
    the daemon retries it on the worker left, and the ingest lands once."""
    ingest_id, run_id = upload_until_running(stack, "orphaned", workers_csv)
    with instance_of(stack) as instance:
        worker = psutil.Process(run_worker_pid(instance, run_id)).parent()
    assert worker is not None
    os.killpg(os.getpgid(worker.pid), signal.SIGKILL)

    with instance_of(stack) as instance:
        run = finished_run(instance, run_id)
        assert run.status == dg.DagsterRunStatus.FAILURE
        task = instance.run_launcher.celery.AsyncResult(run.tags[DAGSTER_CELERY_TASK_ID_TAG])  # type: ignore[attr-defined]
        assert "no longer has this run" in str(task.result)  # the launcher noticed
    receipt = wait_for_ingest(stack.api_url, ingest_id)
    assert receipt["status"] == "materialized"
    assert sql_rows(stack.api_url, "SELECT count(*) AS n FROM orphaned") == [{"n": 500_000}]
    # Give the stack a worker of its own again (the killed one may have been either).
    for dead in stack.dead():
        stack.stop(dead.name)
    stack.start_workers(1)


def test_the_stack_stops_cleanly_with_a_worker_busy(stack: Stack, workers_csv: Path) -> None:
    """Stopping mid-run leaves no process behind; started again, the stack fails the
    interrupted run (its broker kept nothing) and applies the ingest once."""
    ingest_id, _ = upload_until_running(stack, "interrupted", workers_csv)
    processes = [
        process
        for started in stack.processes
        for process in [
            psutil.Process(started.popen.pid),
            *psutil.Process(started.popen.pid).children(recursive=True),
        ]
    ]
    stack.stop()
    assert not [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]

    stack.start()
    receipt = wait_for_ingest(stack.api_url, ingest_id)
    assert receipt["status"] == "materialized"
    assert sql_rows(stack.api_url, "SELECT count(*) AS n FROM interrupted") == [{"n": 500_000}]


def upload_until_running(stack: Stack, name: str, csv: Path) -> tuple[str, str]:
    """Upload `csv` to `name`; once its run is running: the ingest id and the run id."""
    response = http.post(
        f"{stack.api_url}/v1/ingest", params={"name": name}, content=file_chunks(csv), timeout=300
    )
    ingest_id = response.json()["ingest_id"]
    return ingest_id, wait_for_status(stack.api_url, ingest_id, "running")


def finished_run(instance: dg.DagsterInstance, run_id: str, timeout: float = 120) -> dg.DagsterRun:
    deadline = time.monotonic() + timeout
    while (run := instance.get_run_by_id(run_id)) is not None and not run.is_finished:
        assert time.monotonic() < deadline, f"run {run_id} did not finish in {timeout:.0f} s"
        time.sleep(0.5)
    assert run is not None
    return run


def upload_numbers(stack: Stack, name: str, rows: int) -> dict:
    body = b"n\n" + b"".join(b"%d\n" % j for j in range(rows))
    response = http.post(
        f"{stack.api_url}/v1/ingest",
        params={"name": name, "wait": "true"},
        content=body,
        timeout=300,
    )
    assert response.status_code == 200, response.text
    return response.json()


def worker_of(stack: Stack, run_id: str) -> str:
    """The Celery worker that executed a run, as its task's result records it."""
    with instance_of(stack) as instance:
        run = instance.get_run_by_id(run_id)
        assert run is not None
        celery = instance.run_launcher.celery  # type: ignore[attr-defined]
        return celery.AsyncResult(run.tags[DAGSTER_CELERY_TASK_ID_TAG]).worker


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
        receipt = http.get(f"{api}/v1/ingest/{ingest_id}").json()
        if receipt["status"] == status:
            return receipt["run_id"]
        time.sleep(0.05)
    raise AssertionError(f"ingest {ingest_id} never reached {status}")
