"""The conversion on local files: DuckDB reads each CSV exactly as the inferred schema says."""

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from lakehouse.duck import sql_string
from lakehouse.formats.csv.convert import (
    REJECT_SCHEMA,
    ConversionError,
    _exact_by_rule,
    csv_to_parquet,
    fits_exactly,
    write_rejects,
)
from lakehouse.formats.csv.schema import CsvSchema, infer_schema
from lakehouse.formats.csv.types import Column


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


def test_awkward_but_valid_csv_round_trips_exactly(tmp_path: Path) -> None:
    json_text = '{"a": [1, "x,y"], "b": {"c": null}}'
    quoted_json = '"' + json_text.replace('"', '""') + '"'
    data = (
        "id,text,json\r\n"
        '1,"a, b",""\r\n'  # a comma inside quotes; an empty field
        '2,"say ""hi""",x\r\n'  # escaped quotes
        '3,"two\r\nlines",x\r\n'  # CRLF inside quotes keeps its CR
        '4,"bare\rcr and\nlf",x\r\n'
        f"5,Zoë 日本,{quoted_json}\r\n"
        "6,,\r\n"
    ).encode()
    assert convert(tmp_path, data) == [
        (1, "a, b", None),
        (2, 'say "hi"', "x"),
        (3, "two\r\nlines", "x"),
        (4, "bare\rcr and\nlf", "x"),
        (5, "Zoë 日本", json_text),
        (6, None, None),
    ]


def test_big_integers_and_decimals_keep_every_digit(tmp_path: Path) -> None:
    data = b"mixed,big,fine\n9007199254740993,99999999999999999999,0.1\n1.5,-1,2.25\n"
    rows = convert(tmp_path, data)
    assert rows == [
        (Decimal("9007199254740993.0"), Decimal("99999999999999999999"), Decimal("0.10")),
        (Decimal("1.5"), Decimal("-1"), Decimal("2.25")),
    ]


def test_money_is_an_exact_decimal_and_sums_exactly(tmp_path: Path) -> None:
    """`24386.67` has no exact double: a DOUBLE column would sum TPC-H's prices to
    ...68998 instead of ...69."""
    prices = ["24386.67", "0.10", "0.20", "901.01", "-17.5"] * 200
    data = ("price\n" + "\n".join(prices) + "\n").encode()
    [column] = infer_schema(data, complete=True).columns
    assert column.type == "DECIMAL(18,2)"
    source, target = tmp_path / "in.csv", tmp_path / "out.parquet"
    source.write_bytes(data)
    csv_to_parquet(duckdb.connect(), str(source), str(target), infer_schema(data, complete=True))
    [(total,)] = duckdb.sql(f"SELECT sum(price) FROM '{target}'").fetchall()
    assert total == sum(Decimal(p) for p in prices) == Decimal("5054096.00")


def test_a_long_field_converts(tmp_path: Path) -> None:
    assert convert(tmp_path, b"id,blob\n1," + b"x" * 200_000 + b"\n") == [(1, "x" * 200_000)]


def test_a_bad_line_is_one_reject_with_all_its_reasons(tmp_path: Path) -> None:
    # DuckDB reports `2,oops,3,4` as three errors: a cast and two extra fields.
    source, target, rejects = (tmp_path / n for n in ("in.csv", "o.parquet", "r.parquet"))
    source.write_bytes(b"n,m\n1,true\n2,oops,3,4\n3,false\n")
    con = duckdb.connect()
    schema = infer_schema(b"n,m\n1,true\n", complete=True)
    converted = csv_to_parquet(con, str(source), str(target), schema)
    assert (converted.rows, converted.rejected) == (2, 1)
    write_rejects(con, str(rejects))
    [reject] = pq.read_table(rejects).to_pylist()
    assert reject == {
        "line": 3,
        "column_name": "m",
        "error_type": "CAST, TOO MANY COLUMNS",
        "error_message": 'Error when converting column "m". Could not convert string "oops" to '
        "'BOOLEAN'; Expected Number of Columns: 2 Found: 4",
        "csv_line": "2,oops,3,4",
    }
    assert [(f.name, str(f.type)) for f in pq.read_schema(rejects)] == [
        ("line", "uint64"),
        *((name, "string") for name, _ in REJECT_SCHEMA[1:]),
    ]
    assert converted.samples == [
        {
            "line": 3,
            "column": "m",
            "error_type": "CAST, TOO MANY COLUMNS",
            "error": reject["error_message"],
            "csv_line": "2,oops,3,4",
        }
    ]


