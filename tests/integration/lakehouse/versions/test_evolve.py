"""Schema evolution on purpose, through the one commit path (real S3 server and Iceberg
catalog): `add_columns` adds columns that older rows read as NULL and lets a file leave
columns out; `widen` widens a DECIMAL as Iceberg allows, keeping its field id; an earlier
version still reads with its own columns; objects of older columns are conformed by every
reader and by compaction and merges; and an evolving append dying at each step of a run,
then recovering, is applied once."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from lakehouse.duck import conformed
from lakehouse.ingest.contract import SchemaConflict
from lakehouse.manifest import Manifest
from lakehouse.publish.iceberg import IcebergTables
from lakehouse.store import ObjectStore
from lakehouse.versions.build import Request, next_version
from lakehouse.versions.commit import Published, Unchanged
from tests.helpers import land_csv
from tests.integration.lakehouse.versions.harness import (
    STEP_IDS,
    STEPS,
    Died,
    ListCatalog,
    assert_consistent,
    con,
    dies,
    run,
    tables,
)

pytestmark = pytest.mark.integration
__all__ = ["con", "tables"]  # fixtures

BIG = "12345678901234567890.25"  # 22 digits: DECIMAL(38,2), past DECIMAL(18,2)


def rows(con: duckdb.DuckDBPyConnection, store: ObjectStore, manifest: Manifest | None) -> list:
    """The version's rows as every reader reads them (`conformed`), sorted."""
    assert manifest is not None
    urls = [store.url(o.key) for o in manifest.objects]
    columns = [(c.name, c.type) for c in manifest.columns]
    return sorted(con.execute(conformed(con, urls, columns)).fetchall())


def test_add_columns_adds_nullable_columns_and_an_earlier_version_keeps_its_own(
    store: ObjectStore, tables: IcebergTables, con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    catalog = ListCatalog()
    land_csv(store, "events", b"id,name\n1,a\n2,b\n")
    run(store, tables, catalog, con, tmp_path)
    v1 = catalog.latest("events")
    with pytest.raises(SchemaConflict):  # strict, the default: a 409 with the diff
        land_csv(store, "events", b"id,name,email\n3,c,c@x\n", current=v1)
    land_csv(store, "events", b"id,name,email\n3,c,c@x\n", current=v1, evolve="add_columns")
    land_csv(store, "events", b"id,email\n4,d@x\n", current=v1, evolve="add_columns")
    run(store, tables, catalog, con, tmp_path)

    v2 = catalog.latest("events")
    assert v2 is not None and [c.name for c in v2.columns] == ["id", "name", "email"]
    assert v2.schema_version == v1.schema_version + 1 == 2  # type: ignore[union-attr]
    assert [o.schema_fingerprint for o in v2.objects] == [v1.schema_fingerprint, None]  # type: ignore[union-attr]
    assert rows(con, store, v2) == [
        (1, "a", None),
        (2, "b", None),
        (3, "c", "c@x"),
        (4, None, "d@x"),
    ]
    assert rows(con, store, v1) == [(1, "a"), (2, "b")]  # as_of v1: its own columns
    assert_consistent(store, tables, catalog)
    table = tables.load("events")
    assert table is not None
    assert sorted(table.scan().to_arrow().to_pylist(), key=lambda r: r["id"])[0] == {
        "id": 1,
        "name": "a",
        "email": None,
    }

    compacted = run(
        store,
        tables,
        catalog,
        con,
        tmp_path,
        build=lambda w, base: next_version(w, store, base, Request(operation="compact")),
    )
    assert isinstance(compacted, Published)
    v3 = catalog.latest("events")
    assert v3 is not None and all(o.schema_fingerprint is None for o in v3.objects)
    assert rows(con, store, v3) == rows(con, store, v2)
    assert_consistent(store, tables, catalog)


def test_widen_keeps_the_iceberg_field_id_and_old_snapshots_read_their_values(
    store: ObjectStore, tables: IcebergTables, con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    catalog = ListCatalog()
    land_csv(store, "events", b"id,amount\n1,1.50\n")
    run(store, tables, catalog, con, tmp_path)
    v1 = catalog.latest("events")
    with pytest.raises(SchemaConflict):  # add_columns does not change a type
        land_csv(
            store, "events", f"id,amount\n2,{BIG}\n".encode(), current=v1, evolve="add_columns"
        )
    land_csv(store, "events", f"id,amount\n2,{BIG}\n".encode(), current=v1, evolve="widen")
    run(store, tables, catalog, con, tmp_path)

    v2 = catalog.latest("events")
    assert v2 is not None and [c.type for c in v2.columns] == ["BIGINT", "DECIMAL(38,2)"]
    assert rows(con, store, v2) == [(1, Decimal("1.50")), (2, Decimal(BIG))]
    table = tables.load("events")
    assert table is not None
    field = table.schema().find_field("amount")
    assert (field.field_id, str(field.field_type)) == (2, "decimal(38, 2)")
    old, new = (s.snapshot_id for s in table.snapshots())
    assert table.scan(snapshot_id=old).to_arrow()["amount"].to_pylist() == [Decimal("1.50")]
    assert sorted(table.scan(snapshot_id=new).to_arrow()["amount"].to_pylist()) == [
        Decimal("1.50"),
        Decimal(BIG),
    ]
    assert_consistent(store, tables, catalog)


def test_a_merge_rewrites_objects_of_older_columns_into_the_current_ones(
    store: ObjectStore, tables: IcebergTables, con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    catalog = ListCatalog()
    land_csv(store, "events", b"id,name\n1,a\n2,b\n")
    run(store, tables, catalog, con, tmp_path)
    land_csv(
        store,
        "events",
        b"id,name,email\n3,c,c@x\n",
        current=catalog.latest("events"),
        evolve="add_columns",
    )
    run(store, tables, catalog, con, tmp_path)
    merge = b"id,name,email\n1,A,a@x\n"
    land_csv(store, "events", merge, mode="merge", key=["id"], current=catalog.latest("events"))
    run(store, tables, catalog, con, tmp_path)
    assert rows(con, store, catalog.latest("events")) == [
        (1, "A", "a@x"),
        (2, "b", None),
        (3, "c", "c@x"),
    ]
    assert_consistent(store, tables, catalog)


@pytest.mark.parametrize(
    ("module", "step", "after"),
    STEPS,
    ids=STEP_IDS,
)
def test_an_evolving_append_dying_at_each_step_then_recovering_applies_once(
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
    land_csv(store, "events", b"id,amount\n1,1.50\n")
    run(store, tables, catalog, con, tmp_path)
    current = catalog.latest("events")
    land_csv(
        store, "events", f"id,amount,note\n2,{BIG},x\n".encode(), current=current, evolve="widen"
    )
    with monkeypatch.context() as patch, pytest.raises(Died):
        patch.setattr(module, step, dies(getattr(module, step), after=after))
        run(store, tables, catalog, con, tmp_path)
    for _ in range(2):
        assert isinstance(run(store, tables, catalog, con, tmp_path), Published | Unchanged)
    assert rows(con, store, catalog.latest("events")) == [
        (1, Decimal("1.50"), None),
        (2, Decimal(BIG), "x"),
    ]
    assert_consistent(store, tables, catalog)
    manifest = catalog.latest("events")
    assert manifest is not None and manifest.version == 2 and manifest.schema_version == 2
