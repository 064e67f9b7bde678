"""The Postgres endpoint keeps `/v1/sql`'s rules: a token as password (28P01 otherwise),
grants (an ungranted dataset leaves no trace in the catalog or in errors), read-only with
`/v1/sql`'s own messages, no DuckDB settings, time travel, the audit trail, a client's
cancel freeing its query process, and TLS when it has a certificate."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest

from devstack.instance import PROJECT_ROOT, settings_env
from devstack.ports import free_port
from devstack.readiness import tcp_open
from devstack.stack import Stack
from tests.e2e.conftest import http, sql_rows
from tests.e2e.postgres.conftest import PSQL, dsn, ingest, psql_env

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def connect(stack: Stack, token: str, **options: str) -> psycopg.Connection:
    return psycopg.connect(dsn(stack, token, **options), autocommit=True)


def test_a_bad_password_is_refused_as_postgres_refuses_it(stack: Stack) -> None:
    for password in ("lh_not-a-token", "x" * 10_000):
        with pytest.raises(psycopg.OperationalError) as refused:
            connect(stack, password)
        assert "password authentication failed" in str(refused.value)
    probe = subprocess.run(
        [str(PSQL), "-X", "-c", "SELECT 1"],
        env=psql_env(stack, "lh_wrong"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert probe.returncode != 0 and "password authentication failed" in probe.stderr


def test_sqlstate_of_a_bad_password_is_28P01(stack: Stack) -> None:
    import asyncio

    import asyncpg

    async def attempt() -> None:
        await asyncpg.connect(
            host="127.0.0.1", port=stack.settings.pg_port, user="x", password="lh_bad"
        )

    with pytest.raises(asyncpg.InvalidPasswordError) as refused:
        asyncio.run(attempt())
    assert refused.value.sqlstate == "28P01"


def test_an_ungranted_dataset_leaves_no_trace(stack: Stack, reader_token: str) -> None:
    with connect(stack, reader_token) as conn:
        tables = conn.execute("SELECT table_name FROM information_schema.tables").fetchall()
        classes = conn.execute("SELECT relname FROM pg_catalog.pg_class").fetchall()
        columns = conn.execute(
            "SELECT DISTINCT table_name FROM information_schema.columns"
        ).fetchall()
        errors = []
        for name in ("secret_sales", "no_such_dataset"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
                conn.execute(f"SELECT * FROM {name}")
            errors.append(str(refused.value).replace(name, "<name>"))
    assert sorted(tables) == sorted(classes) == [("typed",), ("typed__rejects",)]
    assert sorted(columns) == [("typed",), ("typed__rejects",)]
    assert errors[0] == errors[1]  # the same words whether it exists or not


def test_writes_and_settings_are_refused_with_v1_sqls_messages(
    stack: Stack, reader_token: str
) -> None:
    statements = {
        "DELETE FROM typed": psycopg.errors.ReadOnlySqlTransaction,
        "CREATE TABLE t (a int)": psycopg.errors.ReadOnlySqlTransaction,
        "SELECT * FROM read_csv('/etc/passwd')": psycopg.errors.InsufficientPrivilege,
        "SELECT * FROM duckdb_settings()": psycopg.errors.InsufficientPrivilege,
        "COPY typed FROM STDIN": psycopg.errors.ReadOnlySqlTransaction,
    }
    with connect(stack, stack.admin_token) as conn:
        for sql, kind in statements.items():
            with pytest.raises(kind) as refused:
                conn.execute(sql)
            if not sql.startswith("COPY"):
                answer = http.post(f"{stack.api_url}/v1/sql", json={"sql": sql}, timeout=30)
                assert answer.status_code in (400, 403), answer.text
                assert str(refused.value) == answer.json()["detail"]
        # DuckDB's own settings are never shown: the session's are.
        with pytest.raises(psycopg.errors.UndefinedObject):
            conn.execute("SELECT current_setting('memory_limit')")
        missing_ok = "SELECT current_setting('memory_limit', true)"
        assert conn.execute(missing_ok).fetchone() == (None,)
        assert conn.execute("SHOW search_path").fetchone() == ('"$user", public',)
        with pytest.raises(psycopg.errors.UndefinedObject):
            conn.execute("SHOW memory_limit")
        conn.execute("SET application_name = 'notebook'")
        assert conn.execute("SHOW application_name").fetchone() == ("notebook",)
        assert conn.execute("SHOW TRANSACTION ISOLATION LEVEL").fetchone() == ("read committed",)
        # Postgres's own dialect, as BI tools send it on connect.
        assert conn.execute("SELECT version()").fetchone()[0].startswith("PostgreSQL 16.0")
        typed = conn.execute("SELECT oid FROM pg_class WHERE relname = 'typed'").fetchone()
        assert conn.execute("SELECT 'typed'::regclass").fetchone() == typed
        keywords = conn.execute("SELECT string_agg(word, ',') FROM pg_catalog.pg_get_keywords()")
        assert "select" in keywords.fetchone()[0].split(",")


def test_as_of_reads_an_earlier_version_and_says_which(stack: Stack) -> None:
    ingest(stack, "history", b"id\n1\n")
    ingest(stack, "history", b"id\n2\n")
    notices: list[str] = []
    with connect(stack, stack.admin_token) as conn:
        conn.add_notice_handler(lambda notice: notices.append(notice.message_primary or ""))
        assert conn.execute("SELECT count(*) FROM history").fetchone() == (2,)
        assert conn.execute("SHOW lakehouse.datasets").fetchone() == ('{"history":2}',)
        conn.execute("""SET lakehouse.as_of = '{"history": 1}'""")
        assert conn.execute("SELECT id FROM history").fetchall() == [(1,)]
        assert conn.info.parameter_status("lakehouse.datasets") == '{"history":1}'
        # The session's pins hold for what each statement reads: one reading none is
        # answered (a /v1/sql request's own pin must be read).
        assert conn.execute("SELECT 41 + 1").fetchone() == (42,)
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            conn.execute("SET lakehouse.as_of = 'yesterday'")
        conn.execute("RESET lakehouse.as_of")
        assert conn.execute("SELECT count(*) FROM history").fetchone() == (2,)
    assert notices == ["read history at version 1 (lakehouse.as_of)"]


def test_settings_are_checked_as_postgres_checks_them(stack: Stack) -> None:
    """Attack class: settings taken and silently not applied. Each is refused with
    Postgres's SQLSTATE, or kept with a NOTICE saying it is not applied."""
    ingest(stack, "pinned", b"id\n1\n")
    ingest(stack, "pinned", b"id\n2\n")
    refused = {
        "SET no_such_setting = 1": psycopg.errors.UndefinedObject,
        "SET lakehouse.nothing = 1": psycopg.errors.UndefinedObject,
        "SET lakehouse.datasets = '{}'": psycopg.errors.CantChangeRuntimeParam,
        "SET server_version = '17'": psycopg.errors.CantChangeRuntimeParam,
        "SET client_encoding = 'LATIN1'": psycopg.errors.InvalidParameterValue,
        "SET default_transaction_read_only = off": psycopg.errors.ReadOnlySqlTransaction,
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE": (
            psycopg.errors.ReadOnlySqlTransaction
        ),
        "BEGIN ISOLATION LEVEL SERIALIZABLE": psycopg.errors.FeatureNotSupported,
        "SET transaction_isolation = 'repeatable read'": psycopg.errors.FeatureNotSupported,
        "SELECT set_config('no_such_setting', '1', false)": psycopg.errors.UndefinedObject,
        "SELECT set_config('application_name', 'x', true)": psycopg.errors.FeatureNotSupported,
        "SELECT current_setting('no_such_setting')": psycopg.errors.UndefinedObject,
    }
    # At connect, as a SET: refused, or kept.
    with pytest.raises(psycopg.OperationalError, match="this server sends UTF8 only"):
        connect(stack, stack.admin_token, client_encoding="LATIN1")
    with connect(stack, stack.admin_token, options="'-c timezone=Europe/Paris'") as conn:
        assert conn.execute("SHOW timezone").fetchone() == ("Europe/Paris",)
    notices: list[str] = []
    with connect(stack, stack.admin_token) as conn:
        conn.add_notice_handler(lambda notice: notices.append(notice.message_primary or ""))
        for sql, kind in refused.items():
            with pytest.raises(kind):
                conn.execute(sql)
        assert conn.execute("SELECT current_setting('no_such', true)").fetchone() == (None,)
        beside = "SELECT current_setting('no_such', true), current_setting('application_name')"
        assert conn.execute(beside).fetchone() == (None, "")
        # What is given is kept; what Postgres has but changes nothing here is said.
        conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        conn.execute("SET myapp.team = 'sales'")
        assert conn.execute("SHOW myapp.team").fetchone() == ("sales",)
        # A catalog query reads the session's values, as Postgres's pg_settings does.
        catalog = "SELECT current_setting('myapp.team') FROM pg_catalog.pg_class LIMIT 1"
        assert conn.execute(catalog).fetchone() == ("sales",)
        listed = "SELECT setting FROM pg_catalog.pg_settings WHERE name = 'myapp.team'"
        assert conn.execute(listed).fetchone() == ("sales",)
        conn.execute("SET statement_timeout = '5s'")
        conn.execute("SET TIME ZONE 'Europe/Paris'")
        assert conn.execute("SHOW timezone").fetchone() == ("Europe/Paris",)
        conn.execute("RESET ALL")
        assert conn.execute("SHOW timezone").fetchone() == ("UTC",)
        # set_config pins versions as SET does, and says so.
        pin = """SELECT set_config('lakehouse.as_of', '{"pinned": 1}', false)"""
        assert conn.execute(pin).fetchone() == ('{"pinned": 1}',)
        assert conn.execute("SHOW lakehouse.as_of").fetchone() == ('{"pinned":1}',)
        assert conn.execute("SELECT id FROM pinned").fetchall() == [(1,)]
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            conn.execute("SELECT set_config('lakehouse.as_of', 'yesterday', false)")
        # FETCH 0 re-fetches the current row in Postgres: refused, not read as ALL.
        conn.execute("RESET lakehouse.as_of")
        conn.execute("DECLARE pages CURSOR WITH HOLD FOR SELECT id FROM pinned ORDER BY id")
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            conn.execute("FETCH 0 FROM pages")
        assert conn.execute("FETCH 5 FROM pages").fetchall() == [(1,), (2,)]
    assert notices == [
        "statement_timeout is kept for SHOW, but this server does not apply it",
        "timezone = 'Europe/Paris' is kept for SHOW, but not applied: timestamps with a time "
        "zone are sent in UTC (+00): the same instants",
        "read pinned at version 1 (lakehouse.as_of)",
    ]


