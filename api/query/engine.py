"""SQL over the catalog: the guard here, the query in a query process, over the views of
the datasets the caller may read (`views`).

Each query runs in a query process (`processes`, `process`) after the guard accepted it:
at most `sql_max_concurrent` per API process, each under a time limit and an
address-space limit, its answer capped in rows and bytes.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import duckdb

from api.query.guard import Refused, UnknownDataset, Verdicts, inspect
from api.query.process import Job
from api.query.processes import (
    KILL_GRACE_SECONDS,
    ProcessFailed,
    QueryBusy,
    QueryPool,
    QueryProcess,
)
from api.query.views import Pins, catalog_views, dataset_of
from lakehouse.auth.grants import Principal, Privilege
from lakehouse.errors import InvalidInput
from lakehouse.settings import Settings

__all__ = ["QueryBusy", "QueryEngine", "QueryError", "QueryRefused", "QueryTimeout"]

log = logging.getLogger(__name__)


class QueryError(InvalidInput):
    """The statement failed for a reason the caller can fix (syntax, unknown table...)."""


class QueryRefused(QueryError):
    """The statement is not allowed (not read-only, reads files, settings...)."""


class QueryTimeout(QueryError):
    """The statement ran past the time limit and was interrupted."""


class QueryTooLarge(QueryError):
    """The statement needed more memory than a query may use."""


def _reusable(exc: BaseException) -> bool:
    """Whether the query process whose query raised `exc` may take the next query. Yes
    after the query's own error (it reported it and goes on). No after it ran out of memory
    (its allocator may keep address space that its cap counts, so an ordinary next query
    there could fail for it), nor after anything else (it died, or stopped answering)."""
    return isinstance(exc, QueryError) and not isinstance(exc, QueryTooLarge)


@dataclass(frozen=True)
class QueryResult:
    columns: list[dict[str, str]]
    rows_json: bytes  # the rows as JSON objects, comma-separated
    row_count: int
    truncated: bool
    elapsed_ms: float
    datasets: dict[str, int]  # dataset -> the catalog version the query read

    @property
    def rows(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = json.loads(b"[" + self.rows_json + b"]")
        return rows

    def body(self) -> bytes:
        """The JSON answer, written around the rows without parsing them again."""
        head = json.dumps({"columns": self.columns}, ensure_ascii=False, separators=(",", ":"))
        tail = json.dumps(
            {
                "row_count": self.row_count,
                "truncated": self.truncated,
                "elapsed_ms": self.elapsed_ms,
                "datasets": self.datasets,
            },
            separators=(",", ":"),
        )
        return b"".join(
            (head[:-1].encode(), b',"rows":[', self.rows_json, b"],", tail[1:].encode())
        )


@dataclass
class Running:
    """A query whose first chunk is out; iterate `chunks()` to the end (it gives the query
    process back), or `close()` to stop early."""

    columns: list[dict[str, str]]
    datasets: dict[str, int]
    first: bytes
    _next: Callable[[], tuple[Any, ...]]
    _release: Callable[[bool], None]
    _done: bool = field(default=False)
    _cancel: Cancel | None = None

    def chunks(self, outcome: dict[str, Any] | None = None) -> Iterator[bytes]:
        """The answer's chunks; at the end, `outcome["rows"]` is how many rows it held."""
        try:
            yield self.first
            while not self._done:
                message = self._next()
                if message[0] == "chunk":
                    yield message[1]
                else:  # "end": any notice is already in the last chunk
                    if outcome is not None:
                        outcome["rows"] = message[1].get("rows")
                    self._finish(healthy=True)
        except ProcessFailed:
            # The answer cannot be finished well-formed; the process is already gone.
            log.error("query process failed mid-answer; the answer ends incomplete")
            self._finish(healthy=False)
        except QueryError as exc:
            # The process could not write the notice itself (its writer failed): end here
            # rather than abort the connection.
            log.error("query failed mid-answer without a notice: %s", exc)
            self._finish(healthy=_reusable(exc))
        finally:
            self.close()

    def close(self) -> None:
        """Stop reading: a process still writing is replaced rather than drained."""
        self._finish(healthy=False)

    def _finish(self, healthy: bool) -> None:
        if not self._done:
            self._done = True
            if self._cancel is not None:
                self._cancel.running_on(None)
            self._release(healthy)


