"""The ingest sensor: the safety net that makes sure every pending ingest gets a run.

The API pushes a run for each upload, so the sensor matters when that push could not
happen (webserver down, the API died right after committing). Each tick it lists the
`pending/` hints (one short listing, whatever the bucket holds) and asks for a run of each
hinted dataset that has none in progress. A run that finds nothing left to apply clears the
hint. Every few minutes it also sweeps all datasets' logs, for an ingest whose hint was
never written. No clock but the daemon's own decides anything.
"""

from __future__ import annotations

import time

import dagster as dg

from lakehouse.ingest.log import has_pending
from lakehouse.ingest.marks import datasets_marked_pending, datasets_with_log
from lakehouse.publish.catalog import latest_manifests
from lakehouse.runs import DATASETS_PARTITIONS, active_run, apply_request
from lakehouse.store import StoreUnavailable
from lakehouse_assets.jobs import ingest_job
from lakehouse_assets.partitions import dataset_partitions_def
from lakehouse_assets.resources import ObjectStoreResource

SWEEP_SECONDS = 300


@dg.sensor(
    job=ingest_job,
    minimum_interval_seconds=1,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts a run for each dataset with pending ingests and no run in progress.",
)
def ingest_sensor(
    context: dg.SensorEvaluationContext, s3: ObjectStoreResource
) -> dg.SensorResult | dg.SkipReason:
    store = s3.store()
    last_sweep = float(context.cursor or 0)
    sweep = time.time() - last_sweep >= SWEEP_SECONDS
    try:
        hinted = set(datasets_marked_pending(store))
        if sweep:
            manifests = latest_manifests(context.instance)
            hinted |= {
                name
                for name in datasets_with_log(store)
                if has_pending(
                    store, name, manifests[name].applied_through if name in manifests else 0
                )
            }
    except StoreUnavailable as exc:
        return dg.SkipReason(f"object store unavailable, will retry: {exc}")
    cursor = str(time.time()) if sweep else context.cursor
    # A dataset with a run in progress is left alone: when that run ends it looks at the
    # log again and keeps the hint if anything is left, and the next tick launches then.
    due = sorted(name for name in hinted if active_run(context.instance, name) is None)
    if not due:
        return dg.SkipReason("no dataset with pending ingests lacks a run")
    new = [
        name
        for name in due
        if not context.instance.has_dynamic_partition(DATASETS_PARTITIONS, name)
    ]
    return dg.SensorResult(
        run_requests=[apply_request(name, "sensor") for name in due],
        dynamic_partitions_requests=[dataset_partitions_def.build_add_request(new)] if new else [],
        cursor=cursor,
    )
