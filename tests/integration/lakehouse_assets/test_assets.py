"""The dataset asset against a real S3 server: pending ingests -> one version of Parquet,
with the manifest as materialization metadata."""

from __future__ import annotations

import dagster as dg
import duckdb
import pytest

from lakehouse.duck import attach_s3
from lakehouse.manifest import Manifest
from lakehouse.publish.catalog import latest_manifest, manifest_history
from lakehouse.publish.status import ingest_status
from lakehouse.runs import DatasetConfig
from lakehouse.settings import Settings
from lakehouse.store import ObjectStore
from lakehouse.store.layout import queued_key
from lakehouse.versions.commits import read_commit
from tests.helpers import land_csv, run_dataset

pytestmark = pytest.mark.integration


def current(instance: dg.DagsterInstance, name: str) -> Manifest:
    manifest = latest_manifest(instance, name)
    assert manifest is not None
    return manifest


def rows(settings: Settings, store: ObjectStore, manifest: Manifest, order: str = "") -> list:
    con = duckdb.connect()
    attach_s3(con, settings.s3())
    urls = ", ".join(f"'{store.url(o.key)}'" for o in manifest.objects)
    return con.sql(f"SELECT * FROM read_parquet([{urls}]) {order}").fetchall()


def test_the_first_version_writes_parquet_and_the_manifest(
    instance: dg.DagsterInstance, settings: Settings, store: ObjectStore
) -> None:
    record = land_csv(store, "people", "id,name,joined\n1,Ann,2024-01-02\n2,Zoë,\n".encode())
    result = run_dataset(instance, settings, "people")
    assert result.success

    manifest = current(instance, "people")
    assert (manifest.version, manifest.row_count, manifest.operation) == (1, 2, "apply")
    assert [(c.name, c.type) for c in manifest.columns] == [
        ("id", "BIGINT"),
        ("name", "VARCHAR"),
        ("joined", "DATE"),
    ]
    assert manifest.location == f"s3://{settings.s3_bucket}/datasets/people/"
    assert (manifest.base_seq, manifest.applied_through) == (1, 1) == (record.seq, record.seq)
    assert manifest.added_ingest_ids == [record.ingest_id]
    assert manifest.bytes == store.size(manifest.objects[0].key) > 0
    assert [(s.column, s.nulls, s.min, s.max) for s in manifest.stats] == [
        ("id", 0, "1", "2"),
        ("name", 0, "Ann", "Zoë"),
        ("joined", 1, "2024-01-02", "2024-01-02"),
    ]

    metadata = result.asset_materializations_for_node("dataset")[0].metadata
    assert metadata["dagster/row_count"].value == 2
    assert metadata["dagster/uri"].value == manifest.location
    assert metadata["schema_fingerprint"].value == record.csv_schema.fingerprint
    assert rows(settings, store, manifest, "ORDER BY id")[0][:2] == (1, "Ann")


def test_every_pending_ingest_is_applied_in_log_order_as_one_version(
    instance: dg.DagsterInstance, settings: Settings, store: ObjectStore
) -> None:
    records = [land_csv(store, "events", f"n\n{i}\n{i + 100}\n".encode()) for i in range(5)]
    assert run_dataset(instance, settings, "events").success

    manifest = current(instance, "events")
    assert (manifest.version, manifest.row_count, len(manifest.objects)) == (1, 10, 1)
    assert manifest.added_ingest_ids == [r.ingest_id for r in records]
    assert [n for (n,) in rows(settings, store, manifest)] == [
        n for i in range(5) for n in (i, i + 100)
    ]
    assert [(s.min, s.max) for s in manifest.stats] == [("0", "104")]


def test_applying_again_never_applies_an_ingest_twice(
    instance: dg.DagsterInstance, settings: Settings, store: ObjectStore
) -> None:
    land_csv(store, "events", b"n\n1\n2\n")
    assert run_dataset(instance, settings, "events").success
    pending_only = DatasetConfig(only_if_pending=True)
    again = run_dataset(instance, settings, "events", pending_only)  # a retry, a re-execution
    assert again.success and not again.asset_materializations_for_node("dataset")
    land_csv(store, "events", b"n\n3\n")
    assert run_dataset(instance, settings, "events", pending_only).success

    manifest = current(instance, "events")
    assert (manifest.version, manifest.row_count) == (2, 3)
    assert manifest.stats[0].max == "3" and manifest.stats[0].min == "1"
    history, _ = manifest_history(instance, "events")
    assert [m.version for m in history] == [2, 1]
    assert len({m.dataset_id for m in history}) == 1


def test_materialize_from_the_ui_with_nothing_pending_commits_the_same_rows_again(
    instance: dg.DagsterInstance, settings: Settings, store: ObjectStore
) -> None:
    land_csv(store, "events", b"n\n1\n")
    assert run_dataset(instance, settings, "events").success
    assert run_dataset(instance, settings, "events").success  # the UI: no config at all
    manifest = current(instance, "events")
    assert (manifest.version, manifest.operation, manifest.row_count) == (2, "recommit", 1)


