"""SQL over the catalog: the guard here, the query in a query process, one view per dataset.

The views point at exactly the objects of each dataset's current manifest. Before each
query the engine asks the Dagster instance whether the event log changed (microseconds),
and only then reads {dataset: latest materialization id} and the manifests that changed,
so a dataset materialized a moment ago is queryable on the next request.

The catalog the engine knows is an immutable snapshot, replaced as a whole (copy on
write): a query takes the snapshot once, so it sees each dataset at exactly one version
and reports which, and a refresh never waits for running queries (nor they for it). The
query process receives the definitions of the views the query reads and (re)creates those
that changed.

Each query runs in a query process (`api.sqlpool`, `api.sqlworker`) after `sqlguard`
accepted it: at most `sql_max_concurrent` per API process, each under a time limit and an
address-space limit, its answer capped in rows and bytes.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import duckdb

from api.sqlguard import Refused, inspect
from api.sqlpool import KILL_GRACE_SECONDS, ProcessFailed, QueryBusy, QueryPool, QueryProcess
from api.sqlworker import Job
from lakehouse.catalog import (
    Manifest,
    change_marker,
    latest_storage_ids,
    manifest_at,
    manifests_by_storage_id,
)
from lakehouse.convert import REJECT_SCHEMA
from lakehouse.duck import sql_identifier, sql_string
from lakehouse.names import REJECTS_SUFFIX
from lakehouse.settings import Settings

__all__ = ["QueryBusy", "QueryEngine", "QueryError", "QueryRefused", "QueryTimeout"]

log = logging.getLogger(__name__)

# The `<name>__rejects` view's columns, as the conversion writes them.
REJECT_COLUMNS: list[tuple[str, str]] = list(REJECT_SCHEMA)


class QueryError(ValueError):
    """The statement failed for a reason the caller can fix (syntax, unknown table...)."""


class QueryRefused(QueryError):
    """The statement is not allowed (not read-only, reads files, settings...)."""


class QueryTimeout(QueryError):
    """The statement ran past the time limit and was interrupted."""


class QueryTooLarge(QueryError):
    """The statement needed more memory than a query may use."""


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

    def chunks(self) -> Iterator[bytes]:
        try:
            yield self.first
            while not self._done:
                message = self._next()
                if message[0] == "chunk":
                    yield message[1]
                else:  # "end": any notice is already in the last chunk
                    self._finish(healthy=True)
        except ProcessFailed:
            # The answer cannot be finished well-formed; the process is already gone.
            log.error("query process failed mid-answer; the answer ends incomplete")
            self._finish(healthy=False)
        except QueryError as exc:
            # The process could not write the notice itself (its writer failed): end here
            # rather than abort the connection.
            log.error("query failed mid-answer without a notice: %s", exc)
            self._finish(healthy=True)
        finally:
            self.close()

    def close(self) -> None:
        """Stop reading: a process still writing is replaced rather than drained."""
        self._finish(healthy=False)

    def _finish(self, healthy: bool) -> None:
        if not self._done:
            self._done = True
            self._release(healthy)


@dataclass(frozen=True)
class Catalog:
    """What the engine knows of the catalog at one moment; replaced, never changed."""

    storage_ids: Mapping[str, int] = field(default_factory=dict)
    manifests: Mapping[str, Manifest] = field(default_factory=dict)
    views: Mapping[str, str] = field(default_factory=dict)  # view name -> CREATE VIEW
    marker: object = None


def rejects_view(name: str) -> str:
    return f"{name}{REJECTS_SUFFIX}"


def view_statements(manifest: Manifest, bucket_url: str) -> dict[str, str]:
    """The dataset's view, and its `<name>__rejects` view of the rows that did not parse."""
    if not manifest.columns:
        return {}  # every ingest so far failed: there is nothing to query yet
    columns = [(c.name, c.type) for c in manifest.columns]
    return {
        manifest.name: _view(manifest.name, [o.key for o in manifest.objects], columns, bucket_url),
        rejects_view(manifest.name): _view(
            rejects_view(manifest.name),
            [r.key for r in manifest.rejects],
            REJECT_COLUMNS,
            bucket_url,
        ),
    }


def _view(name: str, keys: list[str], columns: list[tuple[str, str]], bucket_url: str) -> str:
    if not keys:
        # No objects (a header-only file, no rejects): still a view with its columns.
        typed = ", ".join(f"CAST(NULL AS {t}) AS {sql_identifier(n)}" for n, t in columns)
        body = f"SELECT {typed} WHERE false"
    else:
        urls = ", ".join(sql_string(f"{bucket_url}/{key}") for key in keys)
        body = f"SELECT * FROM read_parquet([{urls}])"
    return f"CREATE OR REPLACE VIEW {sql_identifier(name)} AS {body}"


