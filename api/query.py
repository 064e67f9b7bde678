"""DuckDB over the catalog: one in-memory database per API process, one view per dataset.

The views point at exactly the objects of each dataset's current manifest. Before each
query the engine asks the Dagster instance for {dataset: latest materialization id} (one
cheap query) and rebuilds only the views whose id changed, so a dataset materialized a
moment ago is queryable on the next request and nothing is rebuilt when nothing changed.

Each query runs on its own cursor (queries run in parallel), under a time limit and a
row limit, after `sqlguard.inspect` accepted it. Views are swapped only while no query is
binding, so a query sees each dataset at exactly one version, and reports which.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import dagster as dg
import duckdb
import pyarrow as pa
from dagster_duckdb import DuckDBResource

from api.formats import json_value
from api.sqlguard import Refused, inspect
from lakehouse.catalog import (
    Manifest,
    change_marker,
    latest_storage_ids,
    manifest_at,
    manifests_by_storage_id,
)
from lakehouse.convert import REJECT_SCHEMA
from lakehouse.duck import attach_s3, connection_config, sql_identifier, sql_string
from lakehouse.names import REJECTS_SUFFIX
from lakehouse.settings import Settings
from lakehouse.storage import DATASETS

BATCH_ROWS = 65_536
# The `<name>__rejects` view's columns, as the conversion writes them.
REJECT_COLUMNS: list[tuple[str, str]] = list(REJECT_SCHEMA)


class QueryError(ValueError):
    """The statement failed for a reason the caller can fix (syntax, unknown table...)."""


class QueryRefused(QueryError):
    """The statement is not allowed (not read-only, reads files, settings...)."""


class QueryTimeout(QueryError):
    """The statement ran past the time limit and was interrupted."""


@dataclass(frozen=True)
class QueryResult:
    columns: list[dict[str, str]]
    rows: list[dict[str, Any]]
    truncated: bool
    elapsed_ms: float
    datasets: dict[str, int]  # dataset -> the catalog version the query read


@dataclass
class Running:
    """A query bound and running on its own cursor; `close()` it when done reading."""

    columns: list[dict[str, str]]  # name and DuckDB type
    cursor: duckdb.DuckDBPyConnection
    datasets: dict[str, int]
    close: Callable[[], None]

    def batches(self) -> pa.RecordBatchReader:
        return self.cursor.to_arrow_reader(BATCH_ROWS)


def rejects_view(name: str) -> str:
    return f"{name}{REJECTS_SUFFIX}"


def view_statements(manifest: Manifest, bucket_url: str, temporary: bool = False) -> list[str]:
    """The dataset's view, and its `<name>__rejects` view of the rows that did not parse."""
    if not manifest.columns:
        return []  # every ingest so far failed: there is nothing to query yet
    columns = [(c.name, c.type) for c in manifest.columns]
    return [
        _view(manifest.name, [o.key for o in manifest.objects], columns, bucket_url, temporary),
        _view(
            rejects_view(manifest.name),
            [r.key for r in manifest.rejects],
            REJECT_COLUMNS,
            bucket_url,
            temporary,
        ),
    ]


def _view(
    name: str, keys: list[str], columns: list[tuple[str, str]], bucket_url: str, temporary: bool
) -> str:
    if not keys:
        # No objects (a header-only file, no rejects): still a view with its columns.
        typed = ", ".join(f"CAST(NULL AS {t}) AS {sql_identifier(n)}" for n, t in columns)
        body = f"SELECT {typed} WHERE false"
    else:
        urls = ", ".join(sql_string(f"{bucket_url}/{key}") for key in keys)
        body = f"SELECT * FROM read_parquet([{urls}])"
    kind = "TEMP VIEW" if temporary else "VIEW"
    return f"CREATE OR REPLACE {kind} {sql_identifier(name)} AS {body}"


class ReadWriteLock:
    """Many readers (queries binding) or one writer (a view swap)."""

    def __init__(self) -> None:
        self._readers = 0
        self._cond = threading.Condition()

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._cond:
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: self._readers == 0)
            yield


