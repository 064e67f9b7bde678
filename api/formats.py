"""Answer formats for /v1/sql: JSON (the default), and streamed CSV, NDJSON, Arrow IPC and
Parquet, each written batch by batch so a large result never sits whole in memory."""

from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import Callable, Iterator
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

MEDIA_TYPES = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "ndjson": "application/x-ndjson",
    "arrow": "application/vnd.apache.arrow.stream",
    "parquet": "application/vnd.apache.parquet",
}


def format_for(requested: str | None, accept: str) -> str | None:
    """The format asked for by `format=` or else the Accept header; None if unknown."""
    if requested:
        return requested.lower() if requested.lower() in MEDIA_TYPES else None
    for name, media in MEDIA_TYPES.items():
        if media.split(";")[0] in accept:
            return name
    return "json"


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


def limited(reader: pa.RecordBatchReader, max_rows: int) -> Iterator[pa.RecordBatch]:
    """The reader's batches, cut at `max_rows` rows."""
    left = max_rows
    for batch in reader:
        if left <= 0:
            return
        yield batch.slice(0, left) if batch.num_rows > left else batch
        left -= batch.num_rows


def stream(fmt: str, reader: pa.RecordBatchReader, max_rows: int) -> Iterator[bytes]:
    return WRITERS[fmt](reader.schema, limited(reader, max_rows))


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


def _csv(schema: pa.Schema, batches: Iterator[pa.RecordBatch]) -> Iterator[bytes]:
    sink = _Sink()
    with pacsv.CSVWriter(sink, schema) as writer:
        for batch in batches:
            writer.write_batch(batch)
            yield sink.drain()
    yield sink.drain()  # the header alone, for an empty result


def _ndjson(schema: pa.Schema, batches: Iterator[pa.RecordBatch]) -> Iterator[bytes]:
    for batch in batches:
        lines = (json.dumps(json_value(row), ensure_ascii=False) for row in batch.to_pylist())
        yield ("\n".join(lines) + "\n").encode()


def _arrow(schema: pa.Schema, batches: Iterator[pa.RecordBatch]) -> Iterator[bytes]:
    sink = _Sink()
    with pa.ipc.new_stream(sink, schema) as writer:
        for batch in batches:
            writer.write_batch(batch)
            yield sink.drain()
    yield sink.drain()


def _parquet(schema: pa.Schema, batches: Iterator[pa.RecordBatch]) -> Iterator[bytes]:
    sink = _Sink()
    with pq.ParquetWriter(sink, schema, compression="zstd") as writer:
        for batch in batches:
            writer.write_batch(batch)  # one row group per batch: flushed as it goes
            yield sink.drain()
    yield sink.drain()  # the footer


WRITERS: dict[str, Callable[[pa.Schema, Iterator[pa.RecordBatch]], Iterator[bytes]]] = {
    "csv": _csv,
    "ndjson": _ndjson,
    "arrow": _arrow,
    "parquet": _parquet,
}