def test_a_column_sent_in_another_type_is_said(stack: Stack, reader_token: str) -> None:
    notices: list[str] = []
    with connect(stack, reader_token) as conn:
        conn.add_notice_handler(lambda notice: notices.append(notice.message_primary or ""))
        row = conn.execute("SELECT INTERVAL 1 DAY AS d, [1, 2] AS l, 3 AS n").fetchone()
        assert row == ("1 day", [1, 2], 3)
        conn.execute("SELECT 1 AS plain").fetchone()
    assert notices == [
        "sent in another type than their own: d (INTERVAL) as text; l (INTEGER[]) as json"
    ]


def test_savepoints_are_kept_as_postgres_keeps_them(stack: Stack, reader_token: str) -> None:
    with connect(stack, reader_token) as conn:
        with pytest.raises(psycopg.errors.NoActiveSqlTransaction):
            conn.execute("SAVEPOINT outside")
        with conn.transaction():  # psycopg's nested blocks are savepoints
            with conn.transaction():
                assert conn.execute("SELECT count(*) FROM typed").fetchone() == (3,)
            conn.execute("SAVEPOINT a")
            conn.execute("SAVEPOINT b")
            conn.execute("ROLLBACK TO SAVEPOINT a")
            with pytest.raises(psycopg.errors.InvalidSavepointSpecification):
                conn.execute("RELEASE b")  # gone with the rollback to a