class Cancel:
    """A caller's handle on its query from another thread (a Postgres client's cancel
    request): `fire()` kills the query process running it, which frees its slot (the pool
    starts a fresh process in its place), and the query ends as a failed one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: QueryProcess | None = None
        self.fired = False

    def running_on(self, process: QueryProcess | None) -> None:
        """The process now running the query; None once it is given back (from then on a
        late `fire()` must not touch it: it may be running someone else's query)."""
        with self._lock:
            self._process = process
            if self.fired and process is not None:
                process.kill(close=False)

    def fire(self) -> None:
        with self._lock:
            self.fired = True
            if self._process is not None:
                # The thread reading it sees the end of the stream, and closes it.
                self._process.kill(close=False)


class QueryEngine:
    def __init__(
        self, settings: Settings, instance: dg.DagsterInstance, processes: int | None = None
    ) -> None:
        """`processes`: how many query processes it keeps (default sql_max_concurrent)."""
        self.instance = instance
        self.settings = settings
        # Parses statements for the guard and nothing else: no S3, no files.
        self._parser = duckdb.connect(
            ":memory:",
            config={"threads": 1, "memory_limit": "256MB", "enable_external_access": False},
        )
        self._system_views = frozenset(
            row[0]
            for row in self._parser.execute(
                "SELECT view_name FROM duckdb_views() WHERE internal"
            ).fetchall()
        )
        self._parser_lock = threading.Lock()
        self._verdicts = Verdicts()
        self.pool = QueryPool(settings, processes)
        self.views = catalog_views(instance, settings.s3_bucket)

    def close(self) -> None:
        self.pool.close()
        self._parser.close()

    def execute(
        self,
        sql: str,
        max_rows: int,
        as_of: Mapping[str, int],
        max_bytes: int | None = None,
        *,
        reader: Principal,  # no default: a caller that names nobody must not read as admin
    ) -> QueryResult:
        """Run `sql` and collect up to `max_rows` rows (and `sql_max_result_bytes`) as JSON,
        over the datasets `reader` is granted."""
        started = time.perf_counter()
        job, datasets = self._job(sql, Pins(as_of), "json", max_rows, max_bytes, reader)
        process = self._acquire()
        try:
            columns = self._begin(process, job)
            parts: list[bytes] = []
            while (message := self._receive(process, job))[0] == "chunk":
                parts.append(message[1])
            info = message[1]
        except BaseException as exc:
            self.pool.release(process, healthy=_reusable(exc))
            raise
        self.pool.release(process)
        return QueryResult(
            columns=columns,
            rows_json=b",".join(parts),
            row_count=info["rows"],
            truncated=info["truncated"],
            elapsed_ms=round((time.perf_counter() - started) * 1000, 3),
            datasets=datasets,
        )

    def start(
        self,
        sql: str,
        as_of: Mapping[str, int],
        fmt: str,
        max_rows: int,
        *,
        reader: Principal,
        params: Sequence[Any] = (),
        cancel: Cancel | None = None,
        session_pins: bool = False,
    ) -> Running:
        """Check `sql`, run it in a query process and wait for the first chunk of its
        answer in `fmt`: whatever fails before that is an exception here. `as_of` is the
        query's own unless `session_pins` (see `Pins`)."""
        max_bytes = self.settings.sql_max_export_bytes
        pins = Pins(as_of, session=session_pins)
        job, datasets = self._job(sql, pins, fmt, max_rows, max_bytes, reader)
        job["params"] = list(params)
        process = self._acquire()
        if cancel is not None:
            cancel.running_on(process)
        try:
            columns = self._begin(process, job)
            message = self._receive(process, job)
        except BaseException as exc:
            if cancel is not None:
                cancel.running_on(None)
            self.pool.release(process, healthy=_reusable(exc))
            raise
        running = Running(
            columns=columns,
            datasets=datasets,
            first=message[1] if message[0] == "chunk" else b"",
            _next=lambda: self._receive(process, job, streaming=True),
            _release=lambda healthy: self.pool.release(process, healthy),
            _cancel=cancel,
        )
        if message[0] == "end":  # an empty answer with nothing to write (NDJSON)
            running._finish(healthy=True)
        return running

    def describe(
        self,
        sql: str,
        as_of: Mapping[str, int],
        parameters: int,
        *,
        reader: Principal,
    ) -> tuple[list[dict[str, str]], dict[str, int]]:
        """The columns `sql` would answer (its `parameters` bound to NULL), and the version
        of each dataset it reads: checked as a query is, bound in a query process, not run.
        Only the Postgres endpoint describes, so `as_of` is its session's pins."""
        job, datasets = self._job(sql, Pins(as_of, session=True), "arrow", 0, None, reader)
        job["params"], job["describe"] = [None] * parameters, True
        process = self._acquire()
        try:
            columns = self._begin(process, job)
            self._receive(process, job)  # its end
        except BaseException as exc:
            self.pool.release(process, healthy=_reusable(exc))
            raise
        self.pool.release(process)
        return columns, datasets

    def _job(
        self,
        sql: str,
        pins: Pins,
        fmt: str,
        max_rows: int,
        max_bytes: int | None,
        reader: Principal,
    ) -> tuple[Job, dict[str, int]]:
        """Check `sql` against the catalog as it is now, as `reader` sees it: the job for
        a query process, and the version of each dataset it reads.

        Datasets outside the reader's grants are not offered to the guard at all, and a
        name outside them is refused (403) before anything is looked up: the answer is the
        same whether such a dataset exists or not."""
        manifests, definitions = self.views.for_query(reader, pins.versions)
        try:
            views = self._inspect(sql, definitions, remember=not pins.versions)
        except UnknownDataset as exc:
            reader.require(Privilege.READ, dataset_of(exc.name))
            raise QueryRefused(str(exc)) from exc
        except Refused as exc:
            raise QueryRefused(str(exc)) from exc
        except duckdb.Error as exc:
            raise QueryError(str(exc)) from exc
        pins.check_read(views)
        job = Job(
            sql=sql,
            views={name: definitions[name] for name in sorted(views)},
            params=[],
            describe=False,
            format=fmt,
            max_rows=max_rows,
            max_bytes=max_bytes or self.settings.sql_max_result_bytes,
            timeout=self.settings.sql_timeout_seconds,
        )
        datasets = {name: manifests[name].version for name in sorted(views) if name in manifests}
        return job, datasets

    def _inspect(self, sql: str, definitions: Mapping[str, str], remember: bool) -> frozenset[str]:
        """The views `sql` reads, if the guard lets it through: a verdict it gave before on
        the same statement and views, or its own now (`remember`ed unless the views are
        made for this query alone: earlier versions pinned)."""
        verdict = self._verdicts.get(sql, definitions) if remember else None
        if verdict is None:
            with self._parser_lock:
                parser = self._parser.cursor()
            with parser:
                verdict = inspect(parser, sql, definitions, self._system_views)
            if remember:
                self._verdicts.put(sql, definitions, verdict)
        return verdict.views

    def _acquire(self) -> QueryProcess:
        try:
            return self.pool.acquire()
        except (OSError, ProcessFailed) as exc:
            raise QueryBusy(f"no query process could be started ({exc}): retry shortly") from exc

    def _begin(self, process: QueryProcess, job: Job) -> list[dict[str, str]]:
        process.send(job)
        message = self._receive(process, job)
        columns: list[dict[str, str]] = message[1]
        return columns

    def _receive(self, process: QueryProcess, job: Job, streaming: bool = False) -> tuple[Any, ...]:
        """The process's next message; its errors raised as the QueryError they are."""
        try:
            message = process.receive(job["timeout"] + KILL_GRACE_SECONDS)
        except ProcessFailed as exc:
            if streaming:
                raise
            raise self._failed(exc) from exc
        if message[0] != "error":
            return message
        _, kind, text, _ = message
        if kind == "timeout":
            raise self._timeout()
        if kind == "memory":
            raise QueryTooLarge(
                f"the query needed more memory than one query may use "
                f"({self.settings.query_memory.process_mb} MiB: {self.settings.query_memory.why})"
                f": build smaller values, filter or aggregate more ({text.splitlines()[0]})"
            )
        raise QueryError(text)

    def _failed(self, exc: ProcessFailed) -> QueryError:
        if "did not answer" in str(exc):
            return self._timeout()
        return QueryTooLarge(
            "the query's process stopped while running it (most likely it ran out of "
            f"memory, {self.settings.query_memory.process_mb} MiB per query): build smaller "
            "values, filter or aggregate more"
        )

    def _timeout(self) -> QueryTimeout:
        return QueryTimeout(
            f"the query ran longer than {self.settings.sql_timeout_seconds:g} s, the limit, "
            "and was stopped: filter or aggregate more, or ask for fewer rows"
        )
