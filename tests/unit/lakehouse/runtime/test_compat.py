"""Contract tests of the Dagster and Celery behaviour `lakehouse.runtime.compat` relies on
that is not public API: each fails loudly, naming what changed, when an upgrade changes it.
(They read Dagster's private modules on purpose: that is what they guard.)"""

from __future__ import annotations

import inspect
import os

import dagster as dg
from billiard.exceptions import WorkerLostError
from celery import Celery

from lakehouse.runtime import compat


def test_the_daemons_queue_thread_is_named_so() -> None:
    from dagster._daemon import controller
    from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import (
        QueuedRunCoordinatorDaemon,
    )

    # The controller names each daemon's thread after its type; the coordinator paces the
    # one whose name is this, and no other thread.
    assert 'name=f"dagster-daemon-{daemon_type}"' in inspect.getsource(controller)
    expected = f"dagster-daemon-{QueuedRunCoordinatorDaemon.daemon_type()}"
    assert expected == compat.DAEMON_QUEUE_THREAD


def test_daemon_heartbeats_are_read_so() -> None:
    with dg.DagsterInstance.ephemeral() as instance:
        assert dict(compat.daemon_heartbeats(instance)) == {}


def test_dagster_celerys_task_factories_and_tag_exist() -> None:
    from dagster_celery.launcher import CeleryRunLauncher

    assert compat.celery_task_id_tag() == "dagster-celery/task_id"
    # The launcher records the task under that tag.
    assert "DAGSTER_CELERY_TASK_ID_TAG" in inspect.getsource(inspect.getmodule(CeleryRunLauncher))
    execute, resume = compat.celery_job_tasks()
    app = Celery("compat", broker="memory://", backend="cache+memory://")
    assert execute(app).name == "execute_job" and resume(app).name == "resume_job"


def test_a_celery_backend_marks_a_task_failed() -> None:
    app = Celery("compat", broker="memory://", backend="cache+memory://")
    task = app.AsyncResult("a-task-id")
    compat.mark_task_failed(task, WorkerLostError("gone"))
    assert task.state == "FAILURE" and isinstance(task.result, WorkerLostError)


def test_a_closed_port_is_no_serving_code_server() -> None:
    from devstack.ports import free_port

    # (The serving case runs a real code server: tests/integration/lakehouse/runtime.)
    assert compat.code_server_serving("127.0.0.1", free_port(), timeout=0.5) is False


def test_the_event_logs_high_water_mark_grows_with_every_materialization(tmp_path) -> None:
    """The catalog check skips its query while the mark is unchanged: every materialization
    must move it, and it is at least the materialization's storage id."""
    from lakehouse.runs import DATASET_ASSET_KEY
    from tests.unit.lakehouse.publish.test_catalog_trust import materialized_by_a_run, sales

    with dg.DagsterInstance.local_temp(str(tmp_path)) as instance:
        assert compat.event_log_high_water(instance) is None
        assert hasattr(instance.event_log_storage, "path_for_shard")  # read directly
        marks = []
        for version in (1, 2):
            materialized_by_a_run(instance, [sales(version=version)])
            latest = instance.fetch_materializations(
                dg.AssetRecordsFilter(DATASET_ASSET_KEY), limit=1
            ).records[0]
            mark = compat.event_log_high_water(instance)
            assert mark is not None and mark >= latest.storage_id
            # On SQLite it is read over a connection of its own: the same as Dagster's.
            assert mark == instance.event_log_storage.get_maximum_record_id()
            marks.append(mark)
        assert marks[1] > marks[0]
        assert compat.event_log_high_water(instance) == marks[1]  # unchanged while idle


def test_a_deleted_runs_event_file_is_removed(tmp_path) -> None:
    """SQLite storage keeps a run's events in a file of its own that `delete_run` empties
    but leaves: pruning removes it, and the instance still works without it."""
    from lakehouse.publish.catalog import latest_manifest
    from tests.unit.lakehouse.publish.test_catalog_trust import materialized_by_a_run, sales

    with dg.DagsterInstance.local_temp(str(tmp_path)) as instance:
        materialized_by_a_run(instance, [sales(version=1)])
        materialized_by_a_run(instance, [sales(version=2)])
        first = instance.get_run_records(ascending=True)[0].dagster_run.run_id
        storage = instance.event_log_storage
        path = storage.path_for_shard(first)  # type: ignore[attr-defined]
        assert os.path.exists(path)
        instance.delete_run(first)
        compat.remove_run_event_file(instance, first)
        assert not os.path.exists(path)
        compat.remove_run_event_file(instance, first)  # already gone: no error
        manifest = latest_manifest(instance, "sales")
        assert manifest is not None and manifest.version == 2


def test_a_runs_start_moves_the_event_logs_high_water_mark(tmp_path) -> None:
    """`WaitingRuns` trusts a run found waiting while the mark stands still: a run's start
    must move it before the run's code runs (a job of ops alone: no asset event moves it)."""
    seen: dict[str, object] = {}

    @dg.op
    def look(context) -> None:  # type: ignore[no-untyped-def]  # Dagster reads the annotation
        seen["mark"] = compat.event_log_high_water(context.instance)
        run = context.instance.get_run_by_id(context.run_id)
        seen["status"] = run.status if run else None

    @dg.job
    def started() -> None:
        look()

    with dg.DagsterInstance.local_temp(str(tmp_path)) as instance:
        before = compat.event_log_high_water(instance)
        started.execute_in_process(instance=instance)
        assert seen["status"] == dg.DagsterRunStatus.STARTED
        assert isinstance(seen["mark"], int) and (before is None or seen["mark"] > before)
        # And its end (canceled, failed, succeeded) moves it again.
        assert (compat.event_log_high_water(instance) or 0) > seen["mark"]
