"""The ingest sensor against a real S3 server."""

from __future__ import annotations

import time
import uuid

import dagster as dg
import pytest

from lakehouse.runs import DATASETS_PARTITIONS, LAUNCHED_BY_TAG, PARTITION_TAG
from lakehouse.settings import Settings
from lakehouse.store import ObjectStore
from lakehouse.store.layout import pending_key
from lakehouse_assets.sensors import SWEEP_SECONDS, ingest_sensor
from tests.helpers import land_csv, resources_for, run_dataset

pytestmark = pytest.mark.integration


def tick(instance: dg.DagsterInstance, settings: Settings, cursor: str | None = None):
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"s3": resources_for(settings)["s3"]}
    )
    return ingest_sensor(context)


def a_recent_sweep() -> str:
    return str(time.time())


def test_each_dataset_with_pending_ingests_gets_one_run_request(
    settings: Settings, store: ObjectStore
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(DATASETS_PARTITIONS, ["beta"])
    for data in (b"x\n1\n", b"x\n2\n"):
        land_csv(store, "alpha", data)
    land_csv(store, "beta", b"x\n3\n")

    result = tick(instance, settings, a_recent_sweep())
    assert isinstance(result, dg.SensorResult)
    requests = result.run_requests or []
    assert [r.partition_key for r in requests] == ["alpha", "beta"]
    assert requests[0].tags[LAUNCHED_BY_TAG] == "sensor"
    config = requests[0].run_config["ops"]["dataset"]["config"]
    assert (config["operation"], config["only_if_pending"]) == ("apply", True)
    added = result.dynamic_partitions_requests[0]
    assert isinstance(added, dg.AddDynamicPartitionsRequest)
    assert list(added.partition_keys) == ["alpha"]  # beta's partition existed


def test_a_dataset_whose_run_waits_in_the_queue_gets_no_second_one(
    settings: Settings, store: ObjectStore
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    land_csv(store, "alpha", b"x\n1\n")
    instance.add_run(
        dg.DagsterRun(
            job_name="ingest_job",
            run_id=str(uuid.uuid4()),
            tags={PARTITION_TAG: "alpha"},
            status=dg.DagsterRunStatus.NOT_STARTED,
        )
    )
    result = tick(instance, settings, a_recent_sweep())
    assert isinstance(result, dg.SkipReason)


def test_once_a_run_applied_everything_the_sensor_has_nothing_to_do(
    instance: dg.DagsterInstance, settings: Settings, store: ObjectStore
) -> None:
    land_csv(store, "alpha", b"x\n1\n")
    assert run_dataset(instance, settings, "alpha").success
    assert not store.exists(pending_key("alpha"))
    result = tick(instance, settings)  # a sweep too: every log is up to date
    assert isinstance(result, dg.SkipReason)


def test_an_ingest_whose_hint_was_never_written_is_found_by_the_sweep(
    settings: Settings, store: ObjectStore
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    land_csv(store, "alpha", b"x\n1\n")
    store.delete([pending_key("alpha")])  # the API died between its commit and the hint

    assert isinstance(tick(instance, settings, a_recent_sweep()), dg.SkipReason)
    due = str(time.time() - SWEEP_SECONDS - 1)
    result = tick(instance, settings, due)
    assert isinstance(result, dg.SensorResult)
    assert [r.partition_key for r in result.run_requests or []] == ["alpha"]
    assert float(result.cursor or 0) > float(due)


def test_store_down_skips_the_tick(settings: Settings) -> None:
    down = settings.model_copy(update={"s3_secret_key": "wrong"})
    result = tick(dg.DagsterInstance.ephemeral(), down, a_recent_sweep())
    assert isinstance(result, dg.SkipReason)
    assert "object store unavailable" in (result.skip_message or "")
