"""/v1/sql under attack: every refusal is a 400 that names the problem and changes nothing."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.query.process import Job
from api.query.processes import QueryProcess
from api.query.sandbox import SandboxConfig
from lakehouse.settings import Settings, get_settings
from lakehouse.store import ObjectStore
from tests.conftest import isolated_settings
from tests.helpers import data_keys, materialize_csv
from tests.integration.api.conftest import admin_headers

pytestmark = pytest.mark.integration

PEOPLE = b"id,name\n1,Ann\n2,Bo\n"


@pytest.fixture(scope="module")
def people_settings(
    s3_server: Settings, tmp_path_factory: pytest.TempPathFactory, dagster_home_template: Path
) -> Settings:
    """One materialized dataset shared by the module's tests (each checks it is unchanged)."""
    settings = isolated_settings(
        s3_server, tmp_path_factory.mktemp("safety"), dagster_home_template
    )
    materialize_csv(settings, "people", PEOPLE)
    return settings


@pytest.fixture
def people(people_settings: Settings) -> Iterator[TestClient]:
    store = ObjectStore(people_settings.s3())
    objects_before = data_keys(store)
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: people_settings
    client = TestClient(app, headers=admin_headers(people_settings))
    yield client
    # Whatever was tried, the dataset and the bucket are as they were.
    answer = client.post("/v1/sql", json={"sql": "SELECT count(*) AS n FROM people"}).json()
    assert answer["rows"] == [{"n": 2}]
    assert answer["datasets"] == {"people": 1}
    assert data_keys(store) == objects_before


def refused(client: TestClient, sql: str) -> str:
    response = client.post("/v1/sql", json={"sql": sql})
    assert response.status_code == 400, response.text
    return response.json()["detail"]


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("SELECT 1; SELECT 2", "exactly one statement"),
        ("SELECT * FROM people; DROP VIEW people", "exactly one statement"),
        ("WITH x AS (SELECT 3, 'Cy') INSERT INTO people SELECT * FROM x", "not INSERT"),
        ("WITH d AS (DELETE FROM people RETURNING *) SELECT * FROM d", "CTE needs a SELECT"),
        ("INSERT INTO people VALUES (3, 'Cy')", "not INSERT"),
        ("CREATE TABLE t AS SELECT 1", "not CREATE"),
        ("DROP VIEW people", "not DROP"),
        ("COPY (SELECT * FROM people) TO '/tmp/stolen.csv'", "not COPY"),
        ("ATTACH '/tmp/other.db' AS other", "not ATTACH"),
        ("INSTALL httpfs", "not LOAD"),
        ("LOAD httpfs", "not LOAD"),
        ("SET threads = 1", "not SET"),
        ("RESET threads", "not SET"),
        ("PRAGMA enable_profiling", "not PRAGMA"),
        ("PRAGMA version", "no PRAGMA"),
        ("PRAGMA threads = 1", "not"),
        ("SELECT * FROM read_csv('/etc/passwd')", "read_csv() is not allowed"),
        ("FROM '/etc/passwd'", "reading files is not allowed"),
        ("SELECT * FROM read_text('/etc/hostname')", "read_text() is not allowed"),
        ("SELECT * FROM glob('/etc/*')", "glob() is not allowed"),
        ("SELECT * FROM read_csv('http://169.254.169.254/latest/meta-data')", "not allowed"),
        ("SELECT * FROM 'http://169.254.169.254/latest/meta-data'", "not allowed"),
        ("SELECT * FROM read_parquet('s3://lakehouse/landing/people/x.csv')", "not allowed"),
        ("SELECT * FROM duckdb_secrets()", "duckdb_secrets() is not allowed"),
        ("SELECT * FROM duckdb_settings()", "not allowed"),
        ("SELECT current_setting('s3_secret_access_key')", "current_setting() is not allowed"),
        ("SELECT name FROM people WHERE current_setting('s3_access_key_id') = ''", "not allowed"),
        ("SELECT * FROM information_schema.tables", "another schema"),
        ("SELECT * FROM (SELECT * FROM read_csv('/etc/passwd'))", "not allowed"),
    ],
)
def test_refused_statements(people: TestClient, sql: str, why: str) -> None:
    assert why in refused(people, sql)
    assert not Path("/tmp/stolen.csv").exists()


