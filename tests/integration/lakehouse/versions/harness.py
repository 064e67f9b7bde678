"""The commit object alone (`VersionCommit`), run as a run would run it: no Dagster
instance, a real S3 server and a real Iceberg catalog, a list for the catalog of record;
and how to make the process die at each step of it (`STEPS`)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from lakehouse.duck import attach_s3
from lakehouse.manifest import Manifest
from lakehouse.publish.iceberg import IcebergTables, data_files, version_of
from lakehouse.settings import Settings
from lakehouse.store import ObjectStore
from lakehouse.versions import checks, commits, objects, reading
from lakehouse.versions import commit as commit_module
from lakehouse.versions.build import Request, next_version
from lakehouse.versions.commit import Published, Result, VersionCommit
from lakehouse.versions.writer import BatchLimits, Writer

LIMITS = BatchLimits(
    max_reject_share=0.01, compaction_max_objects=64, compaction_target_mb=256, sample_rows=1000
)
_runs = itertools.count(1)


class Died(BaseException):
    """The process stopped here: nothing in it catches this, nothing after it runs."""


class ListCatalog:
    """The catalog of record as a list per dataset (in a run: the Dagster instance)."""

    def __init__(self) -> None:
        self.versions: dict[str, list[Manifest]] = {}

    def latest(self, dataset: str) -> Manifest | None:
        return (self.versions.get(dataset) or [None])[-1]

    def is_running(self, run_id: str) -> bool:
        return False  # every run of these tests has stopped before the next starts

    def publish(self, manifest: Manifest) -> None:
        self.versions.setdefault(manifest.name, []).append(manifest)


@pytest.fixture
def con(settings: Settings) -> Iterator[duckdb.DuckDBPyConnection]:
    with duckdb.connect() as connection:
        attach_s3(connection, settings.s3())
        yield connection


@pytest.fixture
def tables(settings: Settings, tmp_path: Path) -> IcebergTables:
    return IcebergTables(f"sqlite:///{tmp_path}/iceberg.db", settings.s3())


def run(
    store: ObjectStore,
    tables: IcebergTables,
    catalog: ListCatalog,
    con: duckdb.DuckDBPyConnection,
    scratch: Path,
    build: Callable[[Writer, Manifest], Any] | None = None,
) -> Result:
    """One run of the dataset: commit the next version, publish it, settle."""
    run_id = f"{next(_runs):08x}-0000-4000-8000-000000000000"  # shaped like a Dagster run id
    build_with = Writer(store, con, "events", run_id, LIMITS, scratch)
    commit = VersionCommit(
        store,
        tables,
        catalog,
        "events",
        run_id,
        lambda m, empty, accounts: checks.evaluate(m, store, con, 0.01, empty, accounts),
    )
    ask = Request(only_if_pending=True)
    result = commit.commit(
        lambda base: (
            build(build_with, base) if build else next_version(build_with, store, base, ask)
        )
    )
    if isinstance(result, Published):
        catalog.publish(result.record.manifest)  # the emit
        commit.settle(result)
    return result


def rows(con: duckdb.DuckDBPyConnection, store: ObjectStore, catalog: ListCatalog) -> list[int]:
    manifest = catalog.latest("events")
    if manifest is None or not manifest.objects:
        return []
    urls = [store.url(o.key) for o in manifest.objects]
    found = con.execute("SELECT n FROM read_parquet(?)", [urls]).fetchall()
    return sorted(n for (n,) in found)


def assert_consistent(store: ObjectStore, tables: IcebergTables, catalog: ListCatalog) -> None:
    """Versions unique and consecutive, and the Iceberg table is the latest, file for file."""
    versions = [m.version for m in catalog.versions["events"]]
    assert versions == list(range(1, len(versions) + 1))
    manifest = catalog.latest("events")
    table = tables.load("events")
    assert manifest is not None and manifest.iceberg is not None and table is not None
    current = table.current_snapshot()
    assert current is not None and version_of(current) == manifest.version
    assert set(data_files(table)) == {store.url(o.key) for o in manifest.objects}


def dies(original: Callable[..., Any], *, after: bool) -> Callable[..., Any]:
    def dying(*args: Any, **kwargs: Any) -> Any:
        if after:
            original(*args, **kwargs)
        raise Died

    return dying


STEPS = [
    (reading, "csv_to_parquet", False),  # while converting
    (objects.ObjectWriter, "write", True),  # the new object written, nothing committed
    (commit_module, "record_applied", True),  # bytes marked applied, nothing committed
    (commits, "claim", False),  # checked, just before the compare-and-set
    (commits, "claim", True),  # committed, not yet in Iceberg (the next run publishes it)
    (IcebergTables, "commit", True),  # in Iceberg too, not yet published
    (ListCatalog, "publish", True),  # published, not settled (receipts, the hint)
    (commit_module, "settle_pending", False),  # receipts written, the hint not cleared
]
STEP_IDS = [
    "converting",
    "object-written",
    "marked-applied",
    "before-claim",
    "claimed",
    "iceberg-committed",
    "published",
    "settling",
]
