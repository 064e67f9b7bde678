"""A query process: runs the statements `api.query.guard` accepted, one at a time, and writes
their answers, under an address-space limit.

DuckDB's `memory_limit` bounds its buffer manager, not every allocation: one expression
can build a value of gigabytes (`repeat('x', 3000000000)`, `range(300000000)`), and an
allocator keeps what it once held. So queries do not run in the API process but here: this
process caps its own address space (RLIMIT_AS) at its size after start-up plus
`sql_process_memory_mb`, so such a query fails with DuckDB's "out of memory" error and
the process answers it; the API then replaces it (as one that stays large), and kills one
that stops answering. Each API process keeps `sql_max_concurrent` of these
(`api.query.processes`).

Started as `python -m api.query.process <fd>`, it talks over the socket `fd` with
`multiprocessing.connection` messages (pickled tuples):

    API -> here:  {"sandbox": `SandboxConfig` JSON}, then one `Job` per query
    here -> API:  ("ready", info)
                  per job: ("columns", [{"name", "type"}]), ("chunk", bytes)...,
                  (a `describe` job: its columns and its end, the query bound, not run)
                  ("end", info), or ("error", kind, message, info) at any point before
                  the first chunk of a streamed answer (kind: query, timeout, memory);
                  sent in ("batch", [message, ...]) envelopes

It imports neither Dagster nor FastAPI, to stay small: the API sends each query the
views it reads, and this process keeps them until their definition changes.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import Any, TypedDict

import duckdb
import pyarrow as pa
from duckdb.sqltypes import DuckDBPyType

from api.query.formats import (
    BATCH_WRITERS,
    PIECE_BYTES,
    Budget,
    JsonRows,
    encodable,
    ndjson_lines,
    ndjson_notice,
    pieces,
)
from api.query.sandbox import (
    SandboxConfig,
    Watchdog,
    classify,
    limit_address_space,
    open_database,
    resident_bytes,
)

log = logging.getLogger(__name__)

BATCH_ROWS = 65_536
FETCH_ROWS = 2048
# JSON rows are encoded about this many bytes at a time: one call for many rows, and no
# more memory than this for a call (a slice's rows are set from the last one's row size).
SLICE_BYTES = 1024 * 1024
# Where a result is read from: the connection that executed it, or a converting relation.
Source = duckdb.DuckDBPyConnection | duckdb.DuckDBPyRelation
Rows = list[tuple[Any, ...]]


class Job(TypedDict):
    sql: str
    views: dict[str, str]  # view name -> its CREATE VIEW statement
    params: list[Any]  # values of the statement's $1, $2... (the Postgres endpoint's)
    describe: bool  # only bind the statement and answer its columns (NULL parameters)
    format: str
    max_rows: int
    max_bytes: int
    timeout: float


class QueryServer:
    def __init__(self, conn: Connection, con: duckdb.DuckDBPyConnection) -> None:
        self.conn = conn
        self.con = con
        self.views: dict[str, str] = {}
        self.watchdog = Watchdog(con)
        self.outbox: list[tuple[Any, ...]] = []

    def post(self, message: tuple[Any, ...], flush: bool = False) -> None:
        """Queue a message; with `flush`, send what is queued as one ("batch", [...]): a
        small JSON answer crosses to the API in one message instead of three."""
        self.outbox.append(message)
        if flush:
            batch, self.outbox = self.outbox, []
            self.conn.send(("batch", batch))

    def serve(self) -> None:
        self.conn.send(("ready", {"rss": resident_bytes()}))
        while True:
            try:
                job: Job = self.conn.recv()
            except EOFError:
                return  # the API process closed its end: it stopped
            self.run(job)

    def run(self, job: Job) -> None:
        watchdog = self.watchdog
        watchdog.start(job["timeout"])
        try:
            self._run(job, watchdog)
        except (duckdb.Error, MemoryError, OSError, pa.ArrowException) as exc:
            kind, message = classify(exc, timed_out=watchdog.fired)
            self.outbox.clear()
            self.post(("error", kind, message, self._info()), flush=True)
        finally:
            watchdog.disarm()
            self.outbox.clear()

    def _sync_views(self, views: dict[str, str]) -> None:
        for name, statement in views.items():
            if self.views.get(name) != statement:
                self.views.pop(name, None)
                self.con.execute(statement)
                self.views[name] = statement

    def _run(self, job: Job, watchdog: Watchdog) -> None:
        self._sync_views(job["views"])
        if job["describe"]:
            self._describe(job)
            return
        # Executed on the connection, which binds it once (a relation binds again to run).
        self.con.execute(job["sql"], job["params"] or None)
        description = self.con.description
        if not description:  # the guard lets only SELECT through; this is a backstop
            self.post(("error", "query", "not a query", self._info()), flush=True)
            return
        names = [d[0] for d in description]
        types = [d[1] for d in description]
        columns = [{"name": n, "type": str(t)} for n, t in zip(names, types, strict=True)]
        self.post(("columns", columns))
        fmt = job["format"]
        relation: Source = self.con
        expressions = encodable(names, types, fmt)
        if expressions:  # rare: run it again, converted (a relation keeps the SQL intact)
            relation = self.con.sql(job["sql"], params=job["params"] or None)
            relation = relation.project(", ".join(expressions))
        budget = Budget(job["max_rows"], job["max_bytes"])
        if fmt == "json":
            self._json(relation, names, types, budget, watchdog)
            return
        if fmt == "ndjson":
            rows = self._rows(relation, budget, watchdog)
            chunks = _lines_in_chunks(ndjson_lines(names, types, rows), budget)
            chunks = _then(chunks, lambda: ndjson_notice(budget))
        else:
            reader = relation.to_arrow_reader(BATCH_ROWS)
            batches = self._batches(reader, budget, watchdog)
            chunks = BATCH_WRITERS[fmt](reader.schema, batches, budget)
        self._stream(chunks, budget, watchdog)

    def _describe(self, job: Job) -> None:
        """Only the columns: a relation binds its statement without running it."""
        bound = self.con.sql(job["sql"], params=job["params"] or None)
        named = zip(bound.columns, bound.types, strict=True)
        self.post(("columns", [{"name": n, "type": str(t)} for n, t in named]))
        self.post(("end", self._info(Budget(0, 0))), flush=True)

    def _stream(self, chunks: Iterator[bytes], budget: Budget, watchdog: Watchdog) -> None:
        first = True
        for chunk in chunks:
            if first:
                if budget.error and budget.rows == 0:
                    # Failed before any row: the API can still answer with an error status.
                    self.post(("error", budget.error, budget.message, self._info()), flush=True)
                    return
                watchdog.first_chunk_out()
                first = False
            budget.bytes += len(chunk)
            if chunk:
                self.post(("chunk", chunk), flush=True)
        self.post(("end", self._info(budget)), flush=True)

    def _json(
        self,
        relation: Source,
        names: list[str],
        types: list[DuckDBPyType],
        budget: Budget,
        watchdog: Watchdog,
    ) -> None:
        """Rows as JSON objects, joined by commas, in chunks of about PIECE_BYTES; the
        API wraps them in the answer. Cut before the row that would pass max_bytes."""
        writer = JsonRows(names, types)
        parts: list[bytes] = []
        size = 0
        for rows, chunk in _encoded(self._row_lists(relation, budget, watchdog), writer):
            if budget.bytes + len(chunk) + 1 > budget.max_bytes:
                rows, chunk = _fitting(writer, rows, budget)
            budget.rows += len(rows)
            if chunk:
                budget.bytes += len(chunk) + 1  # as one row's bytes and its comma each
                parts.append(chunk)
                size += len(chunk)
            if budget.reason == "bytes":
                break
            if size >= PIECE_BYTES:  # no message larger than a piece
                self.post(("chunk", b",".join(parts)), flush=True)
                parts, size = [], 0
        if budget.error:
            self.outbox.clear()  # the API drops the rows it has
            self.post(("error", budget.error, budget.message, self._info()), flush=True)
            return
        if parts:
            self.post(("chunk", b",".join(parts)))
        self.post(("end", self._info(budget)), flush=True)

    def _rows(
        self, relation: Source, budget: Budget, watchdog: Watchdog
    ) -> Iterator[tuple[Any, ...]]:
        """The rows, up to max_rows (truncated when there is one more); a failure is
        recorded in the budget and ends the rows."""
        while not budget.full() and (rows := self._fetch(relation, budget, watchdog)):
            for row in rows:
                if budget.full():
                    return
                if budget.rows >= budget.max_rows:
                    budget.cut("rows")
                    return
                budget.rows += 1
                yield row

    def _row_lists(self, relation: Source, budget: Budget, watchdog: Watchdog) -> Iterator[Rows]:
        """The rows as fetched, up to max_rows (truncated when there is one more); a
        failure is recorded in the budget and ends the rows."""
        seen = 0
        while not budget.full() and (rows := self._fetch(relation, budget, watchdog)):
            if len(rows) > budget.max_rows - seen:
                rows = rows[: budget.max_rows - seen]
                budget.cut("rows")
            seen += len(rows)
            if rows:
                yield rows
            if budget.truncated:
                return

    def _fetch(self, relation: Source, budget: Budget, watchdog: Watchdog) -> Rows:
        """The next FETCH_ROWS rows; none at the end, or when the fetch failed (recorded in
        the budget)."""
        try:
            with watchdog.fetching():
                return relation.fetchmany(FETCH_ROWS)
        except (duckdb.Error, MemoryError, OSError) as exc:
            budget.fail(*classify(exc, timed_out=watchdog.fired))
            return []

    def _batches(
        self, reader: pa.RecordBatchReader, budget: Budget, watchdog: Watchdog
    ) -> Iterator[pa.RecordBatch]:
        """The result's batches in pieces, up to max_rows and max_bytes."""
        while not budget.full():
            try:
                with watchdog.fetching():
                    batch = reader.read_next_batch()
            except StopIteration:
                return
            except (duckdb.Error, MemoryError, OSError, pa.ArrowException) as exc:
                budget.fail(*classify(exc, timed_out=watchdog.fired))
                return
            left = budget.max_rows - budget.rows
            if left <= 0:
                return  # streamed answers announce their row limit in a header
            for piece in pieces(batch.slice(0, left)):
                if budget.full():
                    return
                budget.rows += piece.num_rows
                yield piece

    def _info(self, budget: Budget | None = None) -> dict[str, Any]:
        info: dict[str, Any] = {"rss": resident_bytes()}
        if budget is not None:
            info |= {
                "rows": budget.rows,
                "truncated": budget.truncated,
                "reason": budget.reason,
                "error": budget.error,
                "message": budget.message,
            }
        return info


