"""Checks, compaction, rebuild, cleanup and retries, against a real S3 server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import duckdb
import pytest

from lakehouse.duck import attach_s3
from lakehouse.formats.csv.accounting import LineAccount
from lakehouse.ingest.underway import announce
from lakehouse.publish.catalog import latest_manifest, manifest_history
from lakehouse.publish.retention import plan_cleanup
from lakehouse.runs import LAUNCHED_BY_TAG, DatasetConfig
from lakehouse.settings import Settings
from lakehouse.store import ObjectStore, StoreUnavailable
from lakehouse.store.layout import uploading_key
from lakehouse.versions import checks
from lakehouse_assets.definitions import defs
from lakehouse_assets.resources import ObjectStoreResource
from tests.helpers import land_csv, resources_for, run_dataset

pytestmark = pytest.mark.integration


def run(instance, settings, name, config, resources=None):
    return run_dataset(instance, settings, name, config, resources=resources)


def ingest(instance, settings, store, name: str, data: bytes) -> dg.ExecuteInProcessResult:
    land_csv(store, name, data)
    return run(instance, settings, name, DatasetConfig(only_if_pending=True))


def rows(settings: Settings, store: ObjectStore, name: str, instance) -> list[tuple]:
    manifest = latest_manifest(instance, name)
    assert manifest is not None
    con = duckdb.connect()
    attach_s3(con, settings.s3())
    urls = [store.url(o.key) for o in manifest.objects]
    return con.execute("SELECT * FROM read_parquet(?) ORDER BY ALL", [urls]).fetchall()


# -- checks ------------------------------------------------------------------------------


def test_each_materialization_runs_and_passes_the_six_checks(
    instance, settings: Settings, store: ObjectStore
) -> None:
    result = ingest(instance, settings, store, "people", b"id,name\n1,Ann\n2,Bo\n")
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert {e.check_name: e.passed for e in evaluations} == {
        "schema_matches_contract": True,
        "row_count_matches": True,
        "rejected_share_under_threshold": True,
        "every_line_accounted": True,
        "objects_exist_with_recorded_sizes": True,
        "iceberg_snapshot_matches": True,
    }
    metadata = result.asset_materializations_for_node("dataset")[0].metadata
    assert "| id | name |" in metadata["preview"].value  # type: ignore[operator]
    assert "| id | 0 | 1 | 2 |" in metadata["column_stats"].value  # type: ignore[operator]


def test_a_failing_blocking_check_keeps_the_previous_version(
    instance, settings: Settings, store: ObjectStore
) -> None:
    assert ingest(instance, settings, store, "people", b"id\n1\n").success
    v1 = latest_manifest(instance, "people")
    assert v1 is not None
    store.delete([v1.objects[0].key])  # an object of the dataset goes missing
    result = ingest(instance, settings, store, "people", b"id\n2\n")
    assert not result.success
    failed = {e.check_name for e in result.get_asset_check_evaluations() if not e.passed}
    assert failed == {
        "objects_exist_with_recorded_sizes",
        "row_count_matches",
        "schema_matches_contract",
    }
    assert latest_manifest(instance, "people") == v1


@pytest.mark.parametrize(
    ("tamper", "failing"),
    [
        ({"columns": []}, "schema_matches_contract"),
        ({"row_count": 99}, "row_count_matches"),
        ({"rejected_rows": 50}, "rejected_share_under_threshold"),
    ],
)
def test_checks_catch_a_manifest_that_lies(
    instance, settings: Settings, store: ObjectStore, tamper: dict, failing: str
) -> None:
    assert ingest(instance, settings, store, "people", b"id\n1\n2\n").success
    manifest = latest_manifest(instance, "people")
    assert manifest is not None
    con = duckdb.connect()
    attach_s3(con, settings.s3())
    results = checks.evaluate(manifest.model_copy(update=tamper), store, con, 0.01, False)
    assert [r.name for r in results if not r.passed] == [failing]


def test_the_line_check_fails_when_a_file_lost_lines() -> None:
    balanced = LineAccount(data_lines=3, rows=2, rejected=1, counted_by="line ends")
    vanished = LineAccount(data_lines=3, rows=0, rejected=0, counted_by="reading")
    assert checks.lines({"a": balanced}).passed
    failed = checks.lines({"a": balanced, "b": vanished})
    assert not failed.passed and failed.metadata["unbalanced"] == "b"


# -- compaction, rebuild -----------------------------------------------------------------


def test_the_compaction_schedule_compacts_grown_datasets_keeping_every_row(
    instance, settings: Settings, store: ObjectStore
) -> None:
    for i in range(3):
        assert ingest(instance, settings, store, "events", f"n,k\n{i},{2 - i}\n".encode()).success
    assert ingest(instance, settings, store, "small", b"n\n1\n").success
    before = rows(settings, store, "events", instance)

    definitions = defs()
    schedule = definitions.resolve_schedule_def("compaction_schedule")
    policy = resources_for(settings.model_copy(update={"compaction_min_objects": 3}))["policy"]
    context = dg.build_schedule_context(instance=instance, resources={"policy": policy})
    requests = schedule(context)
    assert isinstance(requests, list)
    assert [r.partition_key for r in requests] == ["events"]  # "small" has one object
    assert requests[0].tags[LAUNCHED_BY_TAG] == "schedule"

    config = DatasetConfig(operation="compact", sort_by=["k"])
    assert run(instance, settings, "events", config).success
    manifest = latest_manifest(instance, "events")
    assert manifest is not None
    assert (manifest.version, len(manifest.objects), manifest.row_count) == (4, 1, 3)
    assert all(manifest.contains(seq) for seq in (1, 2, 3))
    assert rows(settings, store, "events", instance) == before
    con = duckdb.connect()
    attach_s3(con, settings.s3())
    sorted_keys = con.execute(
        "SELECT k FROM read_parquet(?)", [store.url(manifest.objects[0].key)]
    ).fetchall()
    assert sorted_keys == [(0,), (1,), (2,)]


def test_rebuild_gives_the_same_rows_from_the_same_sources(
    instance, settings: Settings, store: ObjectStore
) -> None:
    assert ingest(instance, settings, store, "people", b"id,name\n1,Ann\n").success
    assert ingest(instance, settings, store, "people", b"id,name\n2,Bo\n").success
    before = latest_manifest(instance, "people")
    assert run(instance, settings, "people", DatasetConfig(operation="rebuild")).success
    after = latest_manifest(instance, "people")
    assert before is not None and after is not None
    assert after.version == before.version + 1
    assert (after.base_seq, after.applied_through, after.excluded_seqs) == (
        before.base_seq,
        before.applied_through,
        before.excluded_seqs,
    )
    assert {o.key for o in after.objects}.isdisjoint({o.key for o in before.objects})
    assert rows(settings, store, "people", instance) == [(1, "Ann"), (2, "Bo")]


# -- cleanup -----------------------------------------------------------------------------


def test_cleanup_deletes_only_what_no_version_can_still_need(
    instance, settings: Settings, store: ObjectStore
) -> None:
    for i in range(2):
        assert ingest(instance, settings, store, "events", f"n\n{i}\n".encode()).success
    failed = land_csv(store, "events", b"other,schema\n1,2\n")  # fails: schema differs
    assert run(instance, settings, "events", DatasetConfig()).success  # decided: failed
    assert run(instance, settings, "events", DatasetConfig(operation="compact")).success
    current = latest_manifest(instance, "events")
    assert current is not None
    history, _ = manifest_history(instance, "events")
    old_objects = {o.key for m in history[1:] for o in m.objects} - {o.key for o in current.objects}
    pending = land_csv(store, "events", b"n\n9\n")
    announce(store, "events", pending.ingest_id)  # left behind by an API that died

    later = datetime.now(UTC) + timedelta(hours=2)
    within_grace = plan_cleanup(instance, store, later, timedelta(days=1), timedelta(0))
    assert within_grace.objects == []  # the old version was current a moment ago

    plan = plan_cleanup(instance, store, later, timedelta(hours=1), timedelta(hours=1))
    assert set(plan.objects) == old_objects
    # The current version's sources and the pending file stay; an announcement goes.
    assert sorted(plan.landing) == [
        failed.landing_key,
        uploading_key("events", pending.ingest_id),
    ]
    store.delete(plan.objects + plan.landing)
    assert all(store.exists(o.key) for o in current.objects)
    assert rows(settings, store, "events", instance) == [(0,), (1,)]


# -- retries -----------------------------------------------------------------------------


class FlakyStore(ObjectStore):
    """The real store, except that its first size() call fails as if the server were down."""

    failures = 1

    def size(self, key: str) -> int:
        if FlakyStore.failures:
            FlakyStore.failures -= 1
            raise StoreUnavailable("object store unreachable (injected once)")
        return super().size(key)


class FlakyResource(ObjectStoreResource):
    def store(self) -> ObjectStore:
        return FlakyStore(self.config())


def test_a_transient_store_fault_is_retried_and_the_ingest_materializes(
    instance, settings: Settings, store: ObjectStore
) -> None:
    land_csv(store, "people", b"id\n1\n")
    resources = resources_for(settings)
    resources["s3"] = FlakyResource(**resources["s3"].model_dump())
    result = run(instance, settings, "people", DatasetConfig(), resources)
    assert result.success
    assert FlakyStore.failures == 0
    retried = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert len(retried) == 1
    manifest = latest_manifest(instance, "people")
    assert manifest is not None and manifest.row_count == 1
