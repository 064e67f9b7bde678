"""The ingest sensor against a real S3 server."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from lakehouse.ingests import IngestRecord, new_ingest_id
from lakehouse.settings import Settings
from lakehouse.storage import ObjectStore
from lakehouse_assets.partitions import DATASETS_PARTITIONS
from lakehouse_assets.sensors import LOOKBACK, ingest_sensor
from tests.helpers import land_csv, resources_for

pytestmark = pytest.mark.integration


def tick(instance: dg.DagsterInstance, settings: Settings, cursor: str | None = None):
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"s3": resources_for(settings)["s3"]}
    )
    return ingest_sensor(context), context


def backdate(store: ObjectStore, record: IngestRecord, by: timedelta) -> IngestRecord:
    """Rewrite `record` as if it completed `by` earlier (a slow upload finishing late)."""
    store.delete([record.key])
    moved = record.model_copy(update={"completed_at": record.completed_at - by})
    store.put_json(moved.key, moved.model_dump(mode="json"))
    return moved


def test_each_ingest_becomes_one_run_request_keyed_by_its_id(
    settings: Settings, store: ObjectStore
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    a = land_csv(store, "alpha", b"x\n1\n")
    b = land_csv(store, "beta", b"x\n2\n")

    result, _ = tick(instance, settings)
    assert isinstance(result, dg.SensorResult)
    requests = result.run_requests or []
    assert [r.run_key for r in requests] == [a.ingest_id, b.ingest_id]
    assert [r.partition_key for r in requests] == ["alpha", "beta"]
    assert requests[0].tags["lakehouse/dataset"] == "alpha"
    assert requests[0].run_config["ops"]["dataset"]["config"]["ingest_record_key"] == a.key
    added = result.dynamic_partitions_requests[0]
    assert isinstance(added, dg.AddDynamicPartitionsRequest)
    assert sorted(added.partition_keys) == ["alpha", "beta"]

    again, _ = tick(instance, settings, cursor=result.cursor)
    assert isinstance(again, dg.SkipReason)


def test_an_ingest_completing_out_of_order_is_still_picked_up(
    settings: Settings, store: ObjectStore
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    land_csv(store, "alpha", b"x\n1\n")
    first, _ = tick(instance, settings)
    assert isinstance(first, dg.SensorResult)

    # Completed "before" the watermark but written after the tick, inside the lookback.
    late = backdate(store, land_csv(store, "alpha", b"x\n2\n"), LOOKBACK / 2)
    second, _ = tick(instance, settings, cursor=first.cursor)
    assert isinstance(second, dg.SensorResult)
    assert [r.run_key for r in second.run_requests or []] == [late.ingest_id]


def test_the_cursor_stays_bounded_and_old_records_are_not_listed_again(
    settings: Settings, store: ObjectStore
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(DATASETS_PARTITIONS, ["alpha"])
    old = backdate(store, land_csv(store, "alpha", b"x\n1\n"), 3 * LOOKBACK)
    new = land_csv(store, "alpha", b"x\n2\n")
    result, _ = tick(instance, settings)
    assert isinstance(result, dg.SensorResult)
    assert [r.run_key for r in result.run_requests or []] == [old.ingest_id, new.ingest_id]
    assert result.dynamic_partitions_requests == []  # "alpha" already existed
    cursor = json.loads(result.cursor or "{}")
    assert cursor["seen"] == [new.key]  # the old key fell out of the window
    assert cursor["watermark"] == new.key


def test_store_down_skips_the_tick_and_keeps_the_cursor(settings: Settings) -> None:
    down = settings.model_copy(update={"s3_secret_key": "wrong"})
    result, _ = tick(dg.DagsterInstance.ephemeral(), down, cursor='{"watermark": "", "seen": []}')
    assert isinstance(result, dg.SkipReason)
    assert "object store unavailable" in (result.skip_message or "")


def test_record_keys_sort_by_completion_time() -> None:
    now = datetime.now(UTC)
    keys = [
        IngestRecord.model_construct(
            ingest_id=new_ingest_id(), completed_at=now + timedelta(seconds=i)
        ).key
        for i in range(3)
    ]
    assert keys == sorted(keys)