def test_the_query_processes_duckdb_is_locked_down_behind_the_guard(
    people: TestClient, people_settings: Settings
) -> None:
    from api.deps import get_engine

    settings = people_settings
    pool = get_engine(settings).pool
    process = pool.acquire()  # the second line of defence, probed directly
    try:
        for sql in (
            "SET threads = 1",
            "SELECT * FROM read_csv('/etc/passwd')",
            f"SELECT * FROM read_csv('s3://{settings.s3_bucket}/landing/x.csv')",
            "COPY (SELECT 1) TO '/tmp/stolen.csv'",
        ):
            process.send(
                Job(
                    sql=sql,
                    views={},
                    params=[],
                    describe=False,
                    format="json",
                    max_rows=10,
                    max_bytes=1024,
                    timeout=30,
                )
            )
            kind, _, message, _ = process.receive(60)
            assert kind == "error" and re.search("Permission|configuration", message), message
    finally:
        pool.release(process)
    assert not Path("/tmp/stolen.csv").exists()


def test_a_runaway_query_is_stopped_and_others_keep_answering(
    settings: Settings, store: ObjectStore
) -> None:
    quick = settings.model_copy(update={"sql_timeout_seconds": 1.5})
    materialize_csv(quick, "people", PEOPLE)
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: quick
    with TestClient(app, headers=admin_headers(quick)) as client:
        answers: list[int] = []

        def others() -> None:
            for _ in range(3):
                ok = client.post("/v1/sql", json={"sql": "SELECT count(*) FROM people"})
                answers.append(ok.status_code)

        thread = threading.Thread(target=others)
        thread.start()
        # 10^16 rows: it never ends by itself, so a 504 means it was interrupted.
        runaway = client.post(
            "/v1/sql",
            json={"sql": "SELECT count(*) FROM range(100000000) a, range(100000000) b"},
        )
        thread.join()
    assert runaway.status_code == 504
    assert "longer than 1.5 s" in runaway.json()["detail"]
    assert answers == [200, 200, 200]  # the others were answered, whatever the timing


def test_rows_past_the_servers_cap_are_never_returned(settings: Settings) -> None:
    capped = settings.model_copy(update={"sql_default_rows": 3, "sql_max_rows": 5})
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: capped
    with TestClient(app, headers=admin_headers(capped)) as client:
        default = client.post("/v1/sql", json={"sql": "SELECT * FROM range(10)"}).json()
        asked = client.post("/v1/sql", json={"sql": "SELECT * FROM range(10)", "max_rows": 100})
    assert (default["row_count"], default["truncated"]) == (3, True)
    assert (asked.json()["row_count"], asked.json()["truncated"]) == (5, True)


def test_a_query_process_holds_the_read_only_key_and_nothing_else(settings: Settings) -> None:
    """Least privilege: the process that runs untrusted SQL gets the read-only key and its
    limits over its socket, and none of the API's environment: not the read-write key, the
    broker's password or the database's URL."""
    secret_settings = settings.model_copy(
        update={
            "broker_password": "broker-pw-xyz",
            "postgres_url": "postgresql://u:db-pw-xyz@h/d",
            "s3_query_access_key": "reader-key",
            "s3_query_secret_key": "reader-secret-xyz",
        }
    )
    sent = SandboxConfig.of(secret_settings).model_dump_json()
    assert secret_settings.s3_query_secret_key in sent
    for secret in (secret_settings.s3_secret_key, "broker-pw-xyz", "db-pw-xyz"):
        assert secret not in sent
    os.environ["LAKEHOUSE_BROKER_PASSWORD"] = "broker-pw-xyz"  # as `lakehouse up` sets it
    try:
        process = QueryProcess(secret_settings).ready()
    finally:
        del os.environ["LAKEHOUSE_BROKER_PASSWORD"]
    try:
        environ = Path(f"/proc/{process.popen.pid}/environ").read_bytes()
        cmdline = Path(f"/proc/{process.popen.pid}/cmdline").read_bytes()
        assert b"LAKEHOUSE_" not in environ and b"DAGSTER" not in environ
        for secret in (secret_settings.s3_secret_key, "broker-pw-xyz", "db-pw-xyz"):
            assert secret.encode() not in environ + cmdline
    finally:
        process.kill()
