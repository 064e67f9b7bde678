"""The SQL guard and the answer writers, on a plain in-memory DuckDB: no S3, no processes."""

from __future__ import annotations

import io
import json
import sys

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from api.query.allowlist import (
    ALLOWED_FUNCTIONS,
    ALLOWED_TABLE_FUNCTIONS,
    DENIED_FUNCTIONS,
    DENIED_TABLE_FUNCTIONS,
)
from api.query.formats import BATCH_WRITERS, Budget, encodable, pieces
from api.query.guard import MAX_SQL_CHARS, Refused, _loads_iteratively, inspect, loads

VIEWS = ("people", "people__rejects", "teams")


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    return duckdb.connect()


@pytest.fixture(scope="module")
def system_views(con: duckdb.DuckDBPyConnection) -> frozenset[str]:
    rows = con.execute("SELECT view_name FROM duckdb_views() WHERE internal").fetchall()
    return frozenset(row[0] for row in rows)


def check(con: duckdb.DuckDBPyConnection, sql: str, system: frozenset[str] = frozenset()):
    return inspect(con.cursor(), sql, VIEWS, system)


def test_every_function_duckdb_lists_is_allowed_or_denied(con: duckdb.DuckDBPyConnection) -> None:
    """A DuckDB upgrade that adds a function fails here until someone classifies it in
    api/query/allowlist.py."""
    listed = con.execute(
        "SELECT DISTINCT function_name, function_type FROM duckdb_functions()"
    ).fetchall()
    unclassified = []
    for name, kind in listed:
        if kind in ("scalar", "aggregate", "macro"):
            allowed, denied = name in ALLOWED_FUNCTIONS, name in DENIED_FUNCTIONS
        else:  # table, table_macro, pragma
            allowed, denied = name in ALLOWED_TABLE_FUNCTIONS, name in DENIED_TABLE_FUNCTIONS
        if allowed == denied:
            unclassified.append(f"{name} ({kind})")
    assert not unclassified, "classify in api/query/allowlist.py: " + ", ".join(unclassified)


