"""The benchmark harness, small: it must run end to end and report every figure.
No thresholds: timings on a shared machine are not test results."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

FIGURES = [
    "upload -> queryable",
    "run start-up: queued -> the asset's first log line",
    "run start-up of the upload -> queryable runs",
    "conversion CSV in S3 -> Parquet in S3, 5,000 rows",
    "conversion CSV in S3 -> Parquet in S3, 10,000 rows",
    "upload throughput through /v1/ingest",
    "/v1/sql median latency, count(*)",
    "/v1/sql median latency, group-by",
    "/v1/sql throughput, 8 concurrent clients",
    "API peak memory during",
    "scaling: upload -> materialized",
    "API memory above idle, 6 queries with 1 GB-wide answers",
    "API memory above idle, 16 concurrent hostile /v1/sql queries",
    "2-row append to a",
    "latest manifest + a page of 10 versions, 200 versions vs 10",
    "small files: 16 x 100 rows, 8 clients, 1 dataset(s)",
    "small files: uploads acknowledged, 1 dataset(s)",
    "small files: 16 x 100 rows, 8 clients, 8 dataset(s)",
    "small files: uploads acknowledged, 8 dataset(s)",
    "small files: CPU of the whole stack to apply 16 committed 100-row files",
    "GET /v1/catalog, ",
    "TPC-H SF 0.01, 22 queries through /v1/sql",
    "/v1/sql overhead over DuckDB, count(*) on lineitem",
    "/v1/sql overhead over DuckDB, group-by on lineitem",
    "Iceberg commit per version, 5,000-row appends",
    "Iceberg commit of a 1-object append at 30 appended objects",
    "/v1/sql count(*) median latency with a token",
    "ingest acknowledgements/s with a token",
    "audit trail: cost per request",
    "a reader's 403 for a dataset outside its grants",
    "/v1/sql count(*) median latency with per-token limits and metrics",
    "Postgres endpoint median latency, count(*) through psycopg",
    "Postgres endpoint throughput, 8 concurrent psycopg clients",
    "Postgres endpoint memory above idle, 200,000 rows",
    "TPC-H SF 0.01, 22 queries through psycopg",
    "merge 1,000 rows (half updates, half inserts) into 20,000 clustered by key",
    "delete one key from 20,000 rows",
    "retention: protocol objects and Dagster storage after small ingests and a pass",
]


def test_the_small_benchmark_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    subprocess.run(
        [sys.executable, "-m", "bench.run", "--small", "--out", str(out)], check=True, timeout=900
    )
    report = out.read_text()
    rows = [line for line in report.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == len(FIGURES) + 1  # and the header
    for figure in FIGURES:
        assert any(row.startswith(f"| {figure}") for row in rows), figure
    for row in rows[1:]:
        assert row.rstrip().endswith(("| yes |", "| **no** |", "| - |")), row