@pytest.mark.parametrize(
    ("type_", "good", "bad"),
    [
        ("BIGINT", "7", "3.75"),  # DuckDB's cast would round it to 4
        ("BIGINT", "7", "1e3"),
        ("BIGINT", "7", "007"),  # leading zeros are text
        ("BIGINT", "7", "oops"),
        ("DECIMAL(18,2)", "1.50", "1.234"),  # would be 1.23
        ("DATE", "2024-01-02", "2024-01-02 10:00:00"),  # would lose its time
        ("TIMESTAMP", "2024-01-02 03:04:05", "2024-01-02 03:04:05+02"),  # would lose the zone
        ("TIMESTAMP", "2024-01-02 03:04:05", "2024-01-02T03:04:05Z"),
    ],
)
def test_a_value_that_does_not_fit_exactly_is_rejected_with_its_line_never_changed(
    tmp_path: Path, type_: str, good: str, bad: str
) -> None:
    """DuckDB's casts from text round and truncate silently; a row whose value would change
    is a reject with its line, the others are stored exactly."""
    source, target = tmp_path / "in.csv", tmp_path / "out.parquet"
    source.write_bytes(f'id,v\n1,{good}\n2,"multi\nline"\n3,{bad}\n4,{good}\n'.encode())
    schema = CsvSchema(delimiter=",", columns=(Column("id", "BIGINT", ""), Column("v", type_, "")))
    con = duckdb.connect()
    converted = csv_to_parquet(con, str(source), str(target), schema)
    stored = duckdb.sql(f"SELECT id FROM '{target}' ORDER BY id").fetchall()
    assert stored == [(1,), (4,)]  # row 2: "multi\nline" is no {type_} either
    assert converted.rejected == 2 and converted.misfits == ("v",)
    lines = {s["line"]: s for s in converted.samples}
    assert set(lines) == {3, 5}
    assert lines[5]["error"] == f"value '{bad}' is not exactly a {type_}"
    assert lines[5]["csv_line"] == f"3,{bad}"


def test_a_file_duckdb_cannot_read_is_an_error_not_worth_retrying(tmp_path: Path) -> None:
    # Mixed line ends past the sample: the reader refuses the whole file, every time.
    source, target = tmp_path / "in.csv", tmp_path / "out.parquet"
    source.write_bytes(b"a,b\n1,x\n2,y\r\n")
    schema = infer_schema(b"a,b\n1,x\n", complete=True)
    with pytest.raises(ConversionError, match="fix the file and upload it again") as error:
        csv_to_parquet(duckdb.connect(), str(source), str(target), schema)
    assert error.value.retryable is False


def test_a_file_that_cannot_be_reached_is_worth_retrying(tmp_path: Path) -> None:
    schema = infer_schema(b"a\n1\n", complete=True)
    with pytest.raises(ConversionError) as error:
        csv_to_parquet(duckdb.connect(), str(tmp_path / "gone.csv"), str(tmp_path / "o"), schema)
    assert error.value.retryable is True


@pytest.mark.parametrize("type_", ["BIGINT", "DECIMAL(18,2)", "DECIMAL(38,0)"])
def test_the_canonical_spelling_shortcut_never_admits_what_the_rule_refuses(type_: str) -> None:
    """A text that equals its value's own spelling is settled by one compare; every other
    text goes to the full rule. The two must agree on every text, lenient or not."""
    texts = [
        "0", "-0", "+0", "7", "007", "+5", "-5", "-05", "3.75", "1e2", "1E2", "0x10", "1_000",
        " 12", "12 ", "9223372036854775807", "9223372036854775808", "-9223372036854775808",
        "1.5", "1.50", "1.505", "-0.00", ".5", "5.", "24386.67", "1e-2", "12.345", "", "abc",
    ]  # fmt: skip
    con = duckdb.connect()
    for text in texts:
        value = sql_string(text)
        rule = _exact_by_rule(value, type_, f"TRY_CAST({value} AS {type_})")
        shortcut, by_rule = con.execute(f"SELECT {fits_exactly(value, type_)}, {rule}").fetchone()
        assert shortcut is not None, text  # never NULL: NOT of it finds the rejects
        assert bool(shortcut) == bool(by_rule), (type_, text)
