"""The conversion on local files: DuckDB reads each CSV exactly as the inferred schema says."""

from datetime import date, datetime
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from lakehouse.convert import csv_to_parquet, write_rejects
from lakehouse.csvschema import infer_schema


def convert(tmp_path: Path, data: bytes) -> list[tuple]:
    source, target = tmp_path / "in.csv", tmp_path / "out.parquet"
    source.write_bytes(data)
    schema = infer_schema(data, complete=True)
    con = duckdb.connect()
    converted = csv_to_parquet(con, str(source), str(target), schema)
    rows = pq.read_table(target).to_pylist()
    assert converted.rows == len(rows)
    assert [f.name for f in pq.read_schema(target)] == [c.name for c in schema.columns]
    return [tuple(r.values()) for r in rows]


def test_types_and_nulls_survive(tmp_path: Path) -> None:
    rows = convert(
        tmp_path,
        b"id,rate,ok,day,at,name\n1,2.5,true,2024-01-02,2024-01-02 03:04:05,Ann\n2,,FALSE,,,\n",
    )
    assert rows == [
        (1, 2.5, True, date(2024, 1, 2), datetime(2024, 1, 2, 3, 4, 5), "Ann"),
        (2, None, False, None, None, None),
    ]


@pytest.mark.parametrize(
    "data",
    [
        b"a;b\n1;x\n2;y\n",
        b"a\tb\n1\tx\n2\ty\n",
        b"a|b\n1|x\n2|y\n",
        b"\xef\xbb\xbfa,b\r\n1,x\r\n2,y\r\n",
    ],
    ids=["semicolon", "tab", "pipe", "bom-crlf"],
)
def test_dialects(tmp_path: Path, data: bytes) -> None:
    assert convert(tmp_path, data) == [(1, "x"), (2, "y")]


def test_quoted_fields(tmp_path: Path) -> None:
    data = b'id,note\n1,"a, b"\n2,"say ""hi"""\n3,"two\nlines"\n'
    assert convert(tmp_path, data) == [(1, "a, b"), (2, 'say "hi"'), (3, "two\nlines")]


def test_header_only_gives_an_empty_parquet_with_the_columns(tmp_path: Path) -> None:
    assert convert(tmp_path, b"a,b\n") == []


def test_blank_and_duplicate_headers_keep_their_new_names(tmp_path: Path) -> None:
    assert convert(tmp_path, b"id,,id\n1,2,3\n") == [(1, 2, 3)]


def test_rows_that_do_not_parse_are_rejected_with_line_and_reason(tmp_path: Path) -> None:
    source, target, rejects = (tmp_path / n for n in ("in.csv", "o.parquet", "r.parquet"))
    source.write_bytes(b"id,name,n\n1,a,5\n2,b\n3,c,7,extra\n4,d,x\n5,e,6\n")
    schema = infer_schema(b"id,name,n\n1,a,5\n", complete=True)
    con = duckdb.connect()
    converted = csv_to_parquet(con, str(source), str(target), schema)
    assert (converted.rows, converted.rejected) == (2, 3)
    assert converted.rejected_share == 3 / 5
    assert [(s["line"], s["error_type"]) for s in converted.samples] == [
        (3, "MISSING COLUMNS"),
        (4, "TOO MANY COLUMNS"),
        (5, "CAST"),
    ]
    assert converted.samples[2]["csv_line"] == "4,d,x"
    assert pq.read_table(target).to_pylist() == [
        {"id": 1, "name": "a", "n": 5},
        {"id": 5, "name": "e", "n": 6},
    ]
    write_rejects(con, str(rejects))
    assert [r["line"] for r in pq.read_table(rejects).to_pylist()] == [3, 4, 5]
