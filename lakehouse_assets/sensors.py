"""The ingest sensor: every completed ingest record becomes exactly one run.

Records sort by completion time, so each tick lists only the keys after
`watermark - LOOKBACK`. The lookback catches records whose upload started earlier but
landed later than ones already seen (out-of-order completion, clock skew between API
replicas); keys seen inside that window are kept in the cursor so they are read once.
Dagster itself refuses a second run with the same `run_key` (the ingest id).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import dagster as dg

from lakehouse.ingests import read_record
from lakehouse.storage import INGESTS, RECORD_TIME_FORMAT, StoreUnavailable
from lakehouse_assets.assets import DatasetConfig
from lakehouse_assets.jobs import DATASET_TAG, INGEST_TAG, LAUNCHED_BY_TAG, ingest_job
from lakehouse_assets.partitions import DATASETS_PARTITIONS, dataset_partitions_def
from lakehouse_assets.resources import ObjectStoreResource

LOOKBACK = timedelta(minutes=10)
MAX_RUNS_PER_TICK = 200


def _key_time(key: str) -> datetime:
    stamp = key.removeprefix(INGESTS).split("-", 1)[0]
    return datetime.strptime(stamp, RECORD_TIME_FORMAT).replace(tzinfo=UTC)


def _window_start(watermark: str) -> str:
    """The first record key the lookback window can hold."""
    if not watermark:
        return ""
    return f"{INGESTS}{(_key_time(watermark) - LOOKBACK).strftime(RECORD_TIME_FORMAT)}"


@dg.sensor(
    job=ingest_job,
    minimum_interval_seconds=1,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts one ingest_job run per completed upload (run key = ingest id).",
)
def ingest_sensor(
    context: dg.SensorEvaluationContext, s3: ObjectStoreResource
) -> dg.SensorResult | dg.SkipReason:
    cursor = json.loads(context.cursor) if context.cursor else {}
    last_watermark: str = cursor.get("watermark", "")
    seen: set[str] = set(cursor.get("seen", []))
    store = s3.store()
    try:
        keys = store.list_keys(INGESTS, start_after=_window_start(last_watermark))
        new_keys = [k for k in keys if k.endswith(".json") and k not in seen][:MAX_RUNS_PER_TICK]
        records = [read_record(store, key) for key in new_keys]
    except StoreUnavailable as exc:
        return dg.SkipReason(f"object store unavailable, will retry: {exc}")
    if not records:
        return dg.SkipReason("no new ingests")

    watermark = max([last_watermark, *new_keys])
    # The API may have launched a run already (it does so before writing the record).
    pending = [
        (key, r)
        for key, r in zip(new_keys, records, strict=True)
        if not context.instance.get_runs(dg.RunsFilter(tags={INGEST_TAG: r.ingest_id}), limit=1)
    ]
    start = _window_start(watermark)
    new_datasets = sorted(
        name
        for name in {r.dataset for _, r in pending}
        if not context.instance.has_dynamic_partition(DATASETS_PARTITIONS, name)
    )
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=r.ingest_id,
                partition_key=r.dataset,
                run_config=dg.RunConfig(
                    ops={"dataset": DatasetConfig.model_validate({"ingest_record_key": key})}
                ),
                tags={DATASET_TAG: r.dataset, INGEST_TAG: r.ingest_id, LAUNCHED_BY_TAG: "sensor"},
            )
            for key, r in pending
        ],
        dynamic_partitions_requests=(
            [dataset_partitions_def.build_add_request(new_datasets)] if new_datasets else []
        ),
        cursor=json.dumps(
            {"watermark": watermark, "seen": sorted(k for k in seen | set(new_keys) if k >= start)}
        ),
    )
