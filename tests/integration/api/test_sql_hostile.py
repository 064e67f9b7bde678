"""/v1/sql under hostile input: each answer is a 4xx (or 503/504) saying what to do, or a
well-formed 200; memory stays bounded; nothing stored changes."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from api.deps import close_engines, get_engine
from api.main import create_app
from api.query.sandbox import LOST_ERROR
from lakehouse.auth.grants import EVERYTHING
from lakehouse.settings import Settings, get_settings
from lakehouse.store import ObjectStore
from tests.conftest import isolated_settings
from tests.helpers import data_keys, materialize_csv
from tests.integration.api.conftest import admin_headers

pytestmark = pytest.mark.integration

PEOPLE = b"id,name\n1,Ann\n2,Bo\n"
MIB = 1024 * 1024
# The limits these tests run under: small, so that passing them is quick.
LIMITS = {
    "sql_process_memory_mb": 768,
    "duckdb_memory_limit": "256MB",
    "sql_max_concurrent": 2,
    "sql_timeout_seconds": 20,
}


@pytest.fixture(scope="module")
def people_settings(
    s3_server: Settings, tmp_path_factory: pytest.TempPathFactory, dagster_home_template: Path
) -> Settings:
    settings = isolated_settings(
        s3_server, tmp_path_factory.mktemp("hostile"), dagster_home_template
    )
    materialize_csv(settings, "people", PEOPLE)
    return settings.model_copy(update=LIMITS)


def client_for(settings: Settings) -> TestClient:
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: settings
    return TestClient(app, headers=admin_headers(settings))


@pytest.fixture
def unchanged(people_settings: Settings) -> Iterator[Settings]:
    """Whatever a test sends, the dataset and the bucket are as they were."""
    store = ObjectStore(people_settings.s3())
    objects_before = data_keys(store)
    yield people_settings
    answer = client_for(people_settings).post(
        "/v1/sql", json={"sql": "SELECT count(*) AS n FROM people"}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["rows"] == [{"n": 2}]
    assert answer.json()["datasets"] == {"people": 1}
    assert data_keys(store) == objects_before


def rss_of_this_process() -> int:
    return psutil.Process(os.getpid()).memory_info().rss


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("SELECT length(repeat('x', 3000000000))", "repeat() would build a value of"),
        ("SELECT list_sum(range(300000000))", "range() would build a list of 300,000,000"),
    ],
    ids=["repeat-3e9", "list_sum-range-3e8"],
)
def test_a_huge_literal_value_is_refused_before_it_runs(
    unchanged: Settings, sql: str, why: str
) -> None:
    response = client_for(unchanged).post("/v1/sql", json={"sql": sql})
    assert response.status_code == 400, response.text
    assert why in response.json()["detail"]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT length(repeat('x', 3000000000 + i)) FROM range(1) t(i)",
        "SELECT list_sum(range(300000000 + i)) FROM range(1) t(i)",
        "SELECT length(string_agg(repeat('x', 1000), '')) FROM range(3000000)",
    ],
    ids=["repeat-3e9", "list_sum-range-3e8", "string_agg-3GB"],
)
def test_a_huge_computed_value_is_400_and_its_query_process_replaced(
    unchanged: Settings, sql: str
) -> None:
    client = client_for(unchanged)
    client.post("/v1/sql", json={"sql": "SELECT 1"})  # engine and query processes started
    processes = set(get_engine(unchanged).pool.pids())
    before = rss_of_this_process()
    response = client.post("/v1/sql", json={"sql": sql})
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert f"more memory than one query may use ({unchanged.query_memory.process_mb} MiB" in detail
    assert "filter or aggregate more" in detail
    assert rss_of_this_process() - before < 100 * MIB  # it grew elsewhere, and was stopped
    # Its query process was replaced: the address space it kept, which its cap counts,
    # would fail the next query there (in CI, a 300,000-row export after hostile load).
    assert client.post("/v1/sql", json={"sql": "SELECT 42 AS n"}).json()["rows"] == [{"n": 42}]
    after = set(get_engine(unchanged).pool.pids())
    assert len(after) == len(processes) and len(after - processes) == 1


def test_six_concurrent_wide_results_stay_bounded(unchanged: Settings) -> None:
    client = client_for(unchanged)
    client.post("/v1/sql", json={"sql": "SELECT 1"})
    engine = get_engine(unchanged)
    sql = "SELECT repeat('x', 10000000) AS s FROM range(100)"
    peak = {"api": 0, "query": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak["api"] = max(peak["api"], rss_of_this_process())
            for pid in engine.pool.pids():
                with contextlib.suppress(psutil.NoSuchProcess):
                    peak["query"] = max(peak["query"], psutil.Process(pid).memory_info().rss)

    sampler = threading.Thread(target=sample)
    sampler.start()
    before = rss_of_this_process()
    try:
        with ThreadPoolExecutor(6) as pool:
            responses = list(
                pool.map(lambda _: client.post("/v1/sql", json={"sql": sql}), range(6))
            )
    finally:
        done.set()
        sampler.join()
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {200, 400, 503}, [r.text[:200] for r in responses]
    for response in responses:
        if response.status_code == 200:  # cut at the byte cap, whole rows only
            answer = response.json()
            assert answer["truncated"] is True and answer["row_count"] < 100
            assert len(response.content) <= unchanged.sql_max_result_bytes + 64 * 1024
        elif response.status_code == 503:
            assert response.headers["retry-after"] and "retry" in response.json()["detail"]
        else:
            assert "memory" in response.json()["detail"]
    # The API process holds at most the answers being built; a query process at most
    # its start-up size plus its cap.
    assert peak["api"] - before < 2 * 2 * unchanged.sql_max_result_bytes + 200 * MIB
    assert peak["query"] < (200 + unchanged.query_memory.process_mb) * MIB


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("SELECT * FROM pg_settings", "'pg_settings' is a system view, not a dataset"),
        ("SELECT name, setting FROM pg_catalog.pg_settings", "another schema"),
        ("SELECT * FROM duckdb_tables", "'duckdb_tables' is a system view"),
        ("SELECT * FROM sqlite_master", "is a system view"),
        ("SELECT * FROM information_schema.columns", "another schema"),
        ("WITH pg_settings AS (SELECT 1) SELECT * FROM pg_settings", "give the CTE another"),
        ("SELECT * FROM query('SELECT * FROM pg_settings')", "query() is not allowed"),
        ("SELECT * FROM query_table('pg_settings')", "query_table() is not allowed"),
        ("SELECT * FROM json_execute_serialized_sql('{}')", "not allowed"),
        ("SELECT json_deserialize_sql('x')", "json_deserialize_sql() is not allowed"),
        ("SELECT pg_get_viewdef('people')", "pg_get_viewdef() is not allowed"),
        ("SELECT getvariable('x')", "getvariable() is not allowed"),
        ("SELECT version()", "version() is not allowed"),
        ("SELECT nextval('s')", "nextval() is not allowed"),
        ("SELECT sleep_ms(100000)", "sleep_ms() is not allowed"),
        ("SELECT * FROM people_secret", "unknown dataset 'people_secret'"),
    ],
)
def test_only_datasets_and_allowed_functions(unchanged: Settings, sql: str, why: str) -> None:
    response = client_for(unchanged).post("/v1/sql", json={"sql": sql})
    assert response.status_code == 400, response.text
    assert why in response.json()["detail"]


def test_a_600_term_expression_is_answered(unchanged: Settings) -> None:
    sql = "SELECT " + "+".join(["1"] * 600) + " AS n"
    response = client_for(unchanged).post("/v1/sql", json={"sql": sql})
    assert response.status_code == 200, response.text
    assert response.json()["rows"] == [{"n": 600}]


def test_an_expression_past_duckdbs_depth_limit_is_400(unchanged: Settings) -> None:
    sql = "SELECT " + "abs(" * 3000 + "1" + ")" * 3000
    response = client_for(unchanged).post("/v1/sql", json={"sql": sql})
    assert response.status_code == 400, response.text
    assert "depth" in response.json()["detail"]


def test_a_statement_longer_than_the_limit_is_422(unchanged: Settings) -> None:
    response = client_for(unchanged).post("/v1/sql", json={"sql": "SELECT 1" + " " * 200_000})
    assert response.status_code == 422
    assert "100000 characters" in json.dumps(response.json()["detail"])


NESTED = (
    "SELECT 1 AS id, [1, 2] AS list, INTERVAL 3 MONTH AS span, {'a': 'x'} AS rec, "
    "'\\xAA'::BLOB AS raw"
)


def test_csv_writes_nested_values_as_json_and_intervals_as_text(unchanged: Settings) -> None:
    response = client_for(unchanged).post("/v1/sql", params={"format": "csv"}, json={"sql": NESTED})
    assert response.status_code == 200, response.text
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows == [
        ["id", "list", "span", "rec", "raw"],
        ["1", "[1,2]", "3 months", '{"a":"x"}', "\\xAA"],
    ]


def test_parquet_keeps_lists_and_writes_intervals_as_text(unchanged: Settings) -> None:
    response = client_for(unchanged).post(
        "/v1/sql", params={"format": "parquet"}, json={"sql": NESTED}
    )
    assert response.status_code == 200, response.text
    table = pq.read_table(io.BytesIO(response.content))
    assert table.to_pylist() == [
        {"id": 1, "list": [1, 2], "span": "3 months", "rec": {"a": "x"}, "raw": b"\xaa"}
    ]


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "arrow", "parquet"])
def test_a_streamed_answer_stops_at_the_byte_cap_with_a_notice(
    unchanged: Settings, fmt: str
) -> None:
    capped = unchanged.model_copy(update={"sql_max_export_bytes": 200_000})
    response = client_for(capped).post(
        "/v1/sql",
        params={"format": fmt},
        json={"sql": "SELECT i, 'row ' || i AS label FROM range(1000000) t(i)", "max_rows": 10**6},
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-lakehouse-byte-limit"] == "200000"
    notice, rows = _notice_and_rows(fmt, response.content)
    assert notice["truncated"] is True and notice["reason"] == "bytes"
    assert "LAKEHOUSE_SQL_MAX_EXPORT_BYTES" in notice["message"]
    assert 0 < rows < 1_000_000
    assert len(response.content) < 200_000 + 5 * MIB  # the cap, and at most one more piece


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "arrow", "parquet"])
def test_a_query_failing_after_its_first_rows_ends_the_stream_with_a_notice(
    unchanged: Settings, fmt: str
) -> None:
    sql = (
        "SELECT CASE WHEN i > 200000 THEN error('boom at ' || i) ELSE i END AS i "
        "FROM range(10000000) t(i)"
    )
    response = client_for(unchanged).post(
        "/v1/sql", params={"format": fmt}, json={"sql": sql, "max_rows": 10**6}
    )
    assert response.status_code == 200, response.text
    notice, rows = _notice_and_rows(fmt, response.content)
    assert notice["error"] == "query"  # never a timeout the watchdog did not call
    # DuckDB's own message, unless its race lost it (tests/unit/api/query/test_process.py).
    lost = LOST_ERROR.split("{")[0]
    assert "boom at" in notice["message"] or lost in notice["message"], notice
    assert 0 < rows <= 200_001


def test_a_query_failing_before_its_first_rows_is_400(unchanged: Settings) -> None:
    response = client_for(unchanged).post(
        "/v1/sql", params={"format": "csv"}, json={"sql": "SELECT error('boom') AS x"}
    )
    assert response.status_code == 400
    assert "boom" in response.json()["detail"]


def test_json_answers_stop_at_the_result_byte_cap(unchanged: Settings) -> None:
    capped = unchanged.model_copy(update={"sql_max_result_bytes": 10_000})
    response = client_for(capped).post(
        "/v1/sql", json={"sql": "SELECT repeat('x', 100) AS s FROM range(1000)", "max_rows": 1000}
    )
    assert response.status_code == 200
    answer = response.json()
    assert answer["truncated"] is True
    assert 0 < answer["row_count"] == len(answer["rows"]) < 100
    assert len(json.dumps(answer["rows"], separators=(",", ":"))) <= 10_000
    # Cut before the first row that would pass the cap: each is {"s":"x...x"} and a comma.
    assert answer["row_count"] == 10_000 // (len('{"s":""},') + 100)


def test_past_the_concurrency_limit_is_503_with_retry_after(unchanged: Settings) -> None:
    one = unchanged.model_copy(update={"sql_max_concurrent": 1, "sql_queue_seconds": 0})
    client = client_for(one)
    engine = get_engine(one)
    holding = engine.start("SELECT * FROM range(10000000)", {}, "csv", 10**7, reader=EVERYTHING)
    try:
        response = client.post("/v1/sql", json={"sql": "SELECT 1"})
    finally:
        holding.close()
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert "retry in a moment" in response.json()["detail"]
    assert client.post("/v1/sql", json={"sql": "SELECT 1 AS n"}).json()["rows"] == [{"n": 1}]


def test_a_new_version_is_served_while_a_long_query_runs(
    settings: Settings,
) -> None:
    """The catalog snapshot is swapped, not locked: a refresh never waits for a query."""
    slow = settings.model_copy(update={**LIMITS, "sql_timeout_seconds": 600})
    materialize_csv(slow, "people", PEOPLE)
    client = client_for(slow)
    assert client.post("/v1/sql", json={"sql": "SELECT 1"}).status_code == 200
    long_answer: dict[str, int] = {}

    def long_query() -> None:
        sql = "SELECT count(*) FROM people, range(100000000) a, range(100000000) b"
        long_answer["status"] = client.post("/v1/sql", json={"sql": sql}).status_code

    thread = threading.Thread(target=long_query)
    thread.start()
    try:
        materialize_csv(slow, "people", b"id,name\n3,Cy\n")
        answer = client.post("/v1/sql", json={"sql": "SELECT count(*) AS n FROM people"}).json()
        assert answer["rows"] == [{"n": 3}] and answer["datasets"] == {"people": 2}
    finally:
        close_engines()  # stops the long query's process
        thread.join()
    assert long_answer["status"] in (400, 504)


def _notice_and_rows(fmt: str, body: bytes) -> tuple[dict, int]:
    """The in-band notice of a streamed answer (docs/API.md, api/query/formats.py) and its
    row count."""
    if fmt == "csv":
        lines = body.decode().splitlines()
        assert lines[-1].startswith("# lakehouse: ")
        rows = list(csv.reader(lines[1:-1]))
        assert all(len(row) == len(lines[0].split(",")) for row in rows)  # whole rows only
        return json.loads(lines[-1].removeprefix("# lakehouse: ")), len(rows)
    if fmt == "ndjson":
        lines = [json.loads(line) for line in body.decode().splitlines()]
        return lines[-1]["@lakehouse"], len(lines) - 1
    if fmt == "arrow":
        reader = pa.ipc.open_stream(body)
        rows, notice = 0, None
        while True:
            try:
                batch, metadata = reader.read_next_batch_with_custom_metadata()
            except StopIteration:
                break
            rows += batch.num_rows
            if metadata and b"lakehouse" in metadata:
                notice = json.loads(metadata[b"lakehouse"])
        assert notice is not None
        return notice, rows
    parquet = pq.ParquetFile(io.BytesIO(body))
    metadata = parquet.metadata.metadata
    return json.loads(metadata[b"lakehouse"]), parquet.metadata.num_rows


@pytest.mark.parametrize(
    ("sql", "status"),
    [
        ("SELECT $1", 400),
        ("SELECT ?", 400),
        ("SELECT 1 AS n -- a comment", 200),
        ("/* a comment */ SELECT 1 AS n;", 200),
        ("SELECT chr(0) AS n", 200),
        ("SELECT 1e309 AS n", 200),
        ("SELECT CAST('x' AS INTEGER)", 400),
        ("SELECT * FROM people WHERE name = 'Ann' ORDER BY nope", 400),
        ("SELECT error('stop here')", 400),
    ],
)
@pytest.mark.parametrize("fmt", ["json", "csv", "arrow"])
def test_odd_statements_are_answered_or_400(
    unchanged: Settings, sql: str, status: int, fmt: str
) -> None:
    response = client_for(unchanged).post("/v1/sql", params={"format": fmt}, json={"sql": sql})
    assert response.status_code == status, response.text
    if status == 400:
        assert response.json()["detail"]
