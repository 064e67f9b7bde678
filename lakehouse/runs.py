"""The run contract: how every run of the dataset asset is asked for, in one place.

The API's push, the ingest sensor, the schedules and the tests all launch runs through
these functions, so they carry the same tags and config. Runs of one dataset never overlap:
dagster.yaml limits runs per value of the `dagster/partition` tag, which every partitioned
run carries however it was launched (the UI's Materialize and backfills included), and the
commit record (`lakehouse.versions.commits`) catches whatever slips past the queue.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any, Literal
from urllib.parse import urlsplit

import dagster as dg
from dagster_graphql import DagsterGraphQLClient
from pydantic import Field

from lakehouse.runtime.compat import event_log_high_water

log = logging.getLogger(__name__)

DATASET_ASSET_KEY = dg.AssetKey("dataset")  # the one asset: a partition per dataset
CODE_LOCATION = "lakehouse"
DATASETS_PARTITIONS = "datasets"
INGEST_JOB = "ingest_job"
PARTITION_TAG = "dagster/partition"
LAUNCHED_BY_TAG = "lakehouse/launched_by"  # api, sensor or schedule; absent: a person
# On a run the API pushed: the upload request whose push launched it (its X-Request-ID).
REQUEST_ID_TAG = "lakehouse/request_id"
# On a run the API pushed for an upload announced as under way (`lakehouse.ingest.underway`):
# that upload's ingest id.
UPLOAD_TAG = "lakehouse/upload"

WAITING = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
]
IN_PROGRESS = [*WAITING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


class DatasetConfig(dg.Config):
    """What one run of the dataset asset does. Whatever it is, it commits at most one
    version, on top of the latest one, or nothing."""

    operation: Literal["apply", "compact", "rebuild"] = Field(
        default="apply",
        description="apply: the pending ingests, in order, as one version; compact: the same "
        "rows in fewer files; rebuild: every source file converted again.",
    )
    only_if_pending: bool = Field(
        default=False,
        description="For apply: with no ingest pending, commit nothing (runs the API and the "
        "sensor launch). Off (the UI's Materialize): commit the current state again as a new "
        "version.",
    )
    target_file_mb: int = Field(default=256, description="For compact: target file size.")
    sort_by: list[str] = Field(default=[], description="For compact: columns to sort by.")


def run_config(config: DatasetConfig) -> dict[str, Any]:
    return {"ops": {"dataset": {"config": config.model_dump()}}}


def run_tags(launched_by: str) -> dict[str, str]:
    return {LAUNCHED_BY_TAG: launched_by}


def apply_request(dataset: str, launched_by: str) -> dg.RunRequest:
    """The run that applies `dataset`'s pending ingests, as a sensor or schedule asks."""
    return dg.RunRequest(
        partition_key=dataset,
        run_config=run_config(DatasetConfig(only_if_pending=True)),
        tags=run_tags(launched_by),
    )


def ensure_partition(instance: dg.DagsterInstance, dataset: str) -> None:
    """Add `dataset`'s partition; several processes may race to add it, and all succeed."""
    if instance.has_dynamic_partition(DATASETS_PARTITIONS, dataset):
        return
    try:
        instance.add_dynamic_partitions(DATASETS_PARTITIONS, [dataset])
    except Exception:  # noqa: BLE001 - the storage's own unique-key error, whatever its type
        if not instance.has_dynamic_partition(DATASETS_PARTITIONS, dataset):
            raise


def waiting_run(instance: dg.DagsterInstance, dataset: str) -> dg.DagsterRun | None:
    """An apply run of `dataset` that has not started yet: it will see every ingest
    committed now."""
    runs = instance.get_runs(
        dg.RunsFilter(job_name=INGEST_JOB, tags={PARTITION_TAG: dataset}, statuses=WAITING),
        limit=1,
    )
    return runs[0] if runs else None


