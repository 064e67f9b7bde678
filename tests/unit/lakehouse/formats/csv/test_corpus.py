"""Files from public CSV test suites that this project did not write (tests/data/csv_corpus:
csv-spectrum, the W3C CSVW tests, CPython's and pandas' reader tests, CleverCSV's), each with
the reading its own suite expects.

Every file is read exactly as its suite expects, or refused: at upload (`infer_schema`, a
400 naming the problem and the parameter that would fix it), or by its run (more bad rows
than `LAKEHOUSE_MAX_REJECT_SHARE`: the ingest fails with samples). The few files whose
suite reads them with a rule no DuckDB parameter expresses, or by a convention of its own
reader, are listed below with why; none of them is read as one column when it is not one.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest

from lakehouse.formats.csv.convert import Converted, csv_to_parquet
from lakehouse.formats.csv.options import CsvOptions, InvalidOption
from lakehouse.formats.csv.schema import CsvSchema, infer_schema
from lakehouse.formats.csv.text import NotCsv
from lakehouse.ingest.records import landed_bytes
from tests.unit.lakehouse.formats.csv.test_roundtrip import same_value

CORPUS = next(p for p in Path(__file__).parents if p.name == "tests") / "data" / "csv_corpus"
MANIFEST: list[dict[str, Any]] = json.loads((CORPUS / "MANIFEST.json").read_text())
MAX_REJECT_SHARE = 0.01  # the default of LAKEHOUSE_MAX_REJECT_SHARE
OUR_PARAMETERS = {"delimiter", "quote", "escape", "header", "skip", "comment", "null", "encoding"}

# Suites that read a file by a rule of their own reader, which no parameter here (nor of
# DuckDB's reader) expresses. The reading here is the RFC 4180 one, and says so.
KNOWN_DIFFERENCES = {
    "cpython__read_skipinitialspace.csv": "skipinitialspace: spaces after a delimiter are "
    "data here (RFC 4180)",
    "pandas__double_quote_false.csv": "doublequote=False without an escape character",
    "pandas__empty_lines_kept.csv": "skip_blank_lines=False: blank lines are skipped here",
    "pandas__short_multi_line.csv": "names= longer than the rows, padded with NaN",
    "cpython__excel_space_and_quote.csv": 'DuckDB drops spaces around a quoted value: `"a"` '
    "reads as a; Python's reader keeps the quotes as text",
    "clevercsv__parse_no_delim_4.csv": "CleverCSV opens a quoted section in the middle of a "
    "value; here a quote mid-value is text",
    "clevercsv__parse_quote_mismatch_1.csv": "the same CleverCSV rule",
    "pandas__default_separator_sniffed.csv": "pandas' sniffer splits `aob` at the letter o; "
    "here it is one column (no delimiter splits the header)",
    "pandas__unnamed_columns.csv": "blank header names are column_4, not pandas' Unnamed: 3 "
    "(reported in `renamed`)",
    "pandas__mangle_dupes_basic.csv": "repeated names become a_2, not pandas' a.1 (reported "
    "in `renamed`)",
}


def options(params: dict[str, Any]) -> CsvOptions:
    """The suite's reading parameters that this API takes, as an uploader would send them."""
    given = {k: v for k, v in params.items() if k in OUR_PARAMETERS}
    for name in ("quote", "escape"):
        if name in given and given[name] is None:
            given[name] = "none"
    if params.get("quoting") == "QUOTE_NONE":
        given["quote"] = "none"
    if "header" in given:
        given["header"] = str(given["header"]).lower()
    if "null" in given:
        given["nulls"] = given.pop("null")
    return CsvOptions.parse(**given)


def read(data: bytes, schema: CsvSchema) -> tuple[list[tuple], Converted]:
    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "in.csv", Path(folder) / "out.parquet"
        source.write_bytes(landed_bytes(data))
        converted = csv_to_parquet(duckdb.connect(), str(source), str(target), schema)
        rows = [tuple(row.values()) for row in pq.read_table(target).to_pylist()]
    return rows, converted


def matches(expected: dict[str, Any], schema: CsvSchema, rows: list[tuple]) -> bool:
    wanted = [row for row in expected["rows"] if row != []]  # blank lines, as a reader sees
    return len(wanted) == len(rows) and all(
        len(want) == len(row)
        and all(
            same_value("" if text is None else text, value, column.type)
            for text, value, column in zip(want, row, schema.columns, strict=True)
        )
        for want, row in zip(wanted, rows, strict=True)
    )


def outcome(entry: dict[str, Any]) -> tuple[str, str]:
    """How this project reads one corpus file: exact, refused at upload or by its run, or
    differing; with the detail."""
    data = (CORPUS / entry["file"]).read_bytes()
    try:
        schema = infer_schema(data, complete=True, options=options(entry.get("params", {})))
    except (NotCsv, InvalidOption) as refusal:
        return "refused at upload", str(refusal)
    rows, converted = read(data, schema)
    if converted.rejected_share > MAX_REJECT_SHARE:
        return "refused by its run", f"{converted.rejected} of {converted.rows} rows rejected"
    expected = entry["expect"]
    if "refuse" in expected:
        return "differs", f"read {len(rows)} rows; the suite refuses: {expected['refuse']}"
    names = [c.name for c in schema.columns]
    same_names = expected["columns"] in (None, names) or "names" in entry.get("params", {})
    if matches(expected, schema, rows) and same_names and not converted.rejected:
        return "exact", ""
    return "differs", f"columns {names}, rows {rows[:3]}; expected {expected}"


@pytest.mark.parametrize("entry", MANIFEST, ids=[e["file"] for e in MANIFEST])
def test_every_corpus_file_is_read_as_its_suite_expects_or_refused(entry: dict[str, Any]) -> None:
    kind, detail = outcome(entry)
    if kind == "refused at upload":
        assert "send " in detail or "put " in detail or "use " in detail, detail
    elif kind == "differs":
        assert entry["file"] in KNOWN_DIFFERENCES, detail
    elif kind == "exact":
        assert entry["file"] not in KNOWN_DIFFERENCES, "read exactly now: drop it from the list"


def test_no_corpus_file_is_one_column_unless_it_is_one() -> None:
    for entry in MANIFEST:
        expected = entry["expect"]
        data = (CORPUS / entry["file"]).read_bytes()
        if "refuse" in expected or entry["file"] in KNOWN_DIFFERENCES:
            continue
        try:
            schema = infer_schema(data, complete=True, options=options(entry.get("params", {})))
        except (NotCsv, InvalidOption):
            continue
        widths = {len(row) for row in expected["rows"] if row}
        if len(schema.columns) == 1:
            assert widths <= {1}, entry["file"]


def test_the_corpus_summary() -> None:
    """The figures the closing note reports (printed with -s)."""
    counts: dict[str, int] = {}
    for entry in MANIFEST:
        kind, _ = outcome(entry)
        counts[kind] = counts.get(kind, 0) + 1
    print(f"csv corpus: {len(MANIFEST)} files: {counts}")
    assert counts.get("differs", 0) == len(KNOWN_DIFFERENCES)
