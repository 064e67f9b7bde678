"""Exactly once, against the commit object alone (`VersionCommit`): no Dagster instance, a
real S3 server and a real Iceberg catalog, a list for the catalog of record. For each step
of a run (converting, writing the object, marking the bytes applied, the claim, the Iceberg
commit, publishing, settling) the process dies right there, then later runs recover: every
acknowledged row is in the dataset exactly once, the versions are consecutive, and the
Iceberg table is the catalog's latest version. And two runs racing for one version."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest

from lakehouse.manifest import Manifest
from lakehouse.publish.iceberg import IcebergTables
from lakehouse.store import ObjectStore
from lakehouse.versions import commits
from lakehouse.versions.build import Request, next_version
from lakehouse.versions.commit import IcebergFailed, Published, Unchanged
from lakehouse.versions.writer import Writer
from tests.helpers import land_csv
from tests.integration.lakehouse.versions.harness import (
    STEP_IDS,
    STEPS,
    Died,
    ListCatalog,
    assert_consistent,
    con,
    dies,
    rows,
    run,
    tables,
)

pytestmark = pytest.mark.integration
__all__ = ["con", "tables"]  # fixtures


@pytest.mark.parametrize(
    ("module", "step", "after"),
    STEPS,
    ids=STEP_IDS,
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
