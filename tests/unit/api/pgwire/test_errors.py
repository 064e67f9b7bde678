"""DuckDB's errors as the SQLSTATEs Postgres gives for the same mistakes: a driver acts on
the state, so a wrong one is a silent misreading."""

from __future__ import annotations

import duckdb
import pytest

from api.pgwire.errors import duckdb_state


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("CREATE TABLE t (a INTEGER)")
    return con


@pytest.mark.parametrize(
    ("sql", "state"),
    [
        ("SELEC 1", "42601"),
        ("SELECT * FROM nowhere", "42P01"),
        ("SELECT * FROM s.t", "3F000"),
        ("SELECT * FROM foo()", "42883"),
        ("SELECT foo(1)", "42883"),
        ("SELECT lower(1, 2, 3)", "42883"),
        ("SELECT 1::nosuchtype", "42704"),
        ("SELECT nope FROM t", "42703"),
        ("SELECT t.missing FROM t", "42703"),
        ("SELECT a, count(*) FROM t", "42803"),
        ("SELECT 'x'::INTEGER", "22P02"),
        ("SELECT 300::TINYINT", "22003"),
        ("SELECT 2147483647::INTEGER + 1", "22003"),
    ],
)
def test_each_duckdb_error_has_postgres_sqlstate(
    con: duckdb.DuckDBPyConnection, sql: str, state: str
) -> None:
    with pytest.raises(duckdb.Error) as failed:
        con.execute(sql)
    assert duckdb_state(str(failed.value), "XX000") == state, str(failed.value)
