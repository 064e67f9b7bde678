"""Retention: what the cleanup job may delete, and nothing else.

- Dataset objects (`datasets/<name>/...`) that the current version does not list, once
  no version that still lists them has been current within the grace period (a query that
  started on it has long finished), and the object itself is older than the grace period (a
  run may be writing an object its manifest does not list yet). Time travel (`as_of`) to a
  version whose objects were cleaned up fails with a clear error.
- Landing files older than the retention whose ingest no catalog version uses as a source
  (failed ingests, uploads whose commit never finished). Sources of any version are kept:
  rebuild_job needs them.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import dagster as dg
from botocore.exceptions import ClientError

from lakehouse.ingests import read_receipt
from lakehouse.storage import LANDING, InvalidIngestId, ObjectStore, dataset_prefix
from lakehouse_assets.catalog import Manifest, manifest_history
from lakehouse_assets.ingest_status import ingest_status
from lakehouse_assets.partitions import DATASETS_PARTITIONS
from lakehouse_assets.resources import LakehousePolicy, ObjectStoreResource


@dataclass
class CleanupPlan:
    objects: list[str] = field(default_factory=list)
    landing: list[str] = field(default_factory=list)


def plan_cleanup(
    instance: dg.DagsterInstance,
    store: ObjectStore,
    now: datetime,
    grace: timedelta,
    retention: timedelta,
) -> CleanupPlan:
    plan = CleanupPlan()
    for name in instance.get_dynamic_partitions(DATASETS_PARTITIONS):
        history = manifest_history(instance, name)
        if not history:
            continue
        protected = _recently_listed(history, now - grace)
        for key, modified in store.list_objects(dataset_prefix(name)):
            if key not in protected and modified < now - grace:
                plan.objects.append(key)
        sources = {i for manifest in history for i in manifest.source_ingest_ids}
        for key, modified in store.list_objects(f"{LANDING}{name}/"):
            ingest_id = key.rsplit("/", 1)[-1].removesuffix(".csv")
            if modified >= now - retention or ingest_id in sources:
                continue
            if _finished_or_orphaned(instance, store, ingest_id):
                plan.landing.append(key)
    return plan


def _recently_listed(history: list[Manifest], since: datetime) -> set[str]:
    """Objects of the current version and of every version current at some point since
    `since` (history is newest first: a version stopped being current when the next began)."""
    keys = {o.key for o in [*history[0].objects, *history[0].rejects]}
    for newer, older in zip(history, history[1:], strict=False):
        if newer.updated_at < since:
            break
        keys |= {o.key for o in [*older.objects, *older.rejects]}
    return keys


def _finished_or_orphaned(instance: dg.DagsterInstance, store: ObjectStore, ingest_id: str) -> bool:
    try:
        record = read_receipt(store, ingest_id)
    except (ClientError, InvalidIngestId):  # no receipt: the upload never committed
        return True
    return ingest_status(instance, record).status in {"failed", "materialized"}


@dg.op(description="Delete the objects and landing files that retention allows, and log them.")
def clean_up(context: dg.OpExecutionContext, s3: ObjectStoreResource, policy: LakehousePolicy):
    store = s3.store()
    plan = plan_cleanup(
        context.instance,
        store,
        now=datetime.now(UTC),
        grace=timedelta(minutes=policy.object_grace_minutes),
        retention=timedelta(days=policy.landing_retention_days),
    )
    store.delete(plan.objects + plan.landing)
    context.log.info(
        f"deleted {len(plan.objects)} dataset objects and {len(plan.landing)} landing files"
    )
    return dg.Output(
        None,
        metadata={"dataset_objects": len(plan.objects), "landing_files": len(plan.landing)},
    )


@dg.job(
    description="Delete replaced dataset objects after their grace period, and landing "
    "files no catalog version uses after their retention."
)
def cleanup_job() -> None:
    clean_up()
