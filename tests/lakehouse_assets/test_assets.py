"""The dataset asset against a real S3 server: CSV landed -> Parquet + manifest metadata."""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
import duckdb
import pytest

from lakehouse.duck import attach_s3
from lakehouse.ingests import IngestRecord, Landing
from lakehouse.settings import Settings
from lakehouse.storage import ObjectStore
from lakehouse_assets.assets import DatasetConfig
from lakehouse_assets.catalog import latest_manifest, manifest_history
from tests.helpers import land_csv, run_dataset

pytestmark = pytest.mark.integration


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


def materialize(instance: dg.DagsterInstance, settings: Settings, record: IngestRecord):
    config = DatasetConfig(ingest_record_key=record.key)
    return run_dataset(instance, settings, record.dataset, config, ingest_id=record.ingest_id)


def test_materialization_writes_parquet_and_the_manifest(
    instance: dg.DagsterInstance, settings: Settings, store: ObjectStore
) -> None:
    record = land_csv(store, "people", "id,name,joined\n1,Ann,2024-01-02\n2,Zoë,\n".encode())
    result = materialize(instance, settings, record)
    assert result.success

    manifest = latest_manifest(instance, "people")
    assert manifest is not None
    assert manifest.version == 1
    assert manifest.row_count == 2
    assert [(c.name, c.type) for c in manifest.columns] == [
        ("id", "BIGINT"),
        ("name", "VARCHAR"),
        ("joined", "DATE"),
    ]
    assert manifest.location == f"s3://{settings.s3_bucket}/datasets/people/"
    assert manifest.source_ingest_ids == [record.ingest_id]
    assert [o.key for o in manifest.objects] == [f"datasets/people/part-{record.ingest_id}.parquet"]
    assert manifest.bytes == store.size(manifest.objects[0].key) > 0

    metadata = result.asset_materializations_for_node("dataset")[0].metadata
    assert metadata["dagster/row_count"].value == 2
    assert metadata["dagster/uri"].value == manifest.location
    assert metadata["schema_fingerprint"].value == record.csv_schema.fingerprint

    con = duckdb.connect()
    attach_s3(con, settings.s3())
    url = store.url(manifest.objects[0].key)
    assert con.sql(f"SELECT id, name FROM '{url}' ORDER BY id").fetchall() == [
        (1, "Ann"),
        (2, "Zoë"),
    ]


def test_appends_add_objects_and_rerunning_an_ingest_never_doubles_it(
    instance: dg.DagsterInstance, settings: Settings, store: ObjectStore
) -> None:
    first = land_csv(store, "events", b"n\n1\n2\n")
    second = land_csv(store, "events", b"n\n3\n")
    assert materialize(instance, settings, first).success
    assert materialize(instance, settings, second).success
    assert materialize(instance, settings, second).success  # e.g. a retried run

    manifest = latest_manifest(instance, "events")
    assert manifest is not None
    assert manifest.row_count == 3
    assert manifest.source_ingest_ids == [first.ingest_id, second.ingest_id]
    history = manifest_history(instance, "events")
    assert [m.version for m in history] == [3, 2, 1]
    assert len({m.dataset_id for m in history}) == 1
    assert history[-1].created_at == manifest.created_at


def test_an_ingest_with_another_schema_fails_and_changes_nothing(
    instance: dg.DagsterInstance, settings: Settings, store: ObjectStore
) -> None:
    assert materialize(instance, settings, land_csv(store, "items", b"n\n1\n")).success
    result = materialize(instance, settings, land_csv(store, "items", b"n,extra\n1,x\n"))
    assert not result.success
    manifest = latest_manifest(instance, "items")
    assert manifest is not None and manifest.version == 1 and manifest.row_count == 1


def test_a_few_bad_rows_are_rejected_and_kept_with_their_reasons(
    instance: dg.DagsterInstance, settings: Settings, store: ObjectStore
) -> None:
    # The sample (first 1000 rows) says integer; row 1500 says otherwise: 1 of 1501 < 1%.
    data = b"n\n" + b"1\n" * 1500 + b"not-a-number\n"
    assert materialize(instance, settings, land_csv(store, "counts", data)).success
    manifest = latest_manifest(instance, "counts")
    assert manifest is not None
    assert (manifest.row_count, manifest.rejected_rows) == (1500, 1)
    con = duckdb.connect()
    attach_s3(con, settings.s3())
    rejects = con.sql(f"SELECT line, csv_line FROM '{store.url(manifest.rejects[0].key)}'")
    assert rejects.fetchall() == [(1502, "not-a-number")]


def test_too_many_bad_rows_fail_the_ingest_and_leave_the_dataset_as_it_was(
    instance: dg.DagsterInstance, settings: Settings, store: ObjectStore
) -> None:
    assert materialize(instance, settings, land_csv(store, "counts", b"n\n1\n")).success
    data = b"n\n" + b"1\n" * 1000 + b"bad\n" * 20  # 2% rejected, more than the 1% allowed
    record = land_csv(store, "counts", data)
    result = materialize(instance, settings, record)
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert failure is not None and "20 of 1020 rows" in (failure.description or "")
    assert failure.metadata["samples"].value[0]["line"] == 1002  # type: ignore[index]
    manifest = latest_manifest(instance, "counts")
    assert manifest is not None and (manifest.version, manifest.row_count) == (1, 1)
    assert not store.exists(f"datasets/counts/part-{record.ingest_id}.parquet")


def test_replace_starts_a_new_object_list_and_keeps_the_history(
    instance: dg.DagsterInstance, settings: Settings, store: ObjectStore
) -> None:
    assert materialize(instance, settings, land_csv(store, "prices", b"sku,p\nA,1\n")).success
    assert materialize(instance, settings, land_csv(store, "prices", b"sku,p\nB,2\n")).success
    replacement = Landing(store, "prices", mode="replace").finish(b"sku,price,cur\nC,3.5,EUR\n")
    assert materialize(instance, settings, replacement.record).success

    current = latest_manifest(instance, "prices")
    history = manifest_history(instance, "prices")
    assert current is not None
    assert (current.version, current.row_count) == (3, 1)
    assert current.source_ingest_ids == [replacement.record.ingest_id]
    assert [c.name for c in current.columns] == ["sku", "price", "cur"]
    assert [(m.version, m.row_count) for m in history] == [(3, 1), (2, 2), (1, 1)]
    assert {m.dataset_id for m in history} == {current.dataset_id}
