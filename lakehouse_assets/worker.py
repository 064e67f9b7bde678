"""A run worker: a Celery worker that executes the Dagster runs the launcher sends it.

Start one with `lakehouse worker` (the stack starts LAKEHOUSE_WORKERS of them); on
another machine, the same command with the same broker URL, instance storage (Postgres)
and object store settings adds one more. The Celery app comes from the instance's own
run launcher, so the worker and the launcher agree on broker, queues and serialization.

Importing this module imports Dagster and the project's definitions, and loads boto3's S3
model, in the worker's main process, before its pool process forks: a run starts on a
process that has them loaded. A finished run tells the run queue at once: a run of the
same dataset may be waiting for it (lakehouse_assets/coordinator.py).
"""

from __future__ import annotations

import dagster as dg
from celery import Celery, signals

import lakehouse_assets.definitions  # noqa: F401  (warm: loaded once, before the fork)
from lakehouse.runtime.compat import celery_job_tasks
from lakehouse.store import load_s3_model
from lakehouse_assets.coordinator import signal_queue_changed
from lakehouse_assets.launcher import CeleryRunLauncher


def celery_app() -> Celery:
    with dg.DagsterInstance.get() as instance:
        launcher = instance.run_launcher
    if not isinstance(launcher, CeleryRunLauncher):
        raise RuntimeError(
            f"the Dagster instance at $DAGSTER_HOME runs runs with {type(launcher).__name__}, "
            "not the project's CeleryRunLauncher: use the project's dagster.yaml"
        )
    return launcher.celery


load_s3_model()
app = celery_app()
create_execute_job_task, create_resume_job_task = celery_job_tasks()
execute_job = create_execute_job_task(app)
resume_job = create_resume_job_task(app)


@signals.task_postrun.connect
def _run_finished(**_: object) -> None:
    signal_queue_changed()
