"""Dagster's default run launcher, plus the worker health check run monitoring needs.

The default launcher starts each run in a process of the code server but cannot tell run
monitoring whether that process is still alive, so a run whose process died would stay
STARTED forever. This one asks the code server which runs it is executing: a STARTED run
it no longer has (killed, crashed, or its server gone) is reported failed, monitoring marks
the run failed, and the daemon's run retries start it again.
"""

from __future__ import annotations

import grpc
from dagster import DefaultRunLauncher
from dagster._core.launcher.base import CheckRunHealthResult, WorkerStatus
from dagster._core.storage.dagster_run import DagsterRun
from dagster._grpc.types import GetCurrentRunsResult
from dagster._serdes import deserialize_value


class MonitoredRunLauncher(DefaultRunLauncher):
    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        client = self._get_grpc_client_for_termination(run.run_id)
        if client is None:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "run has no code server info")
        try:
            current = deserialize_value(client.get_current_runs(), GetCurrentRunsResult)
        except grpc.RpcError as exc:
            return CheckRunHealthResult(
                WorkerStatus.FAILED, f"the code server that ran it is gone: {exc.code()}"
            )
        if run.run_id in current.current_runs:
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(
            WorkerStatus.FAILED, "the run's process is no longer running (killed or crashed)"
        )
