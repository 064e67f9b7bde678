"""Push an ingest's run to Dagster through the webserver's GraphQL API, so it starts
without waiting for the sensor's next tick (Dagster's sensor daemon ticks at most every
5 s). The sensor stays the safety net: the run is created before the ingest record the
sensor lists is written, and the sensor skips an ingest that already has a run, so an
ingest runs exactly once whichever path sees it first. If the webserver is down, nothing
is pushed and the sensor launches the run."""

from __future__ import annotations

import logging

import dagster as dg
import httpx

from lakehouse.ingests import IngestRecord
from lakehouse.storage import receipt_key
from lakehouse_assets.jobs import DATASET_TAG, INGEST_TAG, LAUNCHED_BY_TAG
from lakehouse_assets.partitions import DATASETS_PARTITIONS

log = logging.getLogger(__name__)

LAUNCH_RUN = """
mutation LaunchIngest($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""


def push_run(instance: dg.DagsterInstance, webserver_url: str, record: IngestRecord) -> str | None:
    """Launch `record`'s ingest_job run now; the run id, or None if it was not pushed."""
    if not instance.has_dynamic_partition(DATASETS_PARTITIONS, record.dataset):
        instance.add_dynamic_partitions(DATASETS_PARTITIONS, [record.dataset])
    tags = {
        DATASET_TAG: record.dataset,
        INGEST_TAG: record.ingest_id,
        LAUNCHED_BY_TAG: "api",
        "dagster/partition": record.dataset,
    }
    params = {
        "selector": {
            "repositoryLocationName": "lakehouse",
            "repositoryName": "__repository__",
            "jobName": "ingest_job",
        },
        "runConfigData": {
            "ops": {"dataset": {"config": {"ingest_record_key": receipt_key(record.ingest_id)}}}
        },
        "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
    }
    try:
        response = httpx.post(
            f"{webserver_url}/graphql",
            json={"query": LAUNCH_RUN, "variables": {"params": params}},
            timeout=10,
        )
        result = response.json()["data"]["launchRun"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        log.info("no run pushed for %s (the sensor will launch it): %s", record.ingest_id, exc)
        return None
    if result["__typename"] != "LaunchRunSuccess":
        log.warning(
            "run push for %s refused, the sensor will launch it: %s", record.ingest_id, result
        )
        return None
    return str(result["run"]["runId"])