def test_no_function_is_both_allowed_and_denied() -> None:
    assert not ALLOWED_FUNCTIONS & DENIED_FUNCTIONS
    assert not ALLOWED_TABLE_FUNCTIONS & DENIED_TABLE_FUNCTIONS


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count(*) FROM people",
        "SELECT name, count(*) FROM people WHERE id > 1 GROUP BY ALL ORDER BY ALL",
        "SELECT * FROM people__rejects",
        "WITH t AS (SELECT id FROM people) SELECT * FROM t JOIN teams ON true",
        "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 3) FROM t",
        "SELECT ifnull(id, 0), coalesce(id, 1), nullif(id, 1), id::VARCHAR FROM people",
        "SELECT row_number() OVER w, lag(id) OVER w, sum(id) OVER w FROM people WINDOW w AS "
        "(ORDER BY id)",
        "SELECT list_transform([1, 2], x -> x * 2), [x FOR x IN [1, 2]], {'a': 1}.a",
        "SELECT unnest([1, 2]), unnest(range(3)), grouping(id) FROM people GROUP BY ROLLUP(id)",
        "SELECT * FROM range(3) r(i), generate_series(1, 2), unnest([1])",
        "SELECT strftime(now(), '%Y'), date_diff('day', DATE '2020-01-01', today())",
        "SELECT string_agg(name, ','), list(name), quantile_cont(id, 0.5) FROM people",
        "SELECT repeat('x', 3), lpad('a', 3, ' '), format('{}', 1), md5('a')",
        "SELECT range(10), generate_series(1, 1000000), range(-5), repeat('x', id) FROM people",
        "SELECT count(*) FROM range(300000000)",  # rows stream: bounded by time, not here
        "SELECT regexp_matches(name, 'A.*'), name ILIKE 'a%', name SIMILAR TO 'A.*' FROM people",
        "SELECT * EXCLUDE (id) FROM people USING SAMPLE 50%",
        "SELECT '{\"a\": 1}'::JSON ->> 'a', json_extract('{}', '$.a')",
        "SELECT name FROM people ORDER BY name COLLATE nocase",
        "SELECT main.sum(id), pg_catalog.sum(id) FROM main.people",
        "WITH Recent AS (SELECT * FROM PEOPLE) SELECT SUM(id) FROM recent",
    ],
)
def test_ordinary_queries_pass(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    check(con, sql)


def test_the_views_read_are_named(con: duckdb.DuckDBPyConnection) -> None:
    inspection = check(con, "WITH p AS (FROM people) SELECT * FROM p, people__rejects")
    assert inspection.views == {"people", "people__rejects"}


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("SELECT * FROM pg_settings", "'pg_settings' is a system view, not a dataset"),
        ("SELECT * FROM duckdb_views", "'duckdb_views' is a system view"),
        ("SELECT * FROM pragma_database_list", "is a system view"),
        ("SELECT * FROM information_schema.tables", "another schema"),
        ("SELECT * FROM system.main.people", "another schema"),
        ("WITH sqlite_master AS (SELECT 1) FROM sqlite_master", "give the CTE another name"),
        ("SELECT * FROM duckdb_settings()", "table function duckdb_settings() is not allowed"),
        ("SELECT * FROM read_parquet('s3://b/x.parquet')", "read_parquet() is not allowed"),
        ("SELECT * FROM query('SELECT 1')", "query() is not allowed"),
        ("SELECT * FROM repeat_row(1, num_rows := 3)", "repeat_row() is not allowed"),
        ("SELECT current_setting('threads')", "current_setting() is not allowed"),
        ("SELECT getvariable('x')", "getvariable() is not allowed"),
        ("SELECT current_database()", "current_database() is not allowed"),
        ("SELECT json_serialize_sql('SELECT 1')", "json_serialize_sql() is not allowed"),
        ("SELECT setseed(0.5)", "setseed() is not allowed"),
        ("SELECT pg_sleep(10)", "pg_sleep() is not allowed"),
        ("SELECT no_such_function(1)", "not on the list of functions"),
        ("SELECT other.sum(1)", "function other.sum() is not allowed"),
        ("SELECT * FROM people, nowhere", "unknown dataset 'nowhere'"),
        ("SELECT * FROM '/etc/passwd'", "reading files is not allowed"),
        ("SELECT 1; SELECT 2", "exactly one statement"),
        ("DESCRIBE people", "DESCRIBE, SHOW and SUMMARIZE are not allowed"),
        ("SUMMARIZE people", "not allowed"),
        ("SHOW TABLES", "not allowed"),
        ("SHOW ALL TABLES", "not allowed"),
        ("SELECT (SELECT count(*) FROM pg_settings) FROM people", "system view"),
        ("SELECT repeat('x', 3000000000)", "repeat() would build a value of 3,000,000,000"),
        ("SELECT repeat('abcd', 20000000)", "a value of 80,000,000 bytes"),
        ("SELECT rpad(name, 100000000, 'x') FROM people", "rpad() would build a value"),
        ("SELECT list_sum(range(300000000))", "range() would build a list of 300,000,000"),
        ("SELECT generate_series(0, 1e9, 2)", "a list of 500,000,000 elements"),
        ("SELECT list_resize([1], 100000000)", "list_resize() would build a list"),
        ("SELECT [x FOR x IN (SELECT list(name) FROM pg_settings)]", "system view"),
    ],
)
def test_refused(
    con: duckdb.DuckDBPyConnection, system_views: frozenset[str], sql: str, why: str
) -> None:
    with pytest.raises(Refused, match=None) as refused:
        check(con, sql, system_views)
    assert why in str(refused.value)