class QueryEngine:
    def __init__(self, settings: Settings, instance: dg.DagsterInstance) -> None:
        self.instance = instance
        self.settings = settings
        self.bucket_url = f"s3://{settings.s3_bucket}"
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
        self.pool = QueryPool(settings)
        self._refreshing = threading.Lock()
        self._catalog = Catalog(marker=object())

    def close(self) -> None:
        self.pool.close()
        self._parser.close()

    def refresh(self) -> Catalog:
        """The catalog as it is now; read again only if the event log changed."""
        catalog = self._catalog
        marker = change_marker(self.instance)
        if marker == catalog.marker:
            return catalog
        with self._refreshing:  # refreshes wait for one another, never for queries
            catalog = self._catalog
            if marker == catalog.marker:
                return catalog
            current = latest_storage_ids(self.instance)
            changed = [sid for name, sid in current.items() if catalog.storage_ids.get(name) != sid]
            manifests = {
                name: manifest
                for name, manifest in catalog.manifests.items()
                if name in current and name not in changed
            }
            for manifest in manifests_by_storage_id(self.instance, changed).values():
                manifests[manifest.name] = manifest
            views: dict[str, str] = {}
            for manifest in manifests.values():
                views |= view_statements(manifest, self.bucket_url)
            self._catalog = Catalog(dict(current), manifests, views, marker)
            return self._catalog

    def execute(
        self, sql: str, max_rows: int, as_of: Mapping[str, int], max_bytes: int | None = None
    ) -> QueryResult:
        """Run `sql` and collect up to `max_rows` rows (and `sql_max_result_bytes`) as JSON."""
        started = time.perf_counter()
        job, datasets = self._job(sql, as_of, "json", max_rows, max_bytes)
        process = self._acquire()
        try:
            columns = self._begin(process, job)
            parts: list[bytes] = []
            while (message := self._receive(process, job))[0] == "chunk":
                parts.append(message[1])
            info = message[1]
        except QueryError:
            self.pool.release(process)  # it reported the error and goes on (or is gone)
            raise
        except BaseException:
            self.pool.release(process, healthy=False)
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

    def start(self, sql: str, as_of: Mapping[str, int], fmt: str, max_rows: int) -> Running:
        """Check `sql`, run it in a query process and wait for the first chunk of its
        answer in `fmt`: whatever fails before that is an exception here."""
        job, datasets = self._job(sql, as_of, fmt, max_rows, self.settings.sql_max_export_bytes)
        process = self._acquire()
        try:
            columns = self._begin(process, job)
            message = self._receive(process, job)
        except QueryError:
            self.pool.release(process)
            raise
        except BaseException:
            self.pool.release(process, healthy=False)
            raise
        running = Running(
            columns=columns,
            datasets=datasets,
            first=message[1] if message[0] == "chunk" else b"",
            _next=lambda: self._receive(process, job, streaming=True),
            _release=lambda healthy: self.pool.release(process, healthy),
        )
        if message[0] == "end":  # an empty answer with nothing to write (NDJSON)
            running._finish(healthy=True)
        return running

    def _job(
        self, sql: str, as_of: Mapping[str, int], fmt: str, max_rows: int, max_bytes: int | None
    ) -> tuple[Job, dict[str, int]]:
        """Check `sql` against the catalog as it is now: the job for a query process, and
        the version of each dataset it reads."""
        catalog = self.refresh()
        pinned = self._pinned(as_of)
        manifests: Mapping[str, Manifest] = catalog.manifests
        definitions: Mapping[str, str] = catalog.views
        if pinned:
            manifests = dict(manifests) | pinned
            definitions = dict(definitions)
            for manifest in pinned.values():
                definitions |= view_statements(manifest, self.bucket_url)
        try:
            with self._parser_lock:
                parser = self._parser.cursor()
            with parser:
                views = inspect(parser, sql, definitions, self._system_views).views
        except Refused as exc:
            raise QueryRefused(str(exc)) from exc
        except duckdb.Error as exc:
            raise QueryError(str(exc)) from exc
        job = Job(
            sql=sql,
            views={name: definitions[name] for name in sorted(views)},
            format=fmt,
            max_rows=max_rows,
            max_bytes=max_bytes or self.settings.sql_max_result_bytes,
            timeout=self.settings.sql_timeout_seconds,
        )
        datasets = {name: manifests[name].version for name in sorted(views) if name in manifests}
        return job, datasets

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
                f"({self.settings.sql_process_memory_mb} MiB, LAKEHOUSE_SQL_PROCESS_MEMORY_MB)"
                f": build smaller values, filter or aggregate more ({text.splitlines()[0]})"
            )
        raise QueryError(text)

    def _failed(self, exc: ProcessFailed) -> QueryError:
        if "did not answer" in str(exc):
            return self._timeout()
        return QueryTooLarge(
            "the query's process stopped while running it (most likely it ran out of "
            f"memory, {self.settings.sql_process_memory_mb} MiB per query): build smaller "
            "values, filter or aggregate more"
        )

    def _pinned(self, as_of: Mapping[str, int]) -> dict[str, Manifest]:
        """The manifests of the earlier versions asked for, by dataset."""
        pinned: dict[str, Manifest] = {}
        for name, version in as_of.items():
            match = manifest_at(self.instance, name, version)
            if match is None:
                raise QueryError(
                    f"dataset {name!r} has no version {version}: "
                    f"GET /v1/catalog/{name}/versions lists them"
                )
            pinned[name] = match
        return pinned

    def _timeout(self) -> QueryTimeout:
        return QueryTimeout(
            f"the query ran longer than {self.settings.sql_timeout_seconds:g} s, the limit, "
            "and was stopped: filter or aggregate more, or ask for fewer rows"
        )
