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
  were duplicates, and ones a replace took out. The current version's sources stay until
  retention prunes their ingests (`lakehouse.publish.pruning`): rebuild_job needs them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import dagster as dg

from lakehouse.errors import NotFound
from lakehouse.ingest.log import read_receipt_of
from lakehouse.manifest import Manifest
from lakehouse.publish.catalog import current_since
from lakehouse.publish.iceberg import IcebergTables
from lakehouse.runs import DATASETS_PARTITIONS
from lakehouse.store import ObjectStore
from lakehouse.store.layout import (
    LANDING,
    InvalidIngestId,
    dataset_prefix,
    iceberg_metadata_prefix,
    key_of,
    uploading_prefix,
)
from lakehouse.versions import commits


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
    `since`, and the oldest of those versions."""
    versions = [v.manifest for v in current_since(instance, name, since)]
    if not versions:
        return None, set(), 0
    keys = {o.key for m in versions for o in [*m.objects, *m.rejects]}
    return versions[0], keys, versions[-1].version


def _still_needed(store: ObjectStore, current: Manifest, landing: str) -> bool:
    """Pending, or a source of the current version (rebuild_job reads it again); an
    upload's announcement as under way never is, once that old."""
    if landing.startswith(uploading_prefix(current.name)):
        return False
    ingest_id = landing.rsplit("/", 1)[-1].removesuffix(".csv")
    try:
        receipt = read_receipt_of(store, ingest_id)
    except (NotFound, InvalidIngestId):  # no receipt: the upload never committed
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
                for key, modified in store.list_objects(iceberg_metadata_prefix(name))
                if key not in kept and modified < plan.before
            ]
    cleaned.objects = [k for k in plan.objects if k not in still_read]
    store.delete(cleaned.objects + cleaned.landing + cleaned.metadata)
    return cleaned