def test_a_statement_past_the_length_limit_is_refused(con: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(Refused, match="send at most"):
        check(con, "SELECT 1" + " " * MAX_SQL_CHARS)


@pytest.mark.parametrize("terms", [600, 990])
def test_long_expressions_do_not_hit_pythons_recursion_limit(
    con: duckdb.DuckDBPyConnection, terms: int
) -> None:
    assert terms * 3 > sys.getrecursionlimit()  # json.loads alone would fail
    check(con, "SELECT " + "+".join(["id"] * terms) + " FROM people")


def test_the_iterative_json_parser_agrees_with_json_loads(con: duckdb.DuckDBPyConnection) -> None:
    sql = (
        'WITH x AS (SELECT 1.5e3 AS "we""ird", \'a\\"b\\\\c\' AS s, NULL AS n, true AS t)'
        " SELECT [1, -2, 3.25], {'k': 'é☃'} FROM x"
    )
    text = con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0]
    assert _loads_iteratively(text) == json.loads(text)
    assert loads('{"a": [1, {"b": null}], "c": "\\u00e9"}') == {"a": [1, {"b": None}], "c": "é"}


def test_csv_and_parquet_get_encodable_columns(con: duckdb.DuckDBPyConnection) -> None:
    relation = con.sql(
        "SELECT 1 AS id, [1] AS l, INTERVAL 1 DAY AS i, {'a': INTERVAL 1 DAY} AS s, "
        "union_value(k := 1) AS u, 'x'::BLOB AS b"
    )
    names, types = relation.columns, relation.types
    assert encodable(names, types, "csv") == [
        '"id"',
        'CAST(to_json("l") AS VARCHAR) AS "l"',
        'CAST("i" AS VARCHAR) AS "i"',
        'CAST(to_json("s") AS VARCHAR) AS "s"',
        'CAST(to_json("u") AS VARCHAR) AS "u"',
        'CAST("b" AS VARCHAR) AS "b"',
    ]
    assert encodable(names, types, "parquet") == [
        '"id"',
        '"l"',
        'CAST("i" AS VARCHAR) AS "i"',
        'CAST(to_json("s") AS VARCHAR) AS "s"',
        'CAST(to_json("u") AS VARCHAR) AS "u"',
        '"b"',
    ]
    assert encodable(names, types, "arrow") == []
    # Whatever the conversion, each writer accepts the result.
    for fmt in ("csv", "parquet", "arrow"):
        converted = relation.project(", ".join(encodable(names, types, fmt) or ["*"]))
        reader = converted.to_arrow_reader(1000)
        budget = Budget(10, 10**6)
        assert b"".join(BATCH_WRITERS[fmt](reader.schema, iter(reader), budget))


def test_a_big_batch_is_cut_into_pieces() -> None:
    batch = pa.RecordBatch.from_pydict({"s": ["x" * 1000] * 20_000})
    parts = list(pieces(batch))
    assert len(parts) > 1 and sum(p.num_rows for p in parts) == 20_000
    assert all(p.nbytes <= 5 * 1024 * 1024 for p in parts)


def test_notices_are_written_in_each_format() -> None:
    schema = pa.schema([("n", pa.int64())])
    batch = pa.RecordBatch.from_pydict({"n": [1, 2]}, schema=schema)
    budget = Budget(max_rows=10, max_bytes=1)
    budget.cut("bytes")
    csv_body = b"".join(BATCH_WRITERS["csv"](schema, iter([batch]), budget)).decode()
    assert csv_body.splitlines()[:3] == ['"n"', "1", "2"]
    assert json.loads(csv_body.splitlines()[-1].removeprefix("# lakehouse: "))["truncated"]
    parquet = b"".join(BATCH_WRITERS["parquet"](schema, iter([batch]), budget))
    footer = pq.ParquetFile(io.BytesIO(parquet)).metadata.metadata
    assert json.loads(footer[b"lakehouse"])["reason"] == "bytes"
    failed = Budget(max_rows=10, max_bytes=10**6)
    failed.fail("timeout", "INTERRUPT Error")
    arrow = b"".join(BATCH_WRITERS["arrow"](schema, iter([batch]), failed))
    reader = pa.ipc.open_stream(arrow)
    assert reader.read_next_batch().num_rows == 2
    last, metadata = reader.read_next_batch_with_custom_metadata()
    assert last.num_rows == 0 and json.loads(metadata[b"lakehouse"])["error"] == "timeout"
    assert Budget(max_rows=10, max_bytes=10).notice() is None  # nothing to say