def test_every_query_is_in_the_audit_trail(stack: Stack, reader_token: str) -> None:
    marker = f"audit-{time.time_ns()}"
    with connect(stack, reader_token) as conn:
        conn.execute(f"SELECT '{marker}' AS marker, count(*) FROM typed").fetchall()
        with pytest.raises(psycopg.Error):
            conn.execute(f"SELECT '{marker}' FROM secret_sales")
    deadline = time.monotonic() + 60  # records are flushed in batches (audit_flush_seconds)
    while True:
        rows = sql_rows(
            stack.api_url,
            "SELECT token, method, status, datasets, rows FROM _audit "
            f"WHERE method = 'PG' AND sql LIKE '%{marker}%' ORDER BY status",
        )
        if len(rows) == 2 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert rows == [
        {"token": "analyst", "method": "PG", "status": 200, "datasets": ["typed"], "rows": 1},
        {"token": "analyst", "method": "PG", "status": 403, "datasets": [], "rows": None},
    ]


def endpoint_process(stack: Stack) -> psutil.Process:
    return psutil.Process(
        next(p.popen.pid for p in stack.processes if p.name == "postgres-endpoint")
    )


def query_processes(endpoint: psutil.Process) -> list[psutil.Process]:
    """The endpoint's query processes (children of its workers)."""
    return [p for p in endpoint.children(recursive=True) if "api.query.process" in p.cmdline()]