class WaitingRuns:
    """Each dataset's run that has not started yet, looked up again only when a run may
    have started since: every change of a run's status is an event, which moves the event
    log's high-water mark (`lakehouse.runtime.compat`, 7), so while the mark stands still a
    run found waiting still waits. A burst of uploads to a dataset then costs the run
    storage one query (~2 ms of CPU on SQLite), not one per upload."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.instance = instance
        self._found: dict[str, tuple[str, int | None]] = {}  # dataset -> (run id, mark)
        self._lock = threading.Lock()

    def find(self, dataset: str) -> str | None:
        """The id of a waiting run of `dataset`, if there is one."""
        mark = event_log_high_water(self.instance)  # before the look: a later start moves it
        with self._lock:
            found = self._found.get(dataset)
        if found is not None and found[1] == mark:
            return found[0]
        run = waiting_run(self.instance, dataset)
        with self._lock:
            if run is None:
                self._found.pop(dataset, None)
            else:
                self._found[dataset] = (run.run_id, mark)
        return run.run_id if run else None


def run_for_upload(
    instance: dg.DagsterInstance, dataset: str, ingest_id: str
) -> dg.DagsterRun | None:
    """A run pushed for upload `ingest_id` while it was under way that has not finished:
    it reads the log only once the upload is committed (or refused)."""
    runs = instance.get_runs(
        dg.RunsFilter(
            job_name=INGEST_JOB,
            tags={PARTITION_TAG: dataset, UPLOAD_TAG: ingest_id},
            statuses=[*WAITING, dg.DagsterRunStatus.STARTED],
        ),
        limit=1,
    )
    return runs[0] if runs else None


def active_run(instance: dg.DagsterInstance, dataset: str) -> dg.DagsterRun | None:
    """Any run of `dataset` that has not finished (it settles the pending hint when done)."""
    runs = instance.get_runs(
        dg.RunsFilter(tags={PARTITION_TAG: dataset}, statuses=IN_PROGRESS), limit=1
    )
    return runs[0] if runs else None


def running_run(instance: dg.DagsterInstance, dataset: str) -> dg.DagsterRun | None:
    runs = instance.get_runs(
        dg.RunsFilter(tags={PARTITION_TAG: dataset}, statuses=[dg.DagsterRunStatus.STARTED]),
        limit=1,
    )
    return runs[0] if runs else None


def submit(
    webserver_url: str,
    job: str,
    dataset: str,
    config: DatasetConfig,
    tags: dict[str, str] | None = None,
    launched_by: str = "api",
) -> str:
    """Launch `job` on `dataset`'s partition through the webserver; the run's id."""
    # The client finds the job's code location and repository itself (public API; the
    # repository's name is Dagster's own): one more small query, off the upload's path.
    return _client(webserver_url).submit_job_execution(
        job,
        run_config=run_config(config),
        tags={**run_tags(launched_by), PARTITION_TAG: dataset, **(tags or {})},
    )


class Pusher:
    """Pushes runs in the background, so an upload's answer never waits for the webserver
    to create a run, and coalesces a burst: a dataset has at most one push waiting to
    start. That is enough: a push that has not started yet will launch (or find) a run
    that has not started either, and a run reads the log when it starts, so it sees every
    ingest committed before then. (A push already under way does not count: the waiting
    run it found may start before a later commit.)"""

    def __init__(self, instance: dg.DagsterInstance, webserver_url: str, threads: int = 2):
        self.instance, self.webserver_url = instance, webserver_url
        self._runs = WaitingRuns(instance)
        self._partitioned: set[str] = set()  # datasets whose partition exists (never removed)
        # dataset -> the request that asked, and the upload it asked for (see `push`)
        self._asked: dict[str, tuple[str | None, str | None]] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="push")

    def request(
        self, dataset: str, request_id: str | None = None, upload: str | None = None
    ) -> None:
        with self._lock:
            if dataset in self._asked:
                return
            self._asked[dataset] = (request_id, upload)
        self._pool.submit(self._push_asked, dataset)

    def _push_asked(self, dataset: str) -> None:
        with self._lock:
            request_id, upload = self._asked.pop(dataset, (None, None))
        self.push(dataset, request_id, upload)

    def push(
        self, dataset: str, request_id: str | None = None, upload: str | None = None
    ) -> str | None:
        """Have `dataset`'s pending ingests applied now rather than at the sensor's next
        tick: the id of a run that will, or None if none could be launched (the sensor will).

        `upload`, the ingest id of an upload announced as under way, asks for that upload's
        run: a run already pushed for it counts as waiting, and a new one is tagged with it."""
        try:
            if (found := self._runs.find(dataset)) is not None:
                return found
            if upload and (pushed := run_for_upload(self.instance, dataset, upload)) is not None:
                return pushed.run_id
            if dataset not in self._partitioned:
                ensure_partition(self.instance, dataset)
                self._partitioned.add(dataset)
            tags = {REQUEST_ID_TAG: request_id} if request_id else {}
            tags |= {UPLOAD_TAG: upload} if upload else {}
            config = DatasetConfig(only_if_pending=True)
            return submit(self.webserver_url, INGEST_JOB, dataset, config, tags)
        except Exception as exc:  # noqa: BLE001 - a push is only a shortcut: the sensor is the path
            log.warning("no run pushed for %s (the sensor will launch one): %s", dataset, exc)
            return None


@lru_cache
def _client(webserver_url: str) -> DagsterGraphQLClient:
    url = urlsplit(webserver_url)
    return DagsterGraphQLClient(
        url.hostname or "127.0.0.1",
        port_number=url.port,
        use_https=url.scheme == "https",
        timeout=10,
    )
