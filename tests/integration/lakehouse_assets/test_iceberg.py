"""Every version is an Iceberg snapshot of `lakehouse.<name>` over the same objects, read
here with pyiceberg alone (a catalog opened from the documented settings, or the metadata
file), against a real S3 server, SQLite and Postgres catalogs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import duckdb
import psycopg2
import pytest
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.table import StaticTable, Table

from lakehouse.duck import attach_s3
from lakehouse.manifest import Manifest
from lakehouse.publish.catalog import latest_manifest, manifest_history
from lakehouse.publish.iceberg import IcebergTables
from lakehouse.publish.retention import apply_cleanup, plan_cleanup
from lakehouse.runs import DatasetConfig
from lakehouse.settings import Settings
from lakehouse.store import ObjectStore
from tests.helpers import land_csv, run_dataset

pytestmark = pytest.mark.integration


def s3_properties(settings: Settings) -> dict[str, str]:
    """The S3 settings a reader needs (as docs/ICEBERG.md documents them), nothing of ours."""
    return {
        "s3.endpoint": settings.s3_endpoint,
        "s3.access-key-id": settings.s3_access_key,
        "s3.secret-access-key": settings.s3_secret_key,
        "s3.region": settings.s3_region,
    }


def reader_catalog(settings: Settings, uri: str | None = None) -> SqlCatalog:
    uri = uri or f"sqlite:///{settings.state_dir / 'iceberg' / 'catalog.db'}"
    return SqlCatalog("lakehouse", uri=uri, **s3_properties(settings))


def iceberg_rows(table: Table, snapshot_id: int | None = None) -> list[tuple]:
    arrow = table.scan(snapshot_id=snapshot_id).to_arrow()
    return sorted(tuple(row.values()) for row in arrow.to_pylist())


def manifest_rows(settings: Settings, manifest: Manifest) -> list[tuple]:
    con = duckdb.connect()
    attach_s3(con, settings.s3())
    urls = [f"s3://{settings.s3_bucket}/{o.key}" for o in manifest.objects]
    return sorted(con.execute("SELECT * FROM read_parquet(?)", [urls]).fetchall())


def ingest(instance, settings, store, name: str, data: bytes, **kwargs: Any) -> None:
    land_csv(store, name, data, **kwargs)
    assert run_dataset(instance, settings, name, DatasetConfig(only_if_pending=True)).success


def versions(instance: dg.DagsterInstance, name: str) -> list[Manifest]:
    history, _ = manifest_history(instance, name)
    return list(reversed(history))


def test_every_version_is_a_snapshot_with_the_versions_rows(
    instance: dg.DagsterInstance, settings: Settings, store: ObjectStore
) -> None:
    ingest(instance, settings, store, "events", b"n,label\n1,a\n2,b\n")
    ingest(instance, settings, store, "events", b"n,label\n3,c\n")
    ingest(instance, settings, store, "events", b"n,label\n7,x\n8,y\n", mode="replace")
    ingest(instance, settings, store, "events", b"n,label\n9,z\n")
    compact = DatasetConfig(operation="compact")
    assert run_dataset(instance, settings, "events", compact).success
    assert run_dataset(instance, settings, "events").success  # the UI's Materialize: recommit

    table = reader_catalog(settings).load_table("lakehouse.events")
    history = versions(instance, "events")
    assert [m.version for m in history] == [1, 2, 3, 4, 5, 6]
    operations = []
    for manifest in history:
        assert manifest.iceberg is not None
        assert manifest.iceberg.table == "lakehouse.events"
        snapshot = table.snapshot_by_id(manifest.iceberg.snapshot_id)
        assert snapshot is not None and snapshot.summary is not None
        assert snapshot.summary["lakehouse.version"] == str(manifest.version)
        operations.append(snapshot.summary.operation.value)
        assert iceberg_rows(table, manifest.iceberg.snapshot_id) == manifest_rows(
            settings, manifest
        )
        files = {
            t.file.file_path for t in table.scan(snapshot_id=snapshot.snapshot_id).plan_files()
        }
        assert files == {f"s3://{settings.s3_bucket}/{o.key}" for o in manifest.objects}
    # apply, apply, replace, apply, compact, recommit
    assert operations == ["append", "append", "overwrite", "append", "overwrite", "append"]
    assert iceberg_rows(table) == [(7, "x"), (8, "y"), (9, "z")]
    current = history[-1]
    assert current.iceberg is not None
    assert table.current_snapshot().snapshot_id == current.iceberg.snapshot_id  # type: ignore[union-attr]
    assert table.metadata_location == current.iceberg.metadata_location
    # No second copy: the table's files are the dataset's objects, in datasets/.
    assert all(k.startswith("iceberg/events/metadata/") for k in store.list_keys("iceberg/"))

    # An engine without catalog access: the metadata file alone.
    static = StaticTable.from_metadata(current.iceberg.metadata_location, s3_properties(settings))
    assert iceberg_rows(static) == [(7, "x"), (8, "y"), (9, "z")]
    assert iceberg_rows(static, history[1].iceberg.snapshot_id) == [(1, "a"), (2, "b"), (3, "c")]  # type: ignore[union-attr]


def test_column_types_map_exactly(
    instance: dg.DagsterInstance, settings: Settings, store: ObjectStore
) -> None:
    data = (
        b"id,price,amount,rate,day,at,ok,name\n"
        b"1,2.5e0,12345678901234567.89,0.25,2024-01-02,2024-01-02 03:04:05.123456,true,Ann\n"
        b"2,,0.01,1,,2024-02-03 00:00:00,false,\n"
    )
    ingest(instance, settings, store, "typed", data)
    manifest = latest_manifest(instance, "typed")
    assert manifest is not None
    assert [c.type for c in manifest.columns] == [
        "BIGINT", "DOUBLE", "DECIMAL(38,2)", "DECIMAL(18,2)", "DATE", "TIMESTAMP", "BOOLEAN",
        "VARCHAR",
    ]  # fmt: skip
    table = reader_catalog(settings).load_table("lakehouse.typed")
    assert [(f.name, str(f.field_type)) for f in table.schema().fields] == [
        ("id", "long"), ("price", "double"), ("amount", "decimal(38, 2)"),
        ("rate", "decimal(18, 2)"), ("day", "date"),
        ("at", "timestamp"), ("ok", "boolean"), ("name", "string"),
    ]  # fmt: skip
    assert iceberg_rows(table) == manifest_rows(settings, manifest)


def test_a_replace_with_other_columns_evolves_the_table(
    instance: dg.DagsterInstance, settings: Settings, store: ObjectStore
) -> None:
    ingest(instance, settings, store, "prices", b"sku,price\nA,1\nB,2\n")
    ingest(instance, settings, store, "prices", b"cur,sku,price\nEUR,C,3.5\n", mode="replace")
    table = reader_catalog(settings).load_table("lakehouse.prices")
    assert [(f.name, str(f.field_type)) for f in table.schema().fields] == [
        ("cur", "string"),
        ("sku", "string"),
        ("price", "decimal(18, 1)"),
    ]
    assert iceberg_rows(table) == [("EUR", "C", 3.5)]
    first = versions(instance, "prices")[0]
    assert first.iceberg is not None
    # The unchanged column keeps its field id, so time travel reads it; the column whose
    # type changed (BIGINT -> DOUBLE) is a new field (the limit of files without field ids).
    old = table.scan(snapshot_id=first.iceberg.snapshot_id).to_arrow()
    assert old.column_names == ["sku", "price"]
    assert old.column("sku").to_pylist() == ["A", "B"]


def test_the_catalog_lives_in_postgres_when_configured(
    instance: dg.DagsterInstance, settings: Settings, store: ObjectStore, postgres_url: str
) -> None:
    on_postgres = settings.model_copy(update={"postgres_url": postgres_url})
    land_csv(store, "events", b"n\n1\n2\n")
    assert run_dataset(instance, on_postgres, "events").success
    manifest = latest_manifest(instance, "events")
    assert manifest is not None and manifest.iceberg is not None
    # Iceberg's JDBC catalog layout, which Spark and Trino read.
    with psycopg2.connect(postgres_url) as con, con.cursor() as cursor:
        cursor.execute(
            "SELECT catalog_name, table_namespace, table_name, metadata_location "
            "FROM iceberg_tables"
        )
        assert cursor.fetchall() == [
            ("lakehouse", "lakehouse", "events", manifest.iceberg.metadata_location)
        ]
    uri = postgres_url.replace("postgresql://", "postgresql+psycopg2://", 1)
    table = reader_catalog(settings, uri).load_table("lakehouse.events")
    assert iceberg_rows(table) == [(1,), (2,)]
    assert not (settings.state_dir / "iceberg").exists()  # nothing went to SQLite


def test_cleanup_expires_snapshots_before_their_objects_go(
    instance: dg.DagsterInstance, settings: Settings, store: ObjectStore
) -> None:
    for i in range(3):
        ingest(instance, settings, store, "events", f"n\n{i}\n".encode())
    assert run_dataset(instance, settings, "events", DatasetConfig(operation="compact")).success
    current = latest_manifest(instance, "events")
    assert current is not None and current.iceberg is not None
    tables = IcebergTables(settings.iceberg_catalog_url, settings.s3())

    later = datetime.now(UTC) + timedelta(hours=2)
    within_grace = plan_cleanup(instance, store, later, timedelta(days=1), timedelta(0))
    cleaned = apply_cleanup(within_grace, store, tables)
    assert (cleaned.snapshots, cleaned.objects) == (0, [])
    table = reader_catalog(settings).load_table("lakehouse.events")
    assert len(table.snapshots()) == 4

    plan = plan_cleanup(instance, store, later, timedelta(hours=1), timedelta(hours=1))
    assert plan.keep_snapshots_from == {"events": 4}
    # Even if the catalog's plan named an object a retained snapshot reads, it stays.
    plan.objects.append(current.objects[0].key)
    cleaned = apply_cleanup(plan, store, tables)
    assert cleaned.snapshots == 3
    assert sorted(cleaned.objects) == sorted(set(plan.objects) - {current.objects[0].key})
    assert all(store.exists(o.key) for o in current.objects)
    assert not any(store.exists(k) for k in cleaned.objects + cleaned.metadata)
    assert cleaned.metadata  # the expired snapshots' manifest lists

    table = reader_catalog(settings).load_table("lakehouse.events")
    assert [s.snapshot_id for s in table.snapshots()] == [current.iceberg.snapshot_id]
    assert iceberg_rows(table) == [(0,), (1,), (2,)]
    static = StaticTable.from_metadata(table.metadata_location, s3_properties(settings))
    assert iceberg_rows(static) == [(0,), (1,), (2,)]
