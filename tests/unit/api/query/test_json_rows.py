"""JSON answers written column by column: only the columns whose type JSON cannot hold as
it is go through `json_value`, and every row reads as it did when each value did."""

from __future__ import annotations

import json

import duckdb

from api.query.formats import JsonRows, json_value, ndjson_lines


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
    spaced = [json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in records]
    assert json.loads(b"[" + JsonRows(names, types).encode(rows) + b"]") == records
    assert list(ndjson_lines(names, types, iter(rows))) == spaced


def test_every_type_but_wide_integers_reads_the_same_from_orjson() -> None:
    """The fast encoder writes the same values as the standard library (floats may differ
    in how their exponent is written, never in value)."""
    names, types, rows = _every_type()
    wide = ("hugeint", "bignum", "varint")
    narrow = [i for i, t in enumerate(types) if not any(w in str(t).lower() for w in wide)]
    names = [names[i] for i in narrow]
    types = [types[i] for i in narrow]
    rows = [tuple(row[i] for i in narrow) for row in rows]
    writer = JsonRows(names, types)
    assert not writer.wide
    records = [{n: json_value(v) for n, v in zip(names, row, strict=True)} for row in rows]
    assert json.loads(b"[" + writer.encode(rows) + b"]") == records


def test_columns_json_holds_as_they_are_are_written_unchanged() -> None:
    con = duckdb.connect()
    con.execute("SELECT 1 AS n, 'é\"' AS s, NULL::BIGINT AS z, true AS b, 2::HUGEINT << 100 AS h")
    names = [d[0] for d in con.description]
    types = [d[1] for d in con.description]
    line = JsonRows(names, types).encode(con.fetchall())
    expected = '{"n":1,"s":"é\\"","z":null,"b":true,"h":2535301200456458802993406410752}'
    assert line == expected.encode()


def test_rows_are_joined_by_commas_without_brackets() -> None:
    con = duckdb.connect()
    con.execute("SELECT i, i * 1.5 AS x FROM range(3) t(i)")
    names = [d[0] for d in con.description]
    types = [d[1] for d in con.description]
    writer = JsonRows(names, types)
    assert writer.encode(con.fetchall()) == b'{"i":0,"x":"0.0"},{"i":1,"x":"1.5"},{"i":2,"x":"3.0"}'
    assert writer.encode([]) == b""
