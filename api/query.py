"""DuckDB over the catalog: one in-memory database per API process, one view per dataset.

The views point at exactly the objects of each dataset's current manifest. Before each
query the engine asks the Dagster instance for {dataset: latest materialization id} (one
cheap query) and rebuilds only the views whose id changed, so a dataset materialized a
moment ago is queryable on the next request and nothing is rebuilt when nothing changed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from lakehouse.duck import attach_s3, connection_config, sql_identifier, sql_string
from lakehouse.names import REJECTS_SUFFIX
from lakehouse.settings import Settings
from lakehouse_assets.catalog import Manifest, latest_storage_ids, manifests_by_storage_id


class QueryError(ValueError):
    """The statement failed for a reason the caller can fix (syntax, unknown table...)."""


@dataclass(frozen=True)
class QueryResult:
    columns: list[dict[str, str]]
    rows: list[dict[str, Any]]
    truncated: bool
    elapsed_ms: float


REJECT_COLUMNS: list[tuple[str, str]] = [
    ("line", "UBIGINT"),
    ("column_name", "VARCHAR"),
    ("error_type", "VARCHAR"),
    ("error_message", "VARCHAR"),
    ("csv_line", "VARCHAR"),
]


def view_statements(manifest: Manifest, bucket_url: str) -> list[str]:
    """The dataset's view, and its `<name>__rejects` view of the rows that did not parse."""
    columns = [(c.name, c.type) for c in manifest.columns]
    return [
        _view(manifest.name, [o.key for o in manifest.objects], columns, bucket_url),
        _view(
            rejects_view(manifest.name),
            [r.key for r in manifest.rejects],
            REJECT_COLUMNS,
            bucket_url,
        ),
    ]


def rejects_view(name: str) -> str:
    return f"{name}{REJECTS_SUFFIX}"


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
        self.bucket_url = f"s3://{settings.s3_bucket}"
        resource = DuckDBResource(
            database=":memory:",
            connection_config=connection_config(
                settings.duckdb_memory_limit, settings.duckdb_threads
            ),
        )
        self._exit = ExitStack()
        self._con = self._exit.enter_context(resource.get_connection())
        attach_s3(self._con, settings.s3())
        self._lock = threading.Lock()
        self._catalog: Mapping[str, int] = {}

    def close(self) -> None:
        self._exit.close()

    def refresh(self) -> None:
        """Bring the views in line with the catalog, if it changed since the last look."""
        current = latest_storage_ids(self.instance)
        if current == self._catalog:
            return
        with self._lock:
            changed = [sid for name, sid in current.items() if self._catalog.get(name) != sid]
            for manifest in manifests_by_storage_id(self.instance, changed).values():
                for statement in view_statements(manifest, self.bucket_url):
                    self._con.execute(statement)
            for gone in set(self._catalog) - set(current):
                for view in (gone, rejects_view(gone)):
                    self._con.execute(f"DROP VIEW IF EXISTS {sql_identifier(view)}")
            self._catalog = current

    def execute(self, sql: str, max_rows: int) -> QueryResult:
        self.refresh()
        started = time.perf_counter()
        cursor = self._con.cursor()
        try:
            cursor.execute(sql)
            if cursor.description is None:
                raise QueryError("the statement returned no result set")
            names = [d[0] for d in cursor.description]
            columns = [
                {"name": n, "type": str(d[1])}
                for n, d in zip(names, cursor.description, strict=False)
            ]
            fetched = cursor.fetchmany(max_rows + 1)
        except duckdb.Error as exc:
            raise QueryError(str(exc)) from exc
        finally:
            cursor.close()
        return QueryResult(
            columns=columns,
            rows=[dict(zip(names, row, strict=True)) for row in fetched[:max_rows]],
            truncated=len(fetched) > max_rows,
            elapsed_ms=round((time.perf_counter() - started) * 1000, 3),
        )
