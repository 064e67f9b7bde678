"""Purge: erase now what only the earlier versions of a dataset still hold, instead of
waiting for retention. After a delete or a merge took rows out (a GDPR erase), the rows are
gone from the current version, but the versions before it, their Iceberg snapshots and the
uploaded files still hold them; a purge of the dataset removes, in this order:

1. the Iceberg snapshots of every version before the current one (expired), and the table
   metadata files (manifests, manifest lists) only they needed;
2. the dataset's objects the current version does not list, written before it was
   committed (an object written since belongs to a run building on it);
3. the landing files of settled ingests (of a keyed dataset all of them, as no rebuild
   reads them again; otherwise those the current version does not contain), never a
   pending one's;
4. Dagster's runs that emitted the earlier versions (their materializations, previews
   included; `DagsterInstance.delete_run`).

Each step deletes only what the current version does not need, so a purge that dies
anywhere is finished by the next (it is idempotent), and a query or run on the current
version is never touched. Time travel (`as_of`) to a purged version fails saying so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import dagster as dg

from lakehouse.errors import Conflict, NotFound
from lakehouse.ingest.log import read_receipt_of
from lakehouse.manifest import Manifest
from lakehouse.publish.catalog import latest_manifest, published_history
from lakehouse.publish.iceberg import IcebergTables
from lakehouse.publish.pruning import delete_run
from lakehouse.store import ObjectStore
from lakehouse.store.layout import (
    LANDING,
    InvalidIngestId,
    dataset_prefix,
    iceberg_metadata_prefix,
    key_of,
)
from lakehouse.versions import commits


@dataclass
class Purged:
    """What a purge removed; `version` is the one that stays."""

    dataset: str
    version: int
    snapshots: int = 0
    objects: list[str] = field(default_factory=list)
    metadata: list[str] = field(default_factory=list)
    landing: list[str] = field(default_factory=list)
    runs: int = 0


def purge(
    instance: dg.DagsterInstance, store: ObjectStore, tables: IcebergTables, name: str
) -> Purged:
    """Erase what only the versions of `name` before its current one hold (see above)."""
    current = latest_manifest(instance, name)
    if current is None:
        raise NotFound(f"no dataset {name!r}")
    if commits.unpublished(store, name, current.version) is not None:
        raise Conflict(
            f"a version of {name!r} is being committed after v{current.version}: purge again "
            "once it is published (GET /v1/catalog/{name} shows it)"
        )
    started = datetime.now(current.updated_at.tzinfo)
    done = Purged(name, current.version)
    done.snapshots = len(tables.expire(name, current.version))
    data, metadata = tables.referenced(name)
    in_snapshots = {k for url in data if (k := key_of(url, store.bucket))}
    needed_metadata = {k for url in metadata if (k := key_of(url, store.bucket))}
    listed = {o.key for o in [*current.objects, *current.rejects]} | in_snapshots
    done.objects = [
        key
        for key, modified in store.list_objects(dataset_prefix(name))
        if key not in listed and modified < current.updated_at
    ]
    done.metadata = [
        key
        for key, modified in store.list_objects(iceberg_metadata_prefix(name))
        if key not in needed_metadata and modified < started
    ]
    done.landing = [
        key
        for key, _ in store.list_objects(f"{LANDING}{name}/")
        if _settled_and_unneeded(store, current, key)
    ]
    store.delete(done.objects + done.metadata + done.landing)
    done.runs = _delete_earlier_runs(instance, name, current)
    return done


def _settled_and_unneeded(store: ObjectStore, current: Manifest, landing: str) -> bool:
    """A landing file whose ingest is decided, and which no rebuild of the current version
    reads (a keyed dataset has none). An upload with no receipt yet may be committing."""
    ingest_id = landing.rsplit("/", 1)[-1].removesuffix(".csv")
    try:
        receipt = read_receipt_of(store, ingest_id)
    except (NotFound, InvalidIngestId):
        return False
    if receipt.seq > current.applied_through:
        return False  # pending
    return bool(current.key) or not current.contains(receipt.seq)


def _delete_earlier_runs(instance: dg.DagsterInstance, name: str, current: Manifest) -> int:
    """Delete the runs that emitted the versions of `name` before `current` (never the one
    that emitted `current`)."""
    earlier: set[str] = set()
    keep: set[str] = set()
    page, cursor = published_history(instance, name)
    while page:
        for p in page:
            (earlier if p.manifest.version < current.version else keep).add(p.run_id)
        if cursor is None:
            break
        page, cursor = published_history(instance, name, cursor=cursor)
    for run_id in earlier - keep:
        delete_run(instance, run_id)
    return len(earlier - keep)
