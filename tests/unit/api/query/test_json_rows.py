"""JSON answers written column by column: only the columns whose type JSON cannot hold as
it is go through `json_value`, and every row reads as it did when each value did."""

from __future__ import annotations

import json

import duckdb

from api.query.formats import json_rows, json_value, ndjson_lines


def _every_type() -> tuple[list[str], list[duckdb.DuckDBPyType], list[tuple[object, ...]]]:
    con = duckdb.connect()
    # The types of DuckDB with a Python value (not: those `fetchall` cannot convert).
    con.execute("SELECT * FROM test_all_types()")
    names = [d[0] for d in con.description]
    types = [d[1] for d in con.description]
    rows = con.fetchall()
    return names, types, rows


def test_every_type_is_written_as_json_value_writes_it() -> None:
    names, types, rows = _every_type()
    records = [{n: json_value(v) for n, v in zip(names, row, strict=True)} for row in rows]
    compact = [json.dumps(r, ensure_ascii=False, separators=(",", ":")).encode() for r in records]
    spaced = [json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in records]
    assert list(json_rows(names, types, iter(rows))) == compact
    assert list(ndjson_lines(names, types, iter(rows))) == spaced


def test_columns_json_holds_as_they_are_are_written_unchanged() -> None:
    con = duckdb.connect()
    con.execute("SELECT 1 AS n, 'é\"' AS s, NULL::BIGINT AS z, true AS b, 2::HUGEINT << 100 AS h")
    names = [d[0] for d in con.description]
    types = [d[1] for d in con.description]
    [line] = json_rows(names, types, iter(con.fetchall()))
    expected = '{"n":1,"s":"é\\"","z":null,"b":true,"h":2535301200456458802993406410752}'
    assert line == expected.encode()