def test_a_file_that_cannot_be_applied_fails_alone(
    instance: dg.DagsterInstance, settings: Settings, store: ObjectStore
) -> None:
    good = land_csv(store, "counts", b"n\n1\n2\n")
    # The sample (first 1000 rows) says integer; then 2% of rows are not: over the 1%.
    too_bad = land_csv(store, "counts", b"n\n" + b"1\n" * 1000 + b"bad\n" * 20)
    other_columns = land_csv(store, "counts", b"n,extra\n1,x\n")
    also_good = land_csv(store, "counts", b"n\n3\n")
    assert run_dataset(instance, settings, "counts").success

    manifest = current(instance, "counts")
    assert (manifest.version, manifest.row_count) == (1, 3)
    assert manifest.added_ingest_ids == [good.ingest_id, also_good.ingest_id]
    assert manifest.excluded_seqs == [too_bad.seq, other_columns.seq]
    failed = ingest_status(instance, store, too_bad)
    assert failed.status == "failed" and failed.error is not None
    assert "20 of 1020 rows" in failed.error.message
    assert failed.error.samples[0]["line"] == 1002
    wrong = ingest_status(instance, store, other_columns)
    assert wrong.status == "failed" and "columns" in (wrong.error.message if wrong.error else "")
    assert ingest_status(instance, store, also_good).status == "materialized"


def test_a_few_bad_rows_are_rejected_and_kept_with_their_reasons(
    instance: dg.DagsterInstance, settings: Settings, store: ObjectStore
) -> None:
    # The sample (first 1000 rows) says integer; row 1500 says otherwise: 1 of 1501 < 1%.
    land_csv(store, "counts", b"n\n" + b"1\n" * 1500 + b"not-a-number\n")
    assert run_dataset(instance, settings, "counts").success
    manifest = current(instance, "counts")
    assert (manifest.row_count, manifest.rejected_rows) == (1500, 1)
    con = duckdb.connect()
    attach_s3(con, settings.s3())
    rejects = con.sql(f"SELECT line, csv_line FROM '{store.url(manifest.rejects[0].key)}'")
    assert rejects.fetchall() == [(1502, "not-a-number")]


def test_a_replace_starts_over_and_later_appends_build_on_it(
    instance: dg.DagsterInstance, settings: Settings, store: ObjectStore
) -> None:
    first = land_csv(store, "prices", b"sku,p\nA,1\n")
    assert run_dataset(instance, settings, "prices").success
    replacement = land_csv(store, "prices", b"sku,price,cur\nC,3.5,EUR\n", mode="replace")
    after = land_csv(store, "prices", b"sku,price,cur\nD,4.5,USD\n")
    assert run_dataset(instance, settings, "prices").success

    manifest = current(instance, "prices")
    assert (manifest.version, manifest.row_count, manifest.base_seq) == (2, 2, replacement.seq)
    assert [c.name for c in manifest.columns] == ["sku", "price", "cur"]
    assert not manifest.contains(first.seq) and manifest.contains(after.seq)
    assert ingest_status(instance, store, first).in_current_version is False
    history, _ = manifest_history(instance, "prices")
    assert [(m.version, m.row_count) for m in history] == [(2, 2), (1, 1)]

    # The first file's bytes are no longer in the dataset: sent again, they are applied.
    again = land_csv(store, "prices", b"sku,p\nA,1\n", mode="replace", instance=instance)
    assert run_dataset(instance, settings, "prices").success
    assert current(instance, "prices").added_ingest_ids == [again.ingest_id]


def test_the_same_bytes_committed_twice_are_applied_once(
    instance: dg.DagsterInstance, settings: Settings, store: ObjectStore
) -> None:
    # Two identical uploads racing both commit (each checked before the other's commit
    # was visible); the run decides.
    first = land_csv(store, "events", b"n\n1\n")
    store.delete([queued_key("events", first.sha256)])
    second = land_csv(store, "events", b"n\n1\n")
    assert second.ingest_id != first.ingest_id
    assert run_dataset(instance, settings, "events").success
    assert current(instance, "events").row_count == 1
    status = ingest_status(instance, store, second)
    assert (status.status, status.duplicate_of) == ("materialized", first.ingest_id)

    # Once applied, the same bytes are a duplicate at upload already.
    land_csv(store, "events", b"n\n1\n", instance=instance)
    assert run_dataset(instance, settings, "events", DatasetConfig(only_if_pending=True)).success
    assert current(instance, "events").version == 1


def test_a_failed_ingests_bytes_can_be_sent_again(
    instance: dg.DagsterInstance, settings: Settings, store: ObjectStore
) -> None:
    land_csv(store, "counts", b"n\n1\n")
    bad = b"n\n" + b"1\n" * 1000 + b"bad\n" * 20
    failed = land_csv(store, "counts", bad)
    assert run_dataset(instance, settings, "counts").success
    assert ingest_status(instance, store, failed).status == "failed"
    again = land_csv(store, "counts", bad, instance=instance)
    assert again.ingest_id != failed.ingest_id and again.seq == failed.seq + 1


def test_every_version_has_a_commit_record_with_its_outcomes(
    instance: dg.DagsterInstance, settings: Settings, store: ObjectStore
) -> None:
    record = land_csv(store, "events", b"n\n1\n")
    assert run_dataset(instance, settings, "events").success
    commit = read_commit(store, "events", 1)
    # The record is claimed before the Iceberg commit: the catalog's version adds its snapshot.
    assert commit is not None and commit.manifest == current(instance, "events").model_copy(
        update={"updated_at": commit.manifest.updated_at, "iceberg": None}
    )
    assert [(o.ingest_id, o.status) for o in commit.outcomes] == [(record.ingest_id, "applied")]
