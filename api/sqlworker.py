"""A query process: runs the statements `api.sqlguard` accepted, one at a time, and writes
their answers, under an address-space limit.

DuckDB's `memory_limit` bounds its buffer manager, not every allocation: one expression
can build a value of gigabytes (`repeat('x', 3000000000)`, `range(300000000)`), and an
allocator keeps what it once held. So queries do not run in the API process but here: this
process caps its own address space (RLIMIT_AS) at its size after start-up plus
`sql_process_memory_mb`, so such a query fails with DuckDB's "out of memory" error and
the process goes on; the API recycles a process that stays large, and kills one that stops
answering. Each API process keeps `sql_max_concurrent` of these (`api.sqlpool`).

Started as `python -m api.sqlworker <fd>`, it talks over the socket `fd` with
`multiprocessing.connection` messages (pickled tuples):

    API -> here:  {"settings": JSON, "readable": the datasets' URL}, then one `Job` per query
    here -> API:  ("ready", info)
                  per job: ("columns", [{"name", "type"}]), ("chunk", bytes)...,
                  ("end", info), or ("error", kind, message, info) at any point before
                  the first chunk of a streamed answer (kind: query, timeout, memory);
                  sent in ("batch", [message, ...]) envelopes

It imports neither Dagster nor FastAPI, to stay small: the API sends each query the
views it reads, and this process keeps them until their definition changes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from typing import Any, TypedDict

import duckdb
import pyarrow as pa

from api.formats import (
    BATCH_WRITERS,
    PIECE_BYTES,
    Budget,
    encodable,
    json_rows,
    ndjson_lines,
    ndjson_notice,
    pieces,
)
from lakehouse.duck import attach_s3, connection_config, sql_string
from lakehouse.settings import Settings

log = logging.getLogger(__name__)

BATCH_ROWS = 65_536
FETCH_ROWS = 2048
# Where a result is read from: the connection that executed it, or a converting relation.
Source = duckdb.DuckDBPyConnection | duckdb.DuckDBPyRelation


class Job(TypedDict):
    sql: str
    views: dict[str, str]  # view name -> its CREATE VIEW statement
    format: str
    max_rows: int
    max_bytes: int
    timeout: float


def open_database(settings: Settings, readable: str) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that reads below the URL `readable` and nothing else.

    Plain `duckdb.connect` rather than dagster-duckdb's resource: this process must not
    import Dagster (it would triple its size, times every query process)."""
    config = connection_config(settings.duckdb_memory_limit, settings.duckdb_threads)
    # No Python variable of this process is ever a table.
    config["python_enable_replacements"] = False
    # Spill files of its own (DuckDB names them alike in every process), bounded in size.
    spill = (settings.state_dir / "query-spill" / str(os.getpid())).absolute()
    shutil.rmtree(spill, ignore_errors=True)  # left by a killed process of the same pid
    spill.mkdir(parents=True)
    config["temp_directory"] = str(spill)
    config["max_temp_directory_size"] = f"{settings.sql_max_spill_mb}MiB"
    con = duckdb.connect(":memory:", config=config)
    attach_s3(con, settings.query_s3())
    con.execute(f"SET allowed_directories = [{sql_string(readable)}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def resident_bytes() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def limit_address_space(headroom_mb: int) -> int:
    """Cap this process's address space at its size now plus `headroom_mb`; the cap."""
    try:
        with open("/proc/self/statm") as statm:
            size = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        log.warning("no /proc/self/statm: query processes run without a memory cap")
        return 0
    cap = size + headroom_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    return cap


# DuckDB sometimes reports a query that failed in one of its threads as interrupted,
# without the error itself (a race in its streaming results, seen about once in 400 runs
# on a loaded machine): only the watchdog's own interrupt is a timeout.
LOST_ERROR = (
    "the query failed, but DuckDB reported only {text!r}, not why (it happens when a query "
    "fails while running in parallel): run it again to see its error"
)


def classify(exc: BaseException, *, timed_out: bool) -> tuple[str, str]:
    """(kind, message) of a failed query: timeout, memory or query. `timed_out`: the
    watchdog interrupted it."""
    text = str(exc)
    if isinstance(exc, duckdb.InterruptException) or "INTERRUPT Error" in text:
        return ("timeout", text) if timed_out else ("query", LOST_ERROR.format(text=text))
    if isinstance(exc, duckdb.OutOfMemoryException | MemoryError) or "Out of Memory" in text:
        return "memory", text
    return "query", text


class Watchdog:
    """Interrupts the query when it runs too long: until the first chunk of the answer is
    out as a whole, then per batch fetched (a slow reader is not the query's fault).

    One thread for the process's life: starting a timer thread per query cost more than
    a small query itself. An interrupt that lands just after a query ended is harmless:
    DuckDB forgets it when the next query starts."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.seconds = 0.0
        self.streaming = False
        self.fired = False  # it interrupted the current query
        self._deadline: float | None = None
        self._cond = threading.Condition()
        threading.Thread(target=self._watch, name="watchdog", daemon=True).start()

    def _watch(self) -> None:
        with self._cond:
            while True:
                if self._deadline is None:
                    self._cond.wait()
                    continue
                left = self._deadline - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                self._deadline = None
                self.fired = True
                self.con.interrupt()

    def start(self, seconds: float) -> None:
        """A new query: the whole-answer limit until `first_chunk_out`."""
        self.seconds, self.streaming, self.fired = seconds, False, False
        self.arm()

    def arm(self) -> None:
        with self._cond:
            self._deadline = time.monotonic() + self.seconds
            self._cond.notify()

    def disarm(self) -> None:
        with self._cond:
            self._deadline = None

    def first_chunk_out(self) -> None:
        self.disarm()
        self.streaming = True

    @contextmanager
    def fetching(self) -> Iterator[None]:
        if self.streaming:
            self.arm()
        try:
            yield
        finally:
            if self.streaming:
                self.disarm()


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
        # Executed on the connection, which binds it once (a relation binds again to run).
        self.con.execute(job["sql"])
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
            relation = self.con.sql(job["sql"]).project(", ".join(expressions))
        budget = Budget(job["max_rows"], job["max_bytes"])
        if fmt == "json":
            self._json(relation, names, budget, watchdog)
            return
        if fmt == "ndjson":
            rows = self._rows(relation, budget, watchdog)
            chunks = _lines_in_chunks(ndjson_lines(names, rows), budget)
            chunks = _then(chunks, lambda: ndjson_notice(budget))
        else:
            reader = relation.to_arrow_reader(BATCH_ROWS)
            batches = self._batches(reader, budget, watchdog)
            chunks = BATCH_WRITERS[fmt](reader.schema, batches, budget)
        self._stream(chunks, budget, watchdog)

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
        budget: Budget,
        watchdog: Watchdog,
    ) -> None:
        """Rows as JSON objects, joined by commas, in chunks of about PIECE_BYTES; the
        API wraps them in the answer. Cut before the row that would pass max_bytes."""
        parts: list[bytes] = []
        size = 0
        for row in json_rows(names, self._rows(relation, budget, watchdog)):
            if budget.bytes + len(row) + 1 > budget.max_bytes:
                budget.rows -= 1  # counted when fetched, left out here
                budget.cut("bytes")
                break
            budget.bytes += len(row) + 1
            parts.append(row)
            size += len(row)
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
        while not budget.full():
            try:
                with watchdog.fetching():
                    rows = relation.fetchmany(FETCH_ROWS)
            except (duckdb.Error, MemoryError, OSError) as exc:
                budget.fail(*classify(exc, timed_out=watchdog.fired))
                return
            if not rows:
                return
            for row in rows:
                if budget.full():
                    return
                if budget.rows >= budget.max_rows:
                    budget.cut("rows")
                    return
                budget.rows += 1
                yield row

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
    settings = Settings.model_validate_json(start["settings"])
    con = open_database(settings, start["readable"])
    limit_address_space(settings.sql_process_memory_mb)
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        QueryServer(conn, con).serve()  # ends when the API process goes away


if __name__ == "__main__":
    main()
