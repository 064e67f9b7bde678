"""Exactly once, against the commit object alone (`VersionCommit`): no Dagster instance, a
real S3 server and a real Iceberg catalog, a list for the catalog of record. For each step
of a run (converting, writing the object, marking the bytes applied, the claim, the Iceberg
commit, publishing, settling) the process dies right there, then later runs recover: every
acknowledged row is in the dataset exactly once, the versions are consecutive, and the
Iceberg table is the catalog's latest version. And two runs racing for one version."""

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
from lakehouse.versions import checks, commits, objects, writer
from lakehouse.versions import commit as commit_module
from lakehouse.versions.build import Request, next_version
from lakehouse.versions.commit import IcebergFailed, Published, Result, Unchanged, VersionCommit
from lakehouse.versions.writer import BatchLimits, Writer
from tests.helpers import land_csv

pytestmark = pytest.mark.integration

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
    (writer, "csv_to_parquet", False),  # while converting
    (objects.ObjectWriter, "write", True),  # the new object written, nothing committed
    (commit_module, "record_applied", True),  # bytes marked applied, nothing committed
    (commits, "claim", False),  # checked, just before the compare-and-set
    (commits, "claim", True),  # committed, not yet in Iceberg (the next run publishes it)
    (IcebergTables, "commit", True),  # in Iceberg too, not yet published
    (ListCatalog, "publish", True),  # published, not settled (receipts, the hint)
    (commit_module, "settle_pending", False),  # receipts written, the hint not cleared
]


@pytest.mark.parametrize(
    ("module", "step", "after"),
    STEPS,
    ids=[
        "converting",
        "object-written",
        "marked-applied",
        "before-claim",
        "claimed",
        "iceberg-committed",
        "published",
        "settling",
    ],
)
def test_the_commit_dying_at_each_step_then_recovering_applies_every_row_once(
    store: ObjectStore,
    tables: IcebergTables,
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    module: Any,
    step: str,
    after: bool,
) -> None:
    catalog = ListCatalog()
    land_csv(store, "events", b"n\n1\n2\n")
    land_csv(store, "events", b"n\n3\n")
    with monkeypatch.context() as patch, pytest.raises(Died):
        patch.setattr(module, step, dies(getattr(module, step), after=after))
        run(store, tables, catalog, con, tmp_path)

    for _ in range(2):  # recovery: whatever runs next, as often as it likes
        result = run(store, tables, catalog, con, tmp_path)
        assert isinstance(result, Published | Unchanged), result
    assert rows(con, store, catalog) == [1, 2, 3]
    assert_consistent(store, tables, catalog)
    manifest = catalog.latest("events")
    assert manifest is not None and manifest.applied_through == 2


def test_a_failed_iceberg_commit_is_published_by_the_next_run(
    store: ObjectStore,
    tables: IcebergTables,
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    catalog = ListCatalog()
    land_csv(store, "events", b"n\n1\n")

    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise OSError("When writing the metadata: the object store is unreachable (injected)")

    with monkeypatch.context() as patch:
        patch.setattr(IcebergTables, "_commit", unreachable)
        failed = run(store, tables, catalog, con, tmp_path)
    assert isinstance(failed, IcebergFailed) and catalog.latest("events") is None
    assert commits.unpublished(store, "events", 0) is not None  # claimed: it will be published
    assert isinstance(run(store, tables, catalog, con, tmp_path), Published)
    assert rows(con, store, catalog) == [1]
    assert_consistent(store, tables, catalog)


def test_two_runs_racing_for_one_version_commit_each_row_once(
    store: ObjectStore, tables: IcebergTables, con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    """Run A builds version 1; meanwhile run B builds and commits version 1 with the same
    ingests. A's claim finds version 1 taken: A drops its objects and builds again on B's,
    finding nothing left to apply."""
    catalog = ListCatalog()
    land_csv(store, "events", b"n\n1\n2\n")
    land_csv(store, "events", b"n\n3\n")
    raced = False

    def build_while_b_commits(writer_a: Writer, base: Manifest) -> Any:
        nonlocal raced
        built = next_version(writer_a, store, base, Request(only_if_pending=True))
        if not raced:
            raced = True
            assert isinstance(run(store, tables, catalog, con, tmp_path / "b"), Published)
        return built

    (tmp_path / "b").mkdir()
    result = run(store, tables, catalog, con, tmp_path, build=build_while_b_commits)
    assert isinstance(result, Unchanged) and result.base.version == 1
    assert rows(con, store, catalog) == [1, 2, 3]
    assert_consistent(store, tables, catalog)
    listed = {o.key for o in (catalog.latest("events") or Manifest.empty("", "")).objects}
    leftovers = [k for k in store.list_keys("datasets/events/") if k not in listed]
    assert leftovers == []  # the loser's object was dropped
