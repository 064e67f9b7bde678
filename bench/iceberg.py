"""What keeping every dataset an Iceberg table costs, on the real stack this script starts.

    python -m bench.iceberg            # 500,000-row uploads, a 1,000-object table (~4 min)
    python -m bench.iceberg --small    # the fast variant

- **Share of upload -> queryable.** Each run records how long its Iceberg commit took
  (`iceberg_commit_ms` in the materialization metadata); the same upload is timed from the
  first byte sent until `/v1/sql` returns its rows. Target: the commit is at most 10% of it.
- **At 1,000 appended objects.** The commit of a version that adds one object, as the table
  grows to 1,000 live data files and 1,000 snapshots with no compaction and no expiry (the
  writer merges small objects past 64, and cleanup expires snapshots, so real tables stay
  smaller: this is the worst case).

`measure(stack, report, size)` adds the figures to `bench.run`'s report on a running stack.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import httpx

from bench.report import Figure, Report
from devstack.ports import free_port
from devstack.sample_data import write_sample_csv
from devstack.stack import Stack
from lakehouse.duck import attach_s3, sql_string
from lakehouse.formats.csv.types import Column
from lakehouse.manifest import DataObject, Manifest
from lakehouse.publish.catalog import manifest_history
from lakehouse.publish.iceberg import IcebergTables
from lakehouse.settings import Settings
from lakehouse.store import ObjectStore
from lakehouse.store.layout import dataset_prefix
from lakehouse_assets.assets import ICEBERG_COMMIT_MS


@dataclass(frozen=True)
class IcebergSize:
    rows: int  # rows of each upload
    uploads: int  # versions timed from upload to queryable
    objects: int  # appended objects in the growing table


QUERYABLE_TIMEOUT = 600
FULL = IcebergSize(rows=500_000, uploads=5, objects=1000)
SMALL = IcebergSize(rows=5_000, uploads=3, objects=30)


def measure(stack: Stack, report: Report, size: IcebergSize, workdir: Path) -> None:
    commit_share(stack, report, size, workdir)
    commit_at_scale(stack.settings, report, size.objects)


def commit_share(stack: Stack, report: Report, size: IcebergSize, workdir: Path) -> None:
    """Upload a workers file `size.uploads` times (appends to one dataset, other rows each
    time: the same bytes would be a duplicate); per version, the Iceberg commit's time and
    upload -> queryable."""
    name = "iceberg_share"
    files = [
        write_sample_csv(workdir / f"iceberg_workers_{i}.csv", rows=size.rows, seed=i)
        for i in range(1, size.uploads + 1)
    ]
    api = stack.api_url
    totals: list[float] = []
    auth = {"authorization": f"Bearer {stack.admin_token}"}
    with httpx.Client(timeout=900, headers=auth) as http:
        for i, csv in enumerate(files, start=1):
            started = time.perf_counter()
            response = http.post(
                f"{api}/v1/ingest", params={"name": name}, content=csv.read_bytes()
            )
            response.raise_for_status()
            while not _queryable(http, api, name, size.rows * i):
                if time.perf_counter() - started > QUERYABLE_TIMEOUT:
                    raise RuntimeError(f"{name} did not reach {size.rows * i:,} rows")
                time.sleep(0.05)
            totals.append(time.perf_counter() - started)
    commits = _commit_ms(stack.settings, name)
    shares = [c / 1000 / t for c, t in zip(commits, totals, strict=True)]
    share = statistics.median(shares)
    report.add(
        Figure(
            f"Iceberg commit per version, {size.rows:,}-row appends (median of {len(commits)})",
            f"{statistics.median(commits):.0f} ms (runs: {', '.join(f'{c:.0f}' for c in commits)})",
            f"upload -> queryable, same runs: {statistics.median(totals):.2f} s",
            "<= 10% of upload -> queryable",
            share <= 0.10,
            note=f"share {share:.1%} (runs: {', '.join(f'{s:.1%}' for s in shares)})",
        )
    )


def _queryable(http: httpx.Client, api: str, name: str, rows: int) -> bool:
    response = http.post(f"{api}/v1/sql", json={"sql": f"SELECT count(*) AS n FROM {name}"})
    return response.status_code == 200 and response.json()["rows"] == [{"n": rows}]


def _commit_ms(settings: Settings, name: str) -> list[float]:
    """The Iceberg commit time each version of `name` recorded, oldest first."""
    with dg.DagsterInstance.from_config(str(settings.resolved_dagster_home)) as instance:
        history, _ = manifest_history(instance, name, limit=1000)
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(dg.AssetKey("dataset"), asset_partitions=[name]), limit=1000
        ).records
    assert len(records) == len(history)
    found = []
    for record in reversed(records):
        materialization = record.event_log_entry.asset_materialization
        assert materialization is not None
        found.append(float(materialization.metadata[ICEBERG_COMMIT_MS].value))  # type: ignore[arg-type]
    return found


def commit_at_scale(settings: Settings, report: Report, objects: int) -> None:
    """Commit `objects` versions that each add one small object, timing each commit."""
    name = "iceberg_scale"
    store = ObjectStore(settings.s3())
    tables = IcebergTables(settings.iceberg_catalog_url, settings.s3())
    keys = _write_objects(settings, name, objects)
    now = datetime.now(UTC)
    manifest = Manifest(
        dataset_id="bench",
        name=name,
        version=0,
        schema_fingerprint="bench",
        columns=[Column("n", "BIGINT", ""), Column("label", "VARCHAR", "")],
        location=store.url(dataset_prefix(name)),
        objects=[],
        row_count=0,
        bytes=0,
        created_at=now,
        updated_at=now,
    )
    times = []
    for key in keys:
        added = DataObject(key=key, bytes=store.size(key), rows=10)
        manifest = manifest.next_version(objects=[*manifest.objects, added])
        times.append(tables.commit(manifest).seconds)
    assert not tables.verify(manifest)
    window = max(1, min(50, objects // 10))
    first, last = statistics.median(times[:window]), statistics.median(times[-window:])
    report.add(
        Figure(
            f"Iceberg commit of a 1-object append at {objects:,} appended objects "
            f"(median of the last {window})",
            f"{last * 1000:.0f} ms (max {max(times[-window:]) * 1000:.0f} ms)",
            f"the same commit on a new table (first {window}): {first * 1000:.0f} ms",
            "-",
            None,
            note=f"{objects:,} live data files and snapshots, no compaction, no expiry",
        )
    )


def _write_objects(settings: Settings, name: str, count: int) -> list[str]:
    """`count` small Parquet objects (10 rows each) under the dataset's prefix."""
    import duckdb

    con = duckdb.connect()
    attach_s3(con, settings.s3())
    prefix = f"{dataset_prefix(name)}bench"
    con.execute(
        f"COPY (SELECT i // 10 AS part, i::BIGINT AS n, 'row ' || i AS label "
        f"FROM range({count * 10}) t(i)) TO {sql_string(f's3://{settings.s3_bucket}/{prefix}')} "
        "(FORMAT parquet, PARTITION_BY (part), WRITE_PARTITION_COLUMNS false)"
    )
    return sorted(
        ObjectStore(settings.s3()).list_keys(prefix + "/"),
        key=lambda k: int(k.split("part=")[1].split("/")[0]),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="fast variant")
    args = parser.parse_args()
    size = SMALL if args.small else FULL
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    with tempfile.TemporaryDirectory(prefix="lakehouse-bench-iceberg-") as tmp:
        stack = Stack(
            Settings(
                state_dir=Path(tmp) / "stack",
                s3_endpoint=f"http://127.0.0.1:{free_port()}",
                api_port=free_port(),
                webserver_port=free_port(),
                broker_port=free_port(),
                pg_port=free_port(),
            ),
            with_webserver=True,  # as `make up`: the API pushes each ingest's run
        )
        stack.start(progress=lambda part: print(f"starting {part} ..."))
        try:
            measure(stack, Report(), size, Path(tmp))
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
