"""The Dagster UI's buttons, on the whole stack with Celery run workers, through the same
GraphQL calls the UI makes: "Materialize" on a partition of `dataset` (the asset job,
`__ASSET_JOB`, with its checks), "Materialize all" over a selection of partitions (a
partition backfill), and each job of the launchpad with its default config."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import dagster as dg
import pytest

from devstack.stack import Stack
from lakehouse_assets.checks import check_specs
from tests.e2e.conftest import ONE_OF_EACH, http, start_stack, wait_for_version

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

LAUNCH = """
mutation LaunchPipelineExecution($executionParams: ExecutionParams!) {
  launchPipelineExecution(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""
BACKFILL = """
mutation LaunchPartitionBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}
"""
DATASET = {"path": ["dataset"]}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = start_stack(tmp_path_factory.mktemp("stack"), webserver=True, **ONE_OF_EACH)
    yield stack
    stack.stop()


def graphql(stack: Stack, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    response = http.post(
        f"{stack.webserver_url}/graphql",
        json={"query": query, "variables": variables},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


WORKSPACE = """
query Workspace {
  workspaceOrError {
    ... on Workspace {
      locationEntries {
        name
        locationOrLoadError { ... on RepositoryLocation { repositories { name } } }
      }
    }
  }
}
"""


def repository(stack: Stack) -> dict[str, str]:
    """The repository selector, read from the workspace as the UI reads it."""
    entries = graphql(stack, WORKSPACE, {})["workspaceOrError"]["locationEntries"]
    [(location, name)] = [
        (entry["name"], repo["name"])
        for entry in entries
        for repo in entry["locationOrLoadError"]["repositories"]
    ]
    return {"repositoryLocationName": location, "repositoryName": name}


def launch(stack: Stack, job: str, partition: str, **selection: Any) -> str:
    params = {
        "selector": {**repository(stack), "pipelineName": job, **selection},
        "runConfigData": {},
        "mode": "default",
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": partition}]},
    }
    answer = graphql(stack, LAUNCH, {"executionParams": params})["launchPipelineExecution"]
    assert answer["__typename"] == "LaunchRunSuccess", answer
    return answer["run"]["runId"]


def the_asset_with_its_checks() -> dict[str, Any]:
    """What the UI selects when Materialize is clicked on the `dataset` asset."""
    return {
        "assetSelection": [DATASET],
        "assetCheckSelection": [
            {"assetKey": DATASET, "name": str(spec.name)} for spec in check_specs
        ],
    }


def finished(stack: Stack, run_ids: list[str], timeout: float = 240) -> list[dg.DagsterRun]:
    deadline = time.monotonic() + timeout
    home = str(stack.settings.resolved_dagster_home)
    while time.monotonic() < deadline:
        with dg.DagsterInstance.from_config(home) as instance:
            runs = [instance.get_run_by_id(run_id) for run_id in run_ids]
        if all(r is not None and r.is_finished for r in runs):
            return [r for r in runs if r is not None]
        time.sleep(1)
    raise AssertionError(f"runs {run_ids} not finished in {timeout}s")


def upload(stack: Stack, name: str, body: bytes) -> None:
    response = http.post(f"{stack.api_url}/v1/ingest", params={"name": name}, content=body)
    assert response.status_code == 202, response.text


def count(stack: Stack, name: str) -> int:
    response = http.post(
        f"{stack.api_url}/v1/sql", json={"sql": f"SELECT count(*) AS n FROM {name}"}
    )
    assert response.status_code == 200, response.text
    return response.json()["rows"][0]["n"]


def test_materialize_on_a_partition_runs_the_asset_job_on_a_run_worker(stack: Stack) -> None:
    upload(stack, "clicked", b"id,amount\n1,10.50\n2,3.25\n")
    first = wait_for_version(stack.api_url, "clicked", 1)
    [run] = finished(
        stack, [launch(stack, "__ASSET_JOB", "clicked", **the_asset_with_its_checks())]
    )
    assert run.status == dg.DagsterRunStatus.SUCCESS, run
    again = wait_for_version(stack.api_url, "clicked", 2)
    assert again["operation"] == "recommit" and again["row_count"] == first["row_count"] == 2
    assert count(stack, "clicked") == 2


def test_materialize_all_over_partitions_backfills_each_with_its_pending_ingests(
    stack: Stack,
) -> None:
    for name in ("left", "right"):
        upload(stack, name, b"id\n1\n")
        wait_for_version(stack.api_url, name, 1)
    params = {
        "assetSelection": [DATASET],
        "partitionNames": ["left", "right"],
        "fromFailure": False,
    }
    answer = graphql(stack, BACKFILL, {"backfillParams": params})["launchPartitionBackfill"]
    assert answer["__typename"] == "LaunchBackfillSuccess", answer
    for name in ("left", "right"):
        assert wait_for_version(stack.api_url, name, 2)["row_count"] == 1
    with dg.DagsterInstance.from_config(str(stack.settings.resolved_dagster_home)) as instance:
        backfill = instance.get_backfill(answer["backfillId"])
        assert backfill is not None
        runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill.backfill_id}))
    assert {r.job_name for r in runs} == {"__ASSET_JOB"}
    assert all(
        r.status == dg.DagsterRunStatus.SUCCESS for r in finished(stack, [r.run_id for r in runs])
    )


@pytest.mark.parametrize("job", ["ingest_job", "compaction_job", "rebuild_job"])
def test_each_launchpad_job_runs_with_its_default_config(stack: Stack, job: str) -> None:
    name = f"pad_{job.removesuffix('_job')}"
    upload(stack, name, b"id,note\n1,a\n2,b\n")
    wait_for_version(stack.api_url, name, 1)
    [run] = finished(stack, [launch(stack, job, name)])
    assert run.status == dg.DagsterRunStatus.SUCCESS, run
    assert count(stack, name) == 2  # the same rows, whatever the job made of them


def test_the_cleanup_job_runs_with_its_default_config(stack: Stack) -> None:
    params = {
        "selector": {**repository(stack), "pipelineName": "cleanup_job"},
        "runConfigData": {},
        "mode": "default",
    }
    answer = graphql(stack, LAUNCH, {"executionParams": params})["launchPipelineExecution"]
    assert answer["__typename"] == "LaunchRunSuccess", answer
    [run] = finished(stack, [answer["run"]["runId"]])
    assert run.status == dg.DagsterRunStatus.SUCCESS, run
    # Its pass is in /metrics (each API process reads the totals at most every 10 s).
    for _ in range(30):
        metrics = http.get(f"{stack.api_url}/metrics").text
        last = next(
            line
            for line in metrics.splitlines()
            if line.startswith("lakehouse_retention_last_pass_timestamp_seconds ")
        )
        if float(last.split()[1]) > 0:
            break
        time.sleep(1)
    else:
        raise AssertionError(f"no retention pass in /metrics: {last}")
    assert 'lakehouse_retention_deleted_total{kind="runs"}' in metrics