def busy_query_process(endpoint: psutil.Process, deadline: float) -> psutil.Process:
    """The query process running a query: the one whose CPU time grows."""
    while time.monotonic() < deadline:
        children = query_processes(endpoint)
        before = {c.pid: c.cpu_times().user for c in children}
        time.sleep(0.5)
        for child in children:
            if child.cpu_times().user - before[child.pid] > 0.2:
                return child
    raise AssertionError("no query process started the query")


def test_psql_cancel_stops_the_query_and_frees_its_process(stack: Stack, reader_token: str) -> None:
    heavy = "SELECT sum(a.range * b.range) FROM range(200000) a, range(200000) b"
    client = subprocess.Popen(
        [str(PSQL), "-X", "-c", heavy],
        env=psql_env(stack, reader_token),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        running = busy_query_process(endpoint_process(stack), time.monotonic() + 60)
        client.send_signal(signal.SIGINT)  # what Ctrl-C does: psql sends a cancel request
        _, stderr = client.communicate(timeout=60)
    finally:
        client.kill()
    assert "canceling statement due to user request" in stderr
    running.wait(timeout=30)  # the process that ran it is gone; a fresh one takes its slot
    with connect(stack, reader_token) as conn:
        assert conn.execute("SELECT count(*) FROM typed").fetchone() == (3,)


@contextlib.contextmanager
def another_endpoint(stack: Stack, **env: str) -> Iterator[tuple[int, int]]:
    """A second endpoint of the same stack (its port and pid), with `env` on top of its
    settings."""
    port = free_port()
    settings = {**settings_env(stack.settings), "LAKEHOUSE_PG_PORT": str(port), **env}
    process = subprocess.Popen([sys.executable, "-m", "api.pgwire"], cwd=PROJECT_ROOT, env=settings)
    try:
        deadline = time.monotonic() + 60
        while not tcp_open("127.0.0.1", port)():
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        yield port, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def tls_endpoint(stack: Stack, tmp_path: Path) -> Iterator[int]:
    """An endpoint with a self-signed certificate."""
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    tls = {"LAKEHOUSE_PG_TLS_CERT_FILE": str(cert), "LAKEHOUSE_PG_TLS_KEY_FILE": str(key)}
    with another_endpoint(stack, **tls) as (port, _):
        yield port


def test_tls_when_configured_and_never_in_the_clear(
    stack: Stack, reader_token: str, tls_endpoint: int
) -> None:
    options = f"host=127.0.0.1 port={tls_endpoint} user=analyst password={reader_token}"
    with psycopg.connect(f"{options} sslmode=require") as conn:
        assert conn.info.pgconn.ssl_in_use
        assert conn.execute("SELECT count(*) FROM typed").fetchone() == (3,)
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect(f"{options} sslmode=disable")
    assert "encrypted connections only" in str(refused.value)


def test_concurrent_clients_all_get_answers(stack: Stack, reader_token: str) -> None:
    """More clients than query slots: each gets its answer or a clear refusal, never a
    wrong one."""
    answers: list[object] = []

    def client() -> None:
        try:
            with connect(stack, reader_token) as conn:
                answers.append(conn.execute("SELECT count(*) FROM typed").fetchone())
        except psycopg.errors.TooManyConnections as busy:
            answers.append(str(busy))

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(answers) == 8
    assert all(a == (3,) or "query slots" in str(a) for a in answers)


def test_a_cursor_left_unread_gives_its_query_process_back(stack: Stack, reader_token: str) -> None:
    """Slow-client attack: a client that opens a cursor and stops reading holds its query
    slot no longer than LAKEHOUSE_SQL_SEND_TIMEOUT_SECONDS."""
    with another_endpoint(stack, LAKEHOUSE_SQL_SEND_TIMEOUT_SECONDS="1") as (port, pid):
        endpoint = psutil.Process(pid)
        options = f"host=127.0.0.1 port={port} user=analyst password={reader_token}"
        with psycopg.connect(options, autocommit=True) as conn:
            processes = query_processes(endpoint)
            conn.execute("DECLARE idle CURSOR WITH HOLD FOR SELECT range FROM range(5000000)")
            one_exits(processes, time.monotonic() + 60)  # stopped by the endpoint, not by us
            with pytest.raises(psycopg.errors.QueryCanceled) as closed:
                conn.execute("FETCH 10 FROM idle")
            assert "LAKEHOUSE_SQL_SEND_TIMEOUT_SECONDS" in str(closed.value)
            # Its slot is free again.
            assert conn.execute("SELECT count(*) FROM typed").fetchone() == (3,)


def one_exits(processes: list[psutil.Process], deadline: float) -> None:
    while all(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in processes):
        assert time.monotonic() < deadline, "no query process was stopped"
        time.sleep(0.2)
