"""Answer formats for /v1/sql: JSON (the default), and streamed CSV, NDJSON, Arrow IPC and
Parquet, each written batch by batch so a large result never sits whole in memory.

The encoders run in the query process (`api.query.process`), under its memory limit, and keep
a `Budget`: rows and bytes written, and why the answer stopped early. A streamed answer
never breaks after its 200: columns a format cannot hold are converted before the first
byte (`encodable`), and when the byte cap is reached or the query fails after the first
rows, the stream ends well-formed with an in-band notice (`NOTICE_KEY`):

| format  | notice, only when the answer stopped early |
|---------|--------------------------------------------|
| csv     | a last line `# lakehouse: {json}` (readers skip it with `comment='#'`) |
| ndjson  | a last line `{"@lakehouse": {json}}` |
| arrow   | a last, empty record batch whose custom metadata holds `lakehouse` = json |
| parquet | the footer's key-value metadata holds `lakehouse` = json |

where json is `{"truncated": true, "reason": "bytes", "message": ...}` or
`{"error": ..., "message": ...}`.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from duckdb.sqltypes import DuckDBPyType

MEDIA_TYPES = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "ndjson": "application/x-ndjson",
    "arrow": "application/vnd.apache.arrow.stream",
    "parquet": "application/vnd.apache.parquet",
}
STREAMED = ("csv", "ndjson", "arrow", "parquet")
ROW_FORMATS = ("json", "ndjson")  # written from Python values, not Arrow batches
NOTICE_KEY = "lakehouse"
NDJSON_NOTICE_KEY = "@lakehouse"
# A batch is cut into pieces of about this many bytes, so that the byte cap is kept to
# within one piece and no message between the processes is larger.
PIECE_BYTES = 4 * 1024 * 1024

_NESTED = frozenset({"list", "array", "struct", "map", "union"})
# The DuckDB types the Postgres endpoint sends as they are (api/pgwire/types.py names the
# Postgres type of each); it gets every other scalar as text, every nested value as JSON.
PG_NATIVE = frozenset((
    "boolean", "tinyint", "smallint", "utinyint", "integer", "usmallint", "bigint", "uinteger",
    "ubigint", "hugeint", "decimal", "float", "double", "varchar", "enum", "blob", "date", "time",
    "timestamp", "timestamp_ms", "timestamp_s", "timestamp with time zone", "uuid",
))  # fmt: skip
# DuckDB types each format cannot hold as they are, found by writing every type DuckDB
# has (`test_all_types()`) with pyarrow: they are written as text instead.
_AS_TEXT = {
    "csv": frozenset({"interval", "blob", "bit", "bignum", "varint", "geometry", "variant"}),
    "parquet": frozenset({"interval", "union", "variant"}),
    "arrow": frozenset({"variant"}),
}


def format_for(requested: str | None, accept: str) -> str | None:
    """The format asked for by `format=` or else the Accept header (JSON for any type, or
    none named); None if neither names one we write."""
    if requested:
        return requested.lower() if requested.lower() in MEDIA_TYPES else None
    for name, media in MEDIA_TYPES.items():
        if media.split(";")[0] in accept:
            return name
    ranges = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    return "json" if ranges & {"", "*/*", "application/*"} else None


def json_value(value: Any) -> Any:
    """A JSON-safe form of a DuckDB value that loses nothing: decimals as exact strings,
    dates and times as ISO 8601, bytes as base64, non-finite floats as strings."""
    match value:
        case None | bool() | int() | str():
            return value
        case float():
            return value if math.isfinite(value) else str(value)
        case Decimal():
            return str(value)
        case datetime() | date() | time():
            return value.isoformat()
        case timedelta():
            return str(value)
        case bytes() | bytearray() | memoryview():
            return base64.b64encode(bytes(value)).decode()
        case UUID():
            return str(value)
        case dict():
            return {str(k): json_value(v) for k, v in value.items()}
        case list() | tuple():
            return [json_value(v) for v in value]
    return str(value)


def encodable(names: Sequence[str], types: Sequence[DuckDBPyType], fmt: str) -> list[str]:
    """SQL expressions over the query's columns that `fmt` can write, or [] if every column
    can be written as it is: nested values holding a type the format cannot write become
    JSON text, such scalars plain text."""
    bad = _AS_TEXT.get(fmt, frozenset())
    if not bad and fmt != "pg":
        return []
    expressions = []
    changed = False
    for name, kind in zip(names, types, strict=True):
        column = '"' + name.replace('"', '""') + '"'
        text = str(kind).lower()
        nested = kind.id in _NESTED
        if nested and (fmt in ("csv", "pg") or any(word in text for word in bad)):
            expressions.append(f"CAST(to_json({column}) AS VARCHAR) AS {column}")
            changed = True
        elif kind.id in bad or (fmt == "pg" and kind.id not in PG_NATIVE):
            expressions.append(f"CAST({column} AS VARCHAR) AS {column}")
            changed = True
        else:
            expressions.append(column)
    return expressions if changed else []


@dataclass
class Budget:
    """What an answer may still hold, and why it stopped early (if it did)."""

    max_rows: int
    max_bytes: int
    rows: int = 0
    bytes: int = 0
    truncated: bool = False  # more rows than max_rows, or more bytes than max_bytes
    reason: str = ""  # "rows" or "bytes"
    error: str = ""  # "timeout", "memory" or "query": the query failed after its first rows
    message: str = ""

    def full(self) -> bool:
        if self.bytes >= self.max_bytes:
            self.cut("bytes")
        return self.truncated or bool(self.error)

    def cut(self, reason: str) -> None:
        self.truncated, self.reason = True, reason

    def fail(self, kind: str, message: str) -> None:
        self.error, self.message = kind, message

    def notice(self) -> dict[str, Any] | None:
        """What the in-band notice says, if the answer stopped early for want of bytes or
        because the query failed (the row limit is announced in a header instead)."""
        if self.error:
            return {"error": self.error, "message": self.message}
        if self.truncated and self.reason == "bytes":
            return {
                "truncated": True,
                "reason": "bytes",
                "message": f"the answer reached the limit of {self.max_bytes} bytes "
                "(LAKEHOUSE_SQL_MAX_EXPORT_BYTES) and was cut after a whole row: select "
                "fewer rows or columns",
            }
        return None


def pieces(batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
    """`batch` in slices of about PIECE_BYTES (a single wider row is its own slice)."""
    size = batch.nbytes
    if size <= PIECE_BYTES or batch.num_rows <= 1:
        yield batch
        return
    rows = max(1, batch.num_rows * PIECE_BYTES // size)
    for start in range(0, batch.num_rows, rows):
        yield batch.slice(start, rows)


class _Sink(io.RawIOBase):
    """Collects what a writer writes, handed on by `drain()`; `tell()` keeps counting,
    since Parquet's footer records absolute offsets."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._chunks.append(chunk)
        self._position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._position

    def drain(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


def _notice_text(budget: Budget) -> str | None:
    notice = budget.notice()
    return json.dumps(notice, ensure_ascii=False) if notice else None


def _csv(schema: pa.Schema, batches: Iterator[pa.RecordBatch], budget: Budget) -> Iterator[bytes]:
    sink = _Sink()
    with pacsv.CSVWriter(sink, schema) as writer:
        for batch in batches:
            writer.write_batch(batch)
            yield sink.drain()
    tail = sink.drain()  # the header alone, for an empty result
    notice = _notice_text(budget)
    yield tail + (f"# {NOTICE_KEY}: {notice}\n".encode() if notice else b"")


def _arrow(schema: pa.Schema, batches: Iterator[pa.RecordBatch], budget: Budget) -> Iterator[bytes]:
    sink = _Sink()
    with pa.ipc.new_stream(sink, schema) as writer:
        for batch in batches:
            writer.write_batch(batch)
            yield sink.drain()
        notice = _notice_text(budget)
        if notice:
            empty = pa.RecordBatch.from_pylist([], schema=schema)
            writer.write_batch(empty, custom_metadata={NOTICE_KEY: notice})
    yield sink.drain()


def _parquet(
    schema: pa.Schema, batches: Iterator[pa.RecordBatch], budget: Budget
) -> Iterator[bytes]:
    sink = _Sink()
    with pq.ParquetWriter(sink, schema, compression="zstd") as writer:
        for batch in batches:
            writer.write_batch(batch)  # one row group per batch: flushed as it goes
            yield sink.drain()
        notice = _notice_text(budget)
        if notice:
            writer.add_key_value_metadata({NOTICE_KEY: notice})
    yield sink.drain()  # the footer


BatchWriter = Callable[[pa.Schema, Iterator[pa.RecordBatch], Budget], Iterator[bytes]]
# "pg": Arrow for the Postgres endpoint, its columns as `encodable` makes them for Postgres.
BATCH_WRITERS: dict[str, BatchWriter] = {
    "csv": _csv,
    "arrow": _arrow,
    "parquet": _parquet,
    "pg": _arrow,
}


# DuckDB types whose Python values JSON holds as they are; every other column's values go
# through `json_value`.
_JSON_AS_IS = frozenset((
    "boolean", "tinyint", "smallint", "integer", "bigint", "hugeint", "utinyint", "usmallint",
    "uinteger", "ubigint", "uhugeint", "varchar",
))  # fmt: skip
# Made once: `json.dumps` with options builds an encoder per call, most of a row's cost.
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_SPACED = json.JSONEncoder(ensure_ascii=False).encode
# Types whose values may be integers past 64 bits, which orjson refuses to write.
_WIDE_INTEGERS = ("hugeint", "bignum", "varint")


class JsonRows:
    """Rows as compact JSON objects, as FastAPI would write them, joined by commas: many
    rows per call of the encoder, orjson's (a tenth of the standard library's time per row:
    TPC-H Q16's 2,762 rows went from 6.9 to 1.6 ms); the standard library's where a value
    may be an integer past 64 bits. Both write the same values; orjson writes a float's
    exponent without its sign or zeros (1e16, not 1e+16)."""

    def __init__(self, names: Sequence[str], types: Sequence[DuckDBPyType]) -> None:
        self.names, self.types = names, types
        self.wide = any(word in str(kind).lower() for kind in types for word in _WIDE_INTEGERS)

    def encode(self, rows: Sequence[tuple[Any, ...]]) -> bytes:
        records = list(_records(self.names, self.types, iter(rows)))
        if not self.wide:
            with contextlib.suppress(orjson.JSONEncodeError):
                return orjson.dumps(records)[1:-1]
        return _COMPACT(records).encode()[1:-1]  # the list's brackets dropped


def ndjson_lines(
    names: Sequence[str], types: Sequence[DuckDBPyType], rows: Iterator[tuple[Any, ...]]
) -> Iterator[bytes]:
    for record in _records(names, types, rows):
        yield _SPACED(record).encode() + b"\n"


def _records(
    names: Sequence[str], types: Sequence[DuckDBPyType], rows: Iterator[tuple[Any, ...]]
) -> Iterator[dict[str, Any]]:
    """Each row as a dict of JSON-safe values (`json_value` only where the type needs it)."""
    safe = [None if kind.id in _JSON_AS_IS else json_value for kind in types]
    if not any(safe):
        for row in rows:
            yield dict(zip(names, row, strict=True))
        return
    for row in rows:
        yield {
            name: value if make is None else make(value)
            for name, make, value in zip(names, safe, row, strict=True)
        }


def ndjson_notice(budget: Budget) -> bytes:
    notice = budget.notice()
    if not notice:
        return b""
    return json.dumps({NDJSON_NOTICE_KEY: notice}, ensure_ascii=False).encode() + b"\n"
