"""Every reliance on Dagster or Celery behaviour that is not their public API, in one place.

COMPAT, checked on dagster 1.13, dagster-celery 0.29 and celery 5.5. Each reliance, where
it is used, and the contract test that fails loudly when an upgrade changes it (in
tests/unit/lakehouse/runtime/test_compat.py unless a path is given):

1. The daemon looks at the run queue in a thread named `DAEMON_QUEUE_THREAD`, and reads the
   queue's limits (`QueuedRunCoordinator.get_run_queue_config`) once per look.
   Used by `lakehouse_assets.coordinator`, which paces that thread.
   Tests: `test_the_daemons_queue_thread_is_named_so`;
   tests/unit/lakehouse_assets/test_coordinator.py
   `test_the_daemon_reads_the_queue_limits_once_per_look`; on the real stack,
   tests/e2e/test_control_plane.py `test_the_daemon_looks_at_the_queue_when_it_changes`.
2. `DagsterInstance.get_daemon_heartbeats()`, not marked public.
   Used by `/health` and the stack's readiness. Test: `test_daemon_heartbeats_are_read_so`.
3. A code server answers the standard gRPC health check as service
   `CODE_SERVER_HEALTH_SERVICE`. Used by the stack's readiness of the code server.
   Test: tests/integration/lakehouse/runtime/test_code_server.py
   `test_a_code_server_is_serving_by_the_grpc_health_check`.
4. dagster-celery's task factories (`dagster_celery.tasks`) and its run tag for a run's
   Celery task id. Used by `lakehouse_assets.worker` and `lakehouse_assets.launcher`.
   Test: `test_dagster_celerys_task_factories_and_tag_exist`.
5. A Celery result backend records a task's failure with `mark_as_failure(task_id, exc)`
   (what a worker itself calls). Used by `lakehouse_assets.launcher` for a worker that
   died. Test: `test_a_celery_backend_marks_a_task_failed`.
6. `RunLauncher.check_run_worker_health` returns a type that is not public; the launcher
   returns Dagster's own answer unchanged. Test, on the real stack:
   tests/e2e/test_control_plane.py
   `test_a_killed_worker_is_noticed_and_its_run_retried_elsewhere`.
7. `EventLogStorage.get_maximum_record_id()`, the event log's highest record id, grows with
   every event stored and is one indexed query (the public
   `fetch_materializations(after_storage_id=...)` costs ~2.5 ms). On SQLite, Dagster opens
   an engine and a connection for it, one caller at a time (~0.9 ms): the same
   `max(id)` of the `event_logs` table in the index shard (`path_for_shard("index")`,
   WAL mode) is read over a connection kept open instead (~20 us). Used by
   `api.query.views.CatalogViews` to skip the catalog check of a query while nothing was
   logged, and by `lakehouse.runs.WaitingRuns`, which trusts a run found waiting while the
   mark stands still: each change of a run's status is an event that moves it (SQLite
   mirrors run status events into the index shard). Tests:
   `test_the_event_logs_high_water_mark_grows_with_every_materialization`,
   `test_a_runs_start_moves_the_event_logs_high_water_mark`.
8. SQLite event log storage keeps each run's events in its own file,
   `SqliteEventLogStorage.path_for_shard(run_id)`, which the public `delete_run` empties
   but leaves. Used by `lakehouse.publish.pruning` to remove it, so that pruned runs
   free their bytes. Test: `test_a_deleted_runs_event_file_is_removed`.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Mapping
from typing import Any

import dagster as dg
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

# Dagster's daemon names each daemon's thread `dagster-daemon-<daemon type>`.
DAEMON_QUEUE_THREAD = "dagster-daemon-QUEUED_RUN_COORDINATOR"
# The service name Dagster's code server reports in the standard gRPC health check.
CODE_SERVER_HEALTH_SERVICE = "DagsterApi"
# SQLite event log storage: the shard that indexes every run's events.
SQLITE_INDEX_SHARD = "index"
SQLITE_BUSY_SECONDS = 5
_index_readers: dict[str, sqlite3.Connection] = {}  # index shard path -> open connection
_index_readers_lock = threading.Lock()


def event_log_high_water(instance: dg.DagsterInstance) -> int | None:
    """The event log's highest record id (None: empty): unchanged means nothing was logged."""
    storage = instance.event_log_storage
    path_for_shard = getattr(storage, "path_for_shard", None)  # SQLite's sharded storage
    index = path_for_shard(SQLITE_INDEX_SHARD) if path_for_shard is not None else None
    if index is None:
        return storage.get_maximum_record_id()
    with _index_readers_lock:
        reader = _index_readers.get(index)
        if reader is None:
            if not os.path.exists(index):  # Dagster creates it on first use
                return storage.get_maximum_record_id()
            # Autocommit: each SELECT is a read transaction of its own, which in WAL mode
            # sees every write committed before it.
            reader = sqlite3.connect(
                index, timeout=SQLITE_BUSY_SECONDS, isolation_level=None, check_same_thread=False
            )
            _index_readers[index] = reader
        row = reader.execute("SELECT max(id) FROM event_logs").fetchone()
    return int(row[0]) if row and row[0] is not None else None


def remove_run_event_file(instance: dg.DagsterInstance, run_id: str) -> None:
    """After `delete_run`: remove the run's own event file, where the storage keeps one
    (SQLite's; Postgres keeps none)."""
    path_for_shard = getattr(instance.event_log_storage, "path_for_shard", None)
    if path_for_shard is not None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path_for_shard(run_id))


def daemon_heartbeats(instance: dg.DagsterInstance) -> Mapping[str, Any]:
    """{daemon type: its last heartbeat} as the daemon writes them."""
    return instance.get_daemon_heartbeats()


def code_server_serving(host: str, port: int, timeout: float = 2.0) -> bool:
    """Whether the Dagster code server at host:port answers the gRPC health check SERVING."""
    with grpc.insecure_channel(f"{host}:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            answer = stub.Check(
                health_pb2.HealthCheckRequest(service=CODE_SERVER_HEALTH_SERVICE), timeout=timeout
            )
        except grpc.RpcError:
            return False
    return answer.status == health_pb2.HealthCheckResponse.SERVING


def celery_task_id_tag() -> str:
    """The run tag under which dagster-celery's launcher records the run's Celery task id."""
    from dagster_celery.tags import DAGSTER_CELERY_TASK_ID_TAG

    return DAGSTER_CELERY_TASK_ID_TAG


def celery_job_tasks() -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    """dagster-celery's factories of the tasks that execute and resume a run."""
    from dagster_celery.tasks import create_execute_job_task, create_resume_job_task

    return create_execute_job_task, create_resume_job_task


def mark_task_failed(task: Any, error: BaseException) -> None:
    """Record a Celery task as failed in its result backend (a dead worker cannot)."""
    task.backend.mark_as_failure(task.id, error)