def _encoded(lists: Iterator[Rows], writer: JsonRows) -> Iterator[tuple[Rows, bytes]]:
    """The rows of `lists` in slices of about SLICE_BYTES of JSON (a slice's row count set
    from the row size of the one before), each with its JSON."""
    step = 16
    for rows in lists:
        start = 0
        while start < len(rows):
            piece = rows[start : start + step]
            start += len(piece)
            chunk = writer.encode(piece)
            yield piece, chunk
            step = max(1, min(FETCH_ROWS, SLICE_BYTES * len(piece) // (len(chunk) + 1)))


def _fitting(writer: JsonRows, rows: Rows, budget: Budget) -> tuple[Rows, bytes]:
    """The first of `rows` that fit within max_bytes, and their JSON; the answer is cut
    after them."""
    fitted: list[bytes] = []
    room = budget.max_bytes - budget.bytes
    for row in rows:
        encoded = writer.encode([row])
        if len(encoded) + 1 > room:
            break
        fitted.append(encoded)
        room -= len(encoded) + 1
    budget.cut("bytes")
    return rows[: len(fitted)], b",".join(fitted)


def _lines_in_chunks(lines: Iterator[bytes], budget: Budget) -> Iterator[bytes]:
    """Lines gathered into chunks of at most FETCH_ROWS lines or about PIECE_BYTES (the
    first rows go out early, as a batch would); cut at the byte cap."""
    parts: list[bytes] = []
    size = 0
    for line in lines:
        parts.append(line)
        size += len(line)
        if (
            size >= PIECE_BYTES
            or len(parts) >= FETCH_ROWS
            or budget.bytes + size >= budget.max_bytes
        ):
            yield b"".join(parts)
            parts, size = [], 0
    yield b"".join(parts)


def _then(chunks: Iterator[bytes], last: Callable[[], bytes]) -> Iterator[bytes]:
    yield from chunks
    yield last()


def main() -> None:
    # Ctrl-C in a terminal reaches the whole process group: the API stops this process
    # (it closes the socket) when it stops itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(int(sys.argv[1]))
    start = conn.recv()
    config = SandboxConfig.model_validate_json(start["sandbox"])
    con = open_database(config)
    limit_address_space(config.headroom_mb)
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        QueryServer(conn, con).serve()  # ends when the API process goes away


if __name__ == "__main__":
    main()
