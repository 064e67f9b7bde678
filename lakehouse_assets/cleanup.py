"""Retention: what the cleanup job may delete, and nothing else.

- Dataset objects (`datasets/<name>/...`) that the current version does not list, once
  no version that still lists them has been current within the grace period (a query that
  started on it has long finished), and the object itself is older than the grace period (a
  run may be writing an object its manifest does not list yet). Time travel (`as_of`) to a
  version whose objects were cleaned up fails with a clear error.
- Landing files older than the retention whose ingest the current version does not
  contain and that are not pending: uploads that never committed, ingests that failed or
  were duplicates, and ones a replace took out. The current version's sources stay:
  rebuild_job needs them.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import dagster as dg
from botocore.exceptions import ClientError

from lakehouse import commits
from lakehouse.catalog import Manifest, manifest_history
from lakehouse.ingests import read_receipt_of
from lakehouse.runs import DATASETS_PARTITIONS
from lakehouse.storage import LANDING, InvalidIngestId, ObjectStore, dataset_prefix
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
        current, protected = _recently_listed(instance, name, now - grace)
        if current is None or commits.unpublished(store, name, current.version) is not None:
            continue  # a version committed but not yet published: its objects are needed
        for key, modified in store.list_objects(dataset_prefix(name)):
            if key not in protected and modified < now - grace:
                plan.objects.append(key)
        for key, modified in store.list_objects(f"{LANDING}{name}/"):
            if modified < now - retention and not _still_needed(store, current, key):
                plan.landing.append(key)
    return plan


def _recently_listed(
    instance: dg.DagsterInstance, name: str, since: datetime
) -> tuple[Manifest | None, set[str]]:
    """The current version, and the objects of every version current at some point since
    `since` (history is newest first: a version stopped being current when the next began)."""
    page, cursor = manifest_history(instance, name)
    if not page:
        return None, set()
    current = page[0]
    keys = {o.key for o in [*current.objects, *current.rejects]}
    newer = current
    while page:
        for older in page:
            if older is current:
                continue
            if newer.updated_at < since:
                return current, keys
            keys |= {o.key for o in [*older.objects, *older.rejects]}
            newer = older
        if cursor is None:
            break
        page, cursor = manifest_history(instance, name, cursor=cursor)
    return current, keys


def _still_needed(store: ObjectStore, current: Manifest, landing: str) -> bool:
    """Pending, or a source of the current version (rebuild_job reads it again)."""
    ingest_id = landing.rsplit("/", 1)[-1].removesuffix(".csv")
    try:
        receipt = read_receipt_of(store, ingest_id)
    except (ClientError, InvalidIngestId):  # no receipt: the upload never committed
        return False
    return receipt.seq > current.applied_through or current.contains(receipt.seq)


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
