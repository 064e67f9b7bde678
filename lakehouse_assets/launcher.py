"""dagster-celery's run launcher, plus noticing a run worker that died mid-run.

`CeleryRunLauncher` sends each run to the broker as a Celery task; a warm run worker
(`lakehouse_assets.worker`) executes it, and run monitoring asks the task's state for the
run's health. A task whose pool process died is marked failed by Celery itself. A task
whose whole worker died (killed, its machine gone) would stay STARTED forever: this
launcher asks that worker, through Celery's remote control, whether it still has the
task, and if it does not answer or no longer has it, records the task as failed. Run
monitoring then marks the run failed and the daemon's run retries start it again; the
ingest protocol makes that retry apply each ingest once.
"""

from __future__ import annotations

from typing import Any

from billiard.exceptions import WorkerLostError
from celery.result import AsyncResult
from dagster import DagsterRun
from dagster_celery.launcher import CeleryRunLauncher as _CeleryRunLauncher

from lakehouse.runtime.compat import celery_task_id_tag, mark_task_failed

# How long a worker has to answer "do you still have this task?". Its main process
# answers while its pool process runs the task, so a live worker answers in milliseconds.
WORKER_REPLY_SECONDS = 2.0


class CeleryRunLauncher(_CeleryRunLauncher):
    def check_run_worker_health(self, run: DagsterRun) -> Any:  # its type is not public
        task_id = run.tags.get(celery_task_id_tag())
        if task_id:
            self._fail_task_of_lost_worker(self.celery.AsyncResult(task_id))
        return super().check_run_worker_health(run)

    def _fail_task_of_lost_worker(self, task: AsyncResult) -> None:
        if task.state != "STARTED" or not isinstance(task.info, dict):
            return
        worker = task.info.get("hostname")
        if not worker or self._worker_has_task(worker, task.id):
            return
        # It may have just finished: then its state is no longer STARTED.
        if task.state == "STARTED":
            mark_task_failed(
                task,
                WorkerLostError(f"run worker {worker} no longer has this run (stopped or died)"),
            )

    def _worker_has_task(self, worker: str, task_id: str) -> bool:
        inspect = self.celery.control.inspect(destination=[worker], timeout=WORKER_REPLY_SECONDS)
        replies = inspect.query_task(task_id) or {}
        return bool(replies.get(worker, {}).get(task_id))
