"""JSON Lines and Parquet: files that carry their own structure, read with DuckDB's readers.

The columns and their types come from the file: a Parquet file's schema, or DuckDB's JSON
reader over every line of a JSON Lines file (so no field is left out, and a line that is not
JSON is found before the upload is acknowledged) (a number with a fraction is DOUBLE: JSON
numbers are binary floating point; a field with values of several kinds is VARCHAR, text as
it is and numbers, objects or arrays as their JSON text, and the column's reason says so).
Nested values stay nested: a JSON object or a Parquet group is a STRUCT, an array a LIST
(`INTEGER[]`), so a query reads `addr.city` or `unnest(tags)`. A type Iceberg has no exact
counterpart for (unsigned or 128-bit integers, intervals, maps, unions, nanosecond
timestamps) is refused, naming the column and what to send instead: nothing is read as
something else quietly.

A run reads a JSON Lines file with exactly the columns found when it was uploaded. There are
no rejected rows: a JSON line is one value, it parses or it does not, and a file that cannot
be read fails with DuckDB's reason.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import duckdb

from lakehouse.duck import sql_identifier, sql_string
from lakehouse.errors import InvalidInput, Unavailable
from lakehouse.formats.csv.accounting import LineAccount
from lakehouse.formats.csv.convert import (
    DETERMINISTIC,
    PARQUET_FORMAT,
    TRANSIENT,
    ConversionError,
    Converted,
)
from lakehouse.formats.csv.types import Column
from lakehouse.formats.evolution import is_widening

Format = Literal["csv", "jsonl", "parquet"]
STRUCTURED: tuple[Format, ...] = ("jsonl", "parquet")

# Content types and file name endings of each format.
CONTENT_TYPES: dict[str, Format] = {
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/json-lines": "jsonl",
    "application/vnd.apache.parquet": "parquet",
    "application/x-parquet": "parquet",
}
ENDINGS: dict[str, Format] = {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}

# The leaf types a version may hold: each has one exact Iceberg type.
FLAT = re.compile(
    r"BOOLEAN|TINYINT|SMALLINT|INTEGER|BIGINT|FLOAT|DOUBLE|DATE|TIME|TIMESTAMP"
    r"|TIMESTAMP WITH TIME ZONE|VARCHAR|BLOB|UUID"
    r"|DECIMAL\((?:[1-9]|[1-3][0-9]),(?:[0-9]|[1-3][0-9])\)"
)
# Types a file may have that are stored as another, exactly: (type, why).
EXACTLY_AS = {
    "JSON": ("VARCHAR", "values of several kinds: text as it is, others as their JSON text"),
    "TIMESTAMP_S": ("TIMESTAMP", "seconds: microseconds hold them exactly"),
    "TIMESTAMP_MS": ("TIMESTAMP", "milliseconds: microseconds hold them exactly"),
}
# The JSON reader finds the fields and their types over every line (-1), not a sample: a
# field first seen past a sample would otherwise be left out of every row, unsaid.
JSON_SAMPLE_ROWS = -1


def format_of(given: str | None, content_type: str = "", filename: str = "") -> Format:
    """The upload's format: as given (`format=`), else by its content type, else by its file
    name (`.jsonl`, `.ndjson`, `.parquet`, each perhaps `.gz`), else CSV."""
    if given:
        if given not in ("csv", "jsonl", "parquet"):
            raise InvalidInput(f"format={given!r}: send csv, jsonl or parquet")
        return given  # type: ignore[return-value]
    media = content_type.split(";", 1)[0].strip().lower()
    if media in CONTENT_TYPES:
        return CONTENT_TYPES[media]
    name = filename.lower().removesuffix(".gz")
    return next((f for ending, f in ENDINGS.items() if name.endswith(ending)), "csv")


def storable(type_: str) -> str | None:
    """The type a column of `type_` (DuckDB's spelling) is stored as, or None if no Iceberg
    type holds it exactly. Nested types are checked leaf by leaf."""
    type_ = EXACTLY_AS.get(type_, (type_, ""))[0]
    if FLAT.fullmatch(type_):
        return type_
    try:
        parsed = duckdb.sqltype(type_)
    except duckdb.Error:
        return None
    if str(parsed) != type_ or parsed.id not in ("struct", "list"):
        return None  # not one type in DuckDB's own spelling (nothing else can reach SQL)
    children = [(name, storable(str(child))) for name, child in parsed.children]
    if any(child is None for _, child in children):
        return None
    if parsed.id == "list":
        return f"{children[0][1]}[]"
    return str(
        duckdb.sqltype(f"STRUCT({', '.join(f'{sql_identifier(n)} {t}' for n, t in children)})")
    )


def reader_sql(url: str, fmt: Format, columns: Sequence[Column] | None = None) -> str:
    """DuckDB's reader of the file at `url`: with `columns`, read as those (JSON Lines) and
    cast to them (both)."""
    if fmt == "parquet":
        source = f"read_parquet({sql_string(url)})"
    else:
        spec = ""
        if columns is not None:
            spec = (
                ", columns = {"
                + ", ".join(f"{sql_string(c.name)}: {sql_string(c.type)}" for c in columns)
                + "}"
            )
        source = (
            f"read_json({sql_string(url)}, format = 'newline_delimited', "
            f"sample_size = {JSON_SAMPLE_ROWS}{spec})"
        )
    if columns is None:
        return f"SELECT * FROM {source}"
    casts = ", ".join(
        f"CAST({sql_identifier(c.name)} AS {c.type}) AS {sql_identifier(c.name)}" for c in columns
    )
    return f"SELECT {casts} FROM {source}"


@dataclass(frozen=True)
class Found:
    """A file's columns, and those whose every value is null (of no type of their own: an
    append gives them its dataset's)."""

    columns: tuple[Column, ...]
    null_only: frozenset[str] = frozenset()


def infer_columns(con: duckdb.DuckDBPyConnection, url: str, fmt: Format) -> Found:
    """The file's columns and why each has its type; 400 naming a column no exact type
    holds, or a file the reader cannot read."""
    try:
        described = con.execute(f"DESCRIBE {reader_sql(url, fmt)}").fetchall()
    except (duckdb.InvalidInputException, duckdb.ConversionException) as exc:
        what = "a Parquet file" if fmt == "parquet" else "JSON Lines (one JSON object a line)"
        raise InvalidInput(f"the file cannot be read as {what}: {exc}") from exc
    except TRANSIENT as exc:  # the store or memory, not the file: nothing is committed
        raise Unavailable(f"could not read the uploaded file: {exc}; send it again") from exc
    columns = []
    for name, found, *_ in described:
        stored = storable(str(found))
        if stored is None:
            raise InvalidInput(
                f"column {name!r} is {found}, which no Iceberg type holds exactly: write it "
                "as BIGINT, DECIMAL(38,0), VARCHAR or TIMESTAMP (microseconds) in the file"
            )
        columns.append(Column(name, stored, _reason(fmt, str(found), stored)))
    if not columns:
        raise InvalidInput("the file has no columns: send rows with at least one field")
    mixed = [name for name, found, *_ in described if str(found) == "JSON"]
    return Found(tuple(columns), _null_only(con, reader_sql(url, fmt), mixed))


def _null_only(con: duckdb.DuckDBPyConnection, rows: str, names: list[str]) -> frozenset[str]:
    """Of the JSON fields `names` (typed JSON: several kinds, or none), those only null."""
    if not names:
        return frozenset()
    counts = ", ".join(f"count({sql_identifier(n)})" for n in names)
    found = con.execute(f"SELECT {counts} FROM ({rows})").fetchone() or ()
    return frozenset(n for n, count in zip(names, found, strict=True) if count == 0)


def _reason(fmt: Format, found: str, stored: str) -> str:
    if found in EXACTLY_AS:
        return f"json: {EXACTLY_AS[found][1]}" if found == "JSON" else EXACTLY_AS[found][1]
    if fmt == "parquet":
        return f"{stored.lower()}: the Parquet file's own type"
    if stored == "DOUBLE":
        return "double: JSON numbers with a fraction are binary floating point"
    return f"{stored.lower()}: every line's value fits it (DuckDB's JSON reader)"


def to_parquet(
    con: duckdb.DuckDBPyConnection, url: str, fmt: Format, columns: Sequence[Column], target: str
) -> Converted:
    """Convert the file at `url` to a local Parquet file of `columns`. Every row is read or
    the file fails (`ConversionError`): a JSON line or Parquet row cannot be half read."""
    try:
        copied = con.execute(
            f"COPY ({reader_sql(url, fmt, columns)}) TO {sql_string(target)} ({PARQUET_FORMAT})"
        ).fetchone()
    except DETERMINISTIC as exc:
        raise ConversionError(f"{exc}; fix the file and upload it again", retryable=False) from exc
    except TRANSIENT as exc:
        raise ConversionError(str(exc), retryable=True) from exc
    rows = int(copied[0]) if copied else 0
    return Converted(rows=rows, rejected=0, account=LineAccount(rows, rows, 0, "the reader"))


def conform_types(
    columns: Sequence[Column], contract: Sequence[Column], fmt: Format, null_only: frozenset[str]
) -> tuple[Column, ...]:
    """Each of a file's columns with its dataset's type where that holds every value of
    the file's type exactly: the same, a widening (INTEGER into BIGINT), for JSON, whose
    numbers are binary floating point anyway, BIGINT into DOUBLE, and any for a column
    whose every value is null."""
    conformed = []
    for column, agreed in zip(columns, contract, strict=True):
        fits = (
            column.name in null_only
            or is_widening(column.type, agreed.type)
            or (fmt == "jsonl" and (column.type, agreed.type) == ("BIGINT", "DOUBLE"))
        )
        if agreed.type != column.type and fits:
            reason = f"{agreed.type.lower()}: the dataset's type, which holds each {column.type}"
            column = Column(column.name, agreed.type, reason)
        conformed.append(column)
    return tuple(conformed)
