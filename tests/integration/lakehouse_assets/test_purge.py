"""Purge, against a real S3 server, Dagster instance and Iceberg catalog: after a delete by
key, a purge leaves the erased rows in no object, uploaded file, Iceberg snapshot or
version; and a purge that dies at any step, then runs again, finishes the job while the
current version and a pending ingest are untouched (the pending one is applied once)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dagster as dg
import duckdb
import pytest

from lakehouse.duck import attach_s3
from lakehouse.publish import purge as purge_module
from lakehouse.publish.catalog import latest_manifest, manifest_history
from lakehouse.publish.iceberg import IcebergTables
from lakehouse.publish.purge import purge
from lakehouse.runs import DatasetConfig
from lakehouse.settings import Settings
from lakehouse.store import ObjectStore
from lakehouse.store.layout import LANDING, dataset_prefix
from tests.helpers import land_csv, run_dataset

pytestmark = pytest.mark.integration

ERASED = "c3@example.com"


class Died(BaseException):
    """The process stopped here."""


def dies(original: Any, *, after: bool) -> Any:
    def dying(*args: Any, **kwargs: Any) -> Any:
        if after:
            original(*args, **kwargs)
        raise Died

    return dying


@pytest.fixture
def instance(settings: Settings) -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.from_config(str(settings.resolved_dagster_home)) as found:
        yield found


@pytest.fixture
def tables(settings: Settings) -> IcebergTables:
    return IcebergTables(settings.iceberg_catalog_url, settings.s3())


def apply(instance: dg.DagsterInstance, settings: Settings) -> None:
    assert run_dataset(instance, settings, "people", DatasetConfig(only_if_pending=True)).success


def erased_history(instance: dg.DagsterInstance, settings: Settings, store: ObjectStore) -> None:
    """Three versions: two appends, then a delete of key 3; and an append still pending."""
    land_csv(
        store,
        "people",
        b"id,email\n" + b"".join(b"%d,c%d@example.com\n" % (i, i) for i in range(1, 6)),
    )
    apply(instance, settings)
    land_csv(store, "people", b"id,email\n6,c6@example.com\n7,c7@example.com\n")
    apply(instance, settings)
    current = latest_manifest(instance, "people")
    land_csv(store, "people", b"id\n3\n", mode="delete", key=["id"], current=current)
    apply(instance, settings)
    land_csv(store, "people", b"id,email\n8,c8@example.com\n")


def holders(settings: Settings, store: ObjectStore) -> list[str]:
    """Every object and uploaded file of the dataset that still holds the erased email."""
    found = []
    with duckdb.connect() as con:
        attach_s3(con, settings.s3())
        for key in store.list_keys(dataset_prefix("people")):
            rows = con.execute(
                "SELECT count(*) FROM read_parquet(?) WHERE email = ?", [store.url(key), ERASED]
            ).fetchone()
            if rows and rows[0]:
                found.append(key)
    for key in store.list_keys(f"{LANDING}people/"):
        if ERASED.encode() in b"".join(store.stream(key)):
            found.append(key)
    return found


def iceberg_rows(tables: IcebergTables, snapshots: int = 1) -> list[tuple[int, str]]:
    table = tables.load("people")
    assert table is not None
    assert len(table.snapshots()) == snapshots  # after a purge, only the current version's
    arrow = table.scan().to_arrow()
    return sorted(zip(arrow["id"].to_pylist(), arrow["email"].to_pylist(), strict=True))


STEPS = [
    (IcebergTables, "expire", True),  # snapshots expired, nothing deleted
    (IcebergTables, "referenced", False),
    (ObjectStore, "delete", True),  # objects and files deleted, runs not
    (purge_module, "delete_run", True),  # one run deleted
]


@pytest.mark.parametrize(
    ("where", "step", "after"), STEPS, ids=["expired", "before-delete", "deleted", "one-run"]
)
def test_a_purge_dying_at_each_step_then_again_erases_the_rows_everywhere(
    instance: dg.DagsterInstance,
    settings: Settings,
    store: ObjectStore,
    tables: IcebergTables,
    monkeypatch: pytest.MonkeyPatch,
    where: Any,
    step: str,
    after: bool,
) -> None:
    erased_history(instance, settings, store)
    assert holders(settings, store)  # the earlier versions and the uploads hold it
    kept = [(i, f"c{i}@example.com") for i in (1, 2, 4, 5, 6, 7)]
    with monkeypatch.context() as patch, pytest.raises(Died):
        patch.setattr(where, step, dies(getattr(where, step), after=after))
        purge(instance, store, tables, "people")

    done = purge(instance, store, tables, "people")
    assert done.version == 3
    assert holders(settings, store) == []
    assert iceberg_rows(tables) == kept
    history, _ = manifest_history(instance, "people")
    assert [m.version for m in history] == [3]  # the earlier versions are gone
    again = purge(instance, store, tables, "people")  # idempotent: nothing left to do
    assert (again.snapshots, again.objects, again.landing, again.runs) == (0, [], [], 0)

    apply(instance, settings)  # the pending append is applied, once
    manifest = latest_manifest(instance, "people")
    assert manifest is not None and manifest.version == 4 and manifest.row_count == 7
    assert iceberg_rows(tables, snapshots=2) == [*kept, (8, "c8@example.com")]
