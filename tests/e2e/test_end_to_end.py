"""The whole path on real processes: S3 server, Dagster daemon and webserver, API.

Upload over HTTP -> the sensor starts the run (no manual step) -> Parquet in the bucket
-> catalog -> SQL; then the webserver stops (the API must not need it), then every
process stops and starts again (nothing may change).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow.dataset as pads
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pyarrow import fs

from devstack.stack import Stack
from lakehouse.duck import attach_s3
from lakehouse.runs import LAUNCHED_BY_TAG, PARTITION_TAG, REQUEST_ID_TAG, UPLOAD_TAG
from lakehouse.settings import Settings
from tests.e2e.conftest import file_chunks, http, sql_rows, start_stack, wait_for_version

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

GROUP_BY = "SELECT role, count(*) FROM workers_500k WHERE state='IL' GROUP BY role ORDER BY role"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = start_stack(tmp_path_factory.mktemp("stack"), webserver=True)
    yield stack
    stack.stop()


def expected_from_csv(csv: Path) -> tuple[int, list[dict]]:
    con = duckdb.connect()
    count = con.sql(f"SELECT count(*) FROM read_csv('{csv}')").fetchone()
    rows = con.sql(GROUP_BY.replace("workers_500k", f"read_csv('{csv}')")).fetchall()
    assert count is not None
    return count[0], [{"role": role, "count_star()": n} for role, n in rows]


def test_workers_500k_upload_to_query_and_restart(stack: Stack, workers_csv: Path) -> None:
    api = stack.api_url
    response = http.post(
        f"{api}/v1/ingest",
        params={"name": "workers_500k"},
        content=file_chunks(workers_csv),
        # Its length declared (a chunked body's run is asked for only at its commit).
        headers={"content-type": "text/csv", "content-length": str(workers_csv.stat().st_size)},
        timeout=300,
    )
    assert response.status_code == 202, response.text
    assert response.json()["bytes"] == workers_csv.stat().st_size
    request_id = response.headers["x-request-id"]
    assert response.json()["request_id"] == request_id

    manifest = wait_for_version(api, "workers_500k", 1)
    assert manifest["row_count"] == 500_000
    # With the webserver up, the API pushed a run itself, through Dagster's GraphQL client
    # (the sensor may add one if it ticks between the commit and the push: a no-op then).
    with dg.DagsterInstance.from_config(str(stack.settings.resolved_dagster_home)) as instance:
        runs = instance.get_runs(dg.RunsFilter(tags={PARTITION_TAG: "workers_500k"}))
    assert "api" in [r.tags[LAUNCHED_BY_TAG] for r in runs]
    # The same request id: its answer, its receipt, the run it pushed, its log lines.
    assert request_id in [r.tags.get(REQUEST_ID_TAG) for r in runs]
    # Its run is asked for as its last bytes near (at this speed; never for a slow body),
    # and waits for it to commit (lakehouse.ingest.underway): the version's object is then
    # that run's.
    ingest_id = response.json()["ingest_id"]
    pushed = [r.run_id.replace("-", "")[:12] for r in runs if r.tags.get(UPLOAD_TAG) == ingest_id]
    keys = [o["key"] for o in manifest["objects"]]
    assert keys
    if pushed:
        assert all(any(run in key for run in pushed) for key in keys), (pushed, keys)
    assert http.get(f"{api}/v1/ingest/{response.json()['ingest_id']}").json()["request_id"] == (
        request_id
    )
    assert_logged_in_json(stack, request_id)
    assert_metrics_show_the_upload(stack, workers_csv.stat().st_size)
    assert {c["name"]: c["type"] for c in manifest["columns"]} == {
        "worker_id": "BIGINT", "first_name": "VARCHAR", "last_name": "VARCHAR",
        "email": "VARCHAR", "state": "VARCHAR", "city": "VARCHAR", "role": "VARCHAR",
        "agency": "VARCHAR", "hourly_rate": "DECIMAL(18,2)", "weekly_hours": "BIGINT",
        "is_active": "BOOLEAN", "hire_date": "DATE", "last_shift_at": "TIMESTAMP",
        "rating": "DECIMAL(18,1)", "years_experience": "BIGINT", "notes": "VARCHAR",
    }  # fmt: skip

    count, by_role = expected_from_csv(workers_csv)
    assert count == 500_000
    assert sql_rows(api, "SELECT count(*) FROM workers_500k") == [{"count_star()": 500_000}]
    assert sql_rows(api, GROUP_BY) == by_role

    assert_plain_readers_see_the_parquet(stack.settings, manifest)

    # The API reads the instance, not the UI: it answers with the webserver down.
    stack.stop("dagster-webserver")
    assert http.get(f"{api}/v1/catalog/workers_500k", timeout=10).json() == manifest
    assert sql_rows(api, GROUP_BY) == by_role

    stack.stop()
    stack.start()
    assert http.get(f"{api}/v1/catalog/workers_500k", timeout=10).json() == manifest
    assert sql_rows(api, "SELECT count(*) FROM workers_500k") == [{"count_star()": 500_000}]
    assert sql_rows(api, GROUP_BY) == by_role


def assert_logged_in_json(stack: Stack, request_id: str) -> None:
    lines = [
        json.loads(line)
        for line in (stack.state_dir / "logs" / "api.log").read_text().splitlines()
        if line.startswith("{")
    ]
    access = [a for a in lines if a["logger"] == "lakehouse.access"]
    upload = [a for a in access if a["request_id"] == request_id]
    assert [(a["method"], a["path"], a["status"]) for a in upload] == [("POST", "/v1/ingest", 202)]
    assert upload[0]["token"] == "local-admin" and upload[0]["bytes_in"] > 0


def assert_metrics_show_the_upload(stack: Stack, size: int) -> None:
    """`curl /metrics` with an admin token: every figure the README lists is there."""
    assert http.get(f"{stack.api_url}/metrics", headers={"authorization": ""}).status_code == 401
    text = http.get(f"{stack.api_url}/metrics").text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for m in text_string_to_metric_families(text)
        for s in m.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    assert (
        value("lakehouse_http_requests_total", route="/v1/ingest", method="POST", status="202") >= 1
    )
    assert value("lakehouse_upload_bytes_total") >= size
    assert value("lakehouse_upload_slots_busy") == 0
    assert value("lakehouse_query_processes") >= 1  # both workers' processes, summed
    assert value("lakehouse_ingests_pending", dataset="workers_500k") == 0
    assert value("lakehouse_run_lag_seconds", dataset="workers_500k") > 0
    for name in (
        "lakehouse_http_request_duration_seconds_bucket",
        "lakehouse_ingest_oldest_pending_age_seconds",
        "lakehouse_query_processes_killed_total",
        "lakehouse_retention_deleted_total",
        "lakehouse_retention_last_pass_timestamp_seconds",
    ):
        assert any(key[0] == name for key in samples), name


def assert_plain_readers_see_the_parquet(settings: Settings, manifest: dict) -> None:
    urls = [f"s3://{settings.s3_bucket}/{o['key']}" for o in manifest["objects"]]
    con = duckdb.connect()
    attach_s3(con, settings.s3())
    assert con.execute("SELECT count(*) FROM read_parquet(?)", [urls]).fetchone() == (500_000,)

    s3 = fs.S3FileSystem(
        access_key=settings.s3_access_key,
        secret_key=settings.s3_secret_key,
        endpoint_override=settings.s3_endpoint,
        region=settings.s3_region,
    )
    paths = [url.removeprefix("s3://") for url in urls]
    assert pads.dataset(paths, format="parquet", filesystem=s3).count_rows() == 500_000


def test_multipart_upload_is_materialized_by_the_sensor(stack: Stack) -> None:
    api = stack.api_url
    response = http.post(
        f"{api}/v1/ingest",
        params={"name": "shifts"},
        files={"file": ("shifts.csv", b"shift_id,worker_id,hours\n1,10,8.5\n2,11,4\n")},
        timeout=60,
    )
    assert response.status_code == 202, response.text
    manifest = wait_for_version(api, "shifts", 1)
    assert manifest["added_ingest_ids"] == [response.json()["ingest_id"]]
    assert sql_rows(api, "SELECT sum(hours) AS h FROM shifts") == [{"h": "12.5"}]  # exact
