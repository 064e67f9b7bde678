"""Bounded state: after many small ingests and a retention pass, the bucket's protocol
objects and Dagster's storage hold O(retained versions), not O(ingests).

The ingests are committed by the API's own code (`Landing`), side by side, straight from
this process (through HTTP they would take minutes); the stack's sensor and workers apply
them as they come, so they become many versions. Two passes follow, each with a clock
moved forward: the first with its window starting halfway through the ingests (every
version retained since then still answers `as_of`, its objects kept for the window), the
second with every ingest past the window. Rows are checked after each.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from bench.report import Figure
from lakehouse.ingest.landing import Landing
from lakehouse.ingest.log import LogTails
from lakehouse.ingest.marks import datasets_with_log
from lakehouse.publish.catalog import latest_manifests, manifest_history
from lakehouse.publish.iceberg import IcebergTables
from lakehouse.publish.pruning import Pruned, prune_history
from lakehouse.publish.retention import apply_cleanup, plan_cleanup
from lakehouse.store import layout

if TYPE_CHECKING:
    from bench.harness import Bench

DATASETS = 4
RETENTION = timedelta(days=7)
PROTOCOL = [layout.LANDING, layout.LOG, layout.RECEIPTS, layout.QUEUED, layout.APPLIED]
PROTOCOL += [layout.COMMITS, layout.PENDING]


def measure(bench: Bench, ingests: int) -> None:

    names = [f"retained_{d}" for d in range(DATASETS)]
    started = time.perf_counter()
    halfway = commit_ingests(bench, names, ingests)
    rate = ingests / (time.perf_counter() - started)
    with dg.DagsterInstance.from_config(str(bench.settings.resolved_dagster_home)) as instance:
        wait_applied(instance, names, ingests)
        rows = dataset_rows(bench, names)
        before = State.of(bench, instance)
        print(f"  {ingests} ingests committed at {rate:.0f}/s; before: {before}")
        # Pass 1: the window starts halfway; objects are kept for the window too.
        half = run_pass(bench, instance, halfway + RETENTION, grace=RETENTION)
        middle = State.of(bench, instance)
        checked = as_of_every_retained_version(bench, instance, names)
        assert dataset_rows(bench, names) == rows, "a pass changed a dataset's rows"
        print(f"  pass 1 (window from halfway) {half}: {middle}; as_of of {checked} versions")
        # Pass 2: every ingest is past the window.
        later = datetime.now(UTC) + RETENTION + timedelta(days=1)
        full = run_pass(bench, instance, later, grace=timedelta(minutes=60))
        after = State.of(bench, instance)
        assert dataset_rows(bench, names) == rows, "a pass changed a dataset's rows"
        print(f"  pass 2 (all past the window) {full}: {after}")
    datasets = len(datasets_with_log(bench.store))
    bounded = after.objects <= 6 * datasets and after.runs <= datasets + 1
    bench.report.add(
        Figure(
            "retention: protocol objects and Dagster storage after small ingests and a pass",
            f"{after.objects} protocol objects ({after.object_bytes / 1024:.0f} KiB), "
            f"{after.runs} runs, Dagster storage {after.dagster_bytes / 2**20:.1f} MiB",
            f"before the passes: {before.objects} objects "
            f"({before.object_bytes / 1024:.0f} KiB), {before.runs} runs, "
            f"{before.dagster_bytes / 2**20:.1f} MiB; window from halfway: "
            f"{middle.objects} objects, {middle.runs} runs",
            f"O(retained versions): at most 6 objects and 1 run per dataset ({datasets})",
            bounded,
            f"{ingests} one-row ingests to {DATASETS} datasets; bucket-wide and instance-wide "
            f"counts; rows unchanged; as_of answered for all {checked} versions the first "
            "pass retained",
        )
    )


def commit_ingests(bench: Bench, names: list[str], ingests: int) -> datetime:
    """Commit `ingests` one-row files across `names`; returns when half were committed."""
    tails = LogTails()

    def land(i: int) -> None:
        name = names[i % len(names)]
        Landing(bench.store, name, tails=tails).finish(f"n\n{i}\n".encode())

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(land, range(ingests // 2)))
        halfway = datetime.now(UTC)
        list(pool.map(land, range(ingests // 2, ingests)))
    return halfway


def wait_applied(instance: dg.DagsterInstance, names: list[str], ingests: int) -> None:
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline:
        manifests = latest_manifests(instance)
        if sum(manifests[n].applied_through for n in names if n in manifests) >= ingests:
            return
        time.sleep(2)
    raise TimeoutError("the runs did not apply every ingest within 30 minutes")


def run_pass(bench: Bench, instance: dg.DagsterInstance, now: datetime, grace: timedelta) -> Pruned:
    """What `cleanup_job` does, at `now`."""
    store = bench.store
    plan = plan_cleanup(instance, store, now=now, grace=grace, retention=RETENTION)
    pruned = prune_history(instance, store, now, RETENTION)
    settings = bench.settings
    apply_cleanup(plan, store, IcebergTables(settings.iceberg_catalog_url, settings.s3()))
    return pruned


def dataset_rows(bench: Bench, names: list[str]) -> list[tuple[int, int]]:
    union = " UNION ALL ".join(f"SELECT '{n}' AS d, n FROM {n}" for n in names)
    sql = f"SELECT count(*) AS c, sum(n) AS s FROM ({union}) GROUP BY d ORDER BY d"
    answer = bench.http.post(f"{bench.api}/v1/sql", json={"sql": sql})
    answer.raise_for_status()
    return [(r["c"], r["s"]) for r in answer.json()["rows"]]


def as_of_every_retained_version(
    bench: Bench, instance: dg.DagsterInstance, names: list[str]
) -> int:
    checked = 0
    for name in names:
        history, _ = manifest_history(instance, name, limit=1000)
        for manifest in history:
            answer = bench.http.post(
                f"{bench.api}/v1/sql",
                json={
                    "sql": f"SELECT count(*) AS c FROM {name}",
                    "as_of": {name: manifest.version},
                },
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["rows"] == [{"c": manifest.row_count}], (name, manifest.version)
            checked += 1
    return checked


class State:
    """The protocol objects in the bucket, and Dagster's runs and storage."""

    def __init__(self, objects: int, object_bytes: int, runs: int, dagster_bytes: int) -> None:
        self.objects, self.object_bytes = objects, object_bytes
        self.runs, self.dagster_bytes = runs, dagster_bytes

    @classmethod
    def of(cls, bench: Bench, instance: dg.DagsterInstance) -> State:
        objects = size = 0
        paginator = bench.store.client.get_paginator("list_objects_v2")
        for prefix in PROTOCOL:
            for page in paginator.paginate(Bucket=bench.store.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    objects += 1
                    size += item["Size"]
        home = Path(bench.settings.resolved_dagster_home)
        stored = sum(p.stat().st_size for p in home.rglob("*.db") if p.is_file())
        return cls(objects, size, instance.get_runs_count(), stored)

    def __str__(self) -> str:
        return (
            f"{self.objects} protocol objects ({self.object_bytes / 1024:.0f} KiB), "
            f"{self.runs} runs, Dagster storage {self.dagster_bytes / 2**20:.1f} MiB"
        )
