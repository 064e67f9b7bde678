"""Retention: what the cleanup job may delete, and nothing else.

- Dataset objects (`datasets/<name>/...`) that the current version does not list, once
  no version that still lists them has been current within the grace period (a query that
  started on it has long finished), and the object itself is older than the grace period (a
  run may be writing an object its manifest does not list yet). Time travel (`as_of`) to a
  version whose objects were cleaned up fails with a clear error.
- Iceberg snapshots of the versions whose objects may go are expired first; objects any
  snapshot still left in the table references are kept whatever the catalog says, so a
  reader of a retained snapshot never finds a file gone. Table metadata files (manifests,
  manifest lists) that no retained snapshot needs go after the grace period too.
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
from lakehouse.iceberg import ICEBERG, IcebergTables, key_of
from lakehouse.ingests import read_receipt_of
from lakehouse.runs import DATASETS_PARTITIONS
from lakehouse.storage import LANDING, InvalidIngestId, ObjectStore, dataset_prefix
from lakehouse_assets.resources import (
    IcebergCatalogResource,
    LakehousePolicy,
    ObjectStoreResource,
)


@dataclass
class CleanupPlan:
    objects: list[str] = field(default_factory=list)
    landing: list[str] = field(default_factory=list)
    # Per dataset, the oldest version whose Iceberg snapshot stays (older ones are expired).
    keep_snapshots_from: dict[str, int] = field(default_factory=dict)
    before: datetime | None = None  # metadata files older than this may go


def plan_cleanup(
    instance: dg.DagsterInstance,
    store: ObjectStore,
    now: datetime,
    grace: timedelta,
    retention: timedelta,
) -> CleanupPlan:
    plan = CleanupPlan(before=now - grace)
    for name in instance.get_dynamic_partitions(DATASETS_PARTITIONS):
        current, protected, oldest = _recently_listed(instance, name, now - grace)
        if current is None or commits.unpublished(store, name, current.version) is not None:
            continue  # a version committed but not yet published: its objects are needed
        plan.keep_snapshots_from[name] = oldest
        for key, modified in store.list_objects(dataset_prefix(name)):
            if key not in protected and modified < now - grace:
                plan.objects.append(key)
        for key, modified in store.list_objects(f"{LANDING}{name}/"):
            if modified < now - retention and not _still_needed(store, current, key):
                plan.landing.append(key)
    return plan


def _recently_listed(
    instance: dg.DagsterInstance, name: str, since: datetime
) -> tuple[Manifest | None, set[str], int]:
    """The current version, the objects of every version current at some point since
    `since` (history is newest first: a version stopped being current when the next began),
    and the oldest of those versions."""
    page, cursor = manifest_history(instance, name)
    if not page:
        return None, set(), 0
    current = page[0]
    keys = {o.key for o in [*current.objects, *current.rejects]}
    newer = current
    while page:
        for older in page:
            if older is current:
                continue
            if newer.updated_at < since:
                return current, keys, newer.version
            keys |= {o.key for o in [*older.objects, *older.rejects]}
            newer = older
        if cursor is None:
            break
        page, cursor = manifest_history(instance, name, cursor=cursor)
    return current, keys, newer.version


def _still_needed(store: ObjectStore, current: Manifest, landing: str) -> bool:
    """Pending, or a source of the current version (rebuild_job reads it again)."""
    ingest_id = landing.rsplit("/", 1)[-1].removesuffix(".csv")
    try:
        receipt = read_receipt_of(store, ingest_id)
    except (ClientError, InvalidIngestId):  # no receipt: the upload never committed
        return False
    return receipt.seq > current.applied_through or current.contains(receipt.seq)


@dataclass
class Cleaned:
    objects: list[str] = field(default_factory=list)
    landing: list[str] = field(default_factory=list)
    snapshots: int = 0  # Iceberg snapshots expired
    metadata: list[str] = field(default_factory=list)  # Iceberg metadata files deleted


def apply_cleanup(plan: CleanupPlan, store: ObjectStore, tables: IcebergTables) -> Cleaned:
    """Expire the Iceberg snapshots the plan lets go, then delete the planned objects that
    no snapshot left in a table references, the landing files, and the table metadata
    files no retained snapshot needs."""
    cleaned = Cleaned(landing=plan.landing)
    still_read: set[str] = set()
    for name, oldest in plan.keep_snapshots_from.items():
        cleaned.snapshots += len(tables.expire(name, oldest))
        data, metadata = tables.referenced(name)
        still_read |= {k for url in data if (k := key_of(url, store.bucket))}
        if plan.before is not None and metadata:
            kept = {k for url in metadata if (k := key_of(url, store.bucket))}
            cleaned.metadata += [
                key
                for key, modified in store.list_objects(f"{ICEBERG}{name}/metadata/")
                if key not in kept and modified < plan.before
            ]
    cleaned.objects = [k for k in plan.objects if k not in still_read]
    store.delete(cleaned.objects + cleaned.landing + cleaned.metadata)
    return cleaned


@dg.op(description="Delete the objects and landing files that retention allows, and log them.")
def clean_up(
    context: dg.OpExecutionContext,
    s3: ObjectStoreResource,
    policy: LakehousePolicy,
    iceberg: IcebergCatalogResource,
):
    store = s3.store()
    plan = plan_cleanup(
        context.instance,
        store,
        now=datetime.now(UTC),
        grace=timedelta(minutes=policy.object_grace_minutes),
        retention=timedelta(days=policy.landing_retention_days),
    )
    cleaned = apply_cleanup(plan, store, iceberg.tables(store.config))
    context.log.info(
        f"expired {cleaned.snapshots} Iceberg snapshots; deleted {len(cleaned.objects)} "
        f"dataset objects, {len(cleaned.metadata)} Iceberg metadata files and "
        f"{len(cleaned.landing)} landing files"
    )
    return dg.Output(
        None,
        metadata={
            "dataset_objects": len(cleaned.objects),
            "landing_files": len(cleaned.landing),
            "iceberg_snapshots_expired": cleaned.snapshots,
            "iceberg_metadata_files": len(cleaned.metadata),
        },
    )


@dg.job(
    description="Delete replaced dataset objects after their grace period, and landing "
    "files no catalog version uses after their retention."
)
def cleanup_job() -> None:
    clean_up()