class QueryEngine:
    def __init__(self, settings: Settings, instance: dg.DagsterInstance) -> None:
        self.instance = instance
        self.settings = settings
        self.bucket_url = f"s3://{settings.s3_bucket}"
        resource = DuckDBResource(
            database=":memory:",
            connection_config=connection_config(
                settings.duckdb_memory_limit, settings.duckdb_threads
            ),
        )
        self._exit = ExitStack()
        self._con = self._exit.enter_context(resource.get_connection())
        attach_s3(self._con, settings.query_s3())
        self._lock_down()
        self._views = ReadWriteLock()
        self._refreshing = threading.Lock()
        # The base connection is not thread-safe: it only hands out cursors, one at a time.
        self._base = threading.Lock()
        self._catalog: Mapping[str, int] = {}
        self._versions: dict[str, int] = {}
        self._seen_event: object = object()  # the event log's change marker at the last look

    def _lock_down(self) -> None:
        """From here on this DuckDB reads the datasets prefix and nothing else."""
        allowed = sql_string(f"{self.bucket_url}/{DATASETS}")
        self._con.execute(f"SET allowed_directories = [{allowed}]")
        self._con.execute("SET enable_external_access = false")
        self._con.execute("SET lock_configuration = true")

    def close(self) -> None:
        self._exit.close()

    def refresh(self) -> None:
        """Bring the views in line with the catalog, if it changed since the last look.

        No change to the event log since the last look means no new materialization
        (`change_marker`, microseconds); only otherwise do we read {dataset: latest id}.
        """
        last_event = change_marker(self.instance)
        if last_event == self._seen_event:
            return
        current = latest_storage_ids(self.instance)
        if current == self._catalog:
            self._seen_event = last_event
            return
        with self._refreshing:
            changed = [sid for name, sid in current.items() if self._catalog.get(name) != sid]
            manifests = manifests_by_storage_id(self.instance, changed).values()
            gone = set(self._catalog) - set(current)
            with self._views.writing(), self._cursor() as cursor:
                cursor.execute("BEGIN")
                for manifest in manifests:
                    for statement in view_statements(manifest, self.bucket_url):
                        cursor.execute(statement)
                    self._versions[manifest.name] = manifest.version
                for name in gone:
                    for view in (name, rejects_view(name)):
                        cursor.execute(f"DROP VIEW IF EXISTS {sql_identifier(view)}")
                    self._versions.pop(name, None)
                cursor.execute("COMMIT")
                self._catalog = current
                self._seen_event = last_event

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        with self._base:
            return self._con.cursor()

    def execute(self, sql: str, max_rows: int, as_of: Mapping[str, int]) -> QueryResult:
        """Run `sql` and fetch up to `max_rows` rows, as JSON-safe values."""
        started = time.perf_counter()
        running = self.start(sql, as_of)
        names = [c["name"] for c in running.columns]
        try:
            fetched = running.cursor.fetchmany(max_rows + 1)
        except duckdb.InterruptException as exc:
            raise self._timeout() from exc
        except duckdb.Error as exc:
            raise QueryError(str(exc)) from exc
        finally:
            running.close()
        return QueryResult(
            columns=running.columns,
            rows=[
                {name: json_value(value) for name, value in zip(names, row, strict=True)}
                for row in fetched[:max_rows]
            ],
            truncated=len(fetched) > max_rows,
            elapsed_ms=round((time.perf_counter() - started) * 1000, 3),
            datasets=running.datasets,
        )

    def start(self, sql: str, as_of: Mapping[str, int]) -> Running:
        """Check, bind and start `sql` on a new cursor under the time limit; the caller
        reads `reader` and must call `close()`."""
        cursor = self._cursor()
        try:
            tables = inspect(cursor, sql).tables
            self.refresh()
            pinned = self._pinned(as_of)
        except Refused as exc:
            cursor.close()
            raise QueryRefused(str(exc)) from exc
        except duckdb.Error as exc:
            cursor.close()
            raise QueryError(str(exc)) from exc
        except QueryError:
            cursor.close()
            raise
        timer = threading.Timer(self.settings.sql_timeout_seconds, cursor.interrupt)
        timer.start()

        def close() -> None:
            timer.cancel()
            cursor.close()

        try:
            for manifest in pinned.values():
                for statement in view_statements(manifest, self.bucket_url, temporary=True):
                    cursor.execute(statement)
            with self._views.reading():
                datasets = {
                    name: pinned[name].version if name in pinned else self._versions[name]
                    for name in sorted(tables)
                    if name in self._versions or name in pinned
                }
                cursor.execute(sql)
        except duckdb.InterruptException as exc:
            close()
            raise self._timeout() from exc
        except duckdb.Error as exc:
            close()
            raise QueryError(str(exc)) from exc
        columns = [{"name": d[0], "type": str(d[1])} for d in cursor.description or []]
        return Running(columns=columns, cursor=cursor, datasets=datasets, close=close)

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
