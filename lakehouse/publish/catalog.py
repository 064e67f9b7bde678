"""The catalog *is* the dataset asset's materializations: the latest one of a partition is
the dataset's manifest, earlier ones are its versions. Nothing is stored twice: the commit
record a run writes before it emits a version (`lakehouse.versions.commits`) is the same
manifest, there to make version numbers unique, and is published again if its run died
before it.

Written by the dataset asset (`manifest_metadata`), read by the asset, the sensor and the
API (`latest_manifest`, `latest_manifests`, `manifest_history`) straight from the Dagster
instance, through its public API.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from lakehouse.errors import InvalidInput
from lakehouse.formats.csv.types import Column
from lakehouse.manifest import Manifest
from lakehouse.runs import DATASET_ASSET_KEY, DATASETS_PARTITIONS
from lakehouse.store import ObjectStore, StoreUnavailable
from lakehouse.store.layout import commit_key, commits_prefix

log = logging.getLogger(__name__)

HISTORY_PAGE = 100


def manifest_metadata(manifest: Manifest) -> dict[str, dg.MetadataValue]:
    """The manifest as materialization metadata, in the keys the Dagster UI renders."""
    table_schema = dg.TableSchema(
        columns=[dg.TableColumn(c.name, c.type, description=c.reason) for c in manifest.columns]
    )
    return {
        "dagster/row_count": dg.MetadataValue.int(manifest.row_count),
        "dagster/column_schema": dg.MetadataValue.table_schema(table_schema),
        "dagster/uri": dg.MetadataValue.path(manifest.location),
        "dagster/table_name": dg.MetadataValue.text(manifest.name),
        "dataset_id": dg.MetadataValue.text(manifest.dataset_id),
        "version": dg.MetadataValue.int(manifest.version),
        "operation": dg.MetadataValue.text(manifest.operation),
        "schema_fingerprint": dg.MetadataValue.text(manifest.schema_fingerprint),
        "objects": dg.MetadataValue.json(
            [o.model_dump(exclude_none=True) for o in manifest.objects]
        ),
        "object_count": dg.MetadataValue.int(len(manifest.objects)),
        "bytes": dg.MetadataValue.int(manifest.bytes),
        "rejects": dg.MetadataValue.json([r.model_dump() for r in manifest.rejects]),
        "rejected_rows": dg.MetadataValue.int(manifest.rejected_rows),
        "base_seq": dg.MetadataValue.int(manifest.base_seq),
        "applied_through": dg.MetadataValue.int(manifest.applied_through),
        "excluded_seqs": dg.MetadataValue.json(manifest.excluded_seqs),
        "pruned_through": dg.MetadataValue.int(manifest.pruned_through),
        "key": dg.MetadataValue.json(manifest.key),
        "schema_version": dg.MetadataValue.int(manifest.schema_version),
        "added_ingest_ids": dg.MetadataValue.json(manifest.added_ingest_ids),
        "stats": dg.MetadataValue.json([s.model_dump() for s in manifest.stats]),
        "csv_dialect": dg.MetadataValue.json(manifest.dialect),
        "created_at": dg.MetadataValue.timestamp(manifest.created_at),
        **(
            {"iceberg": dg.MetadataValue.json(manifest.iceberg.model_dump())}
            if manifest.iceberg
            else {}
        ),
    }


def manifest_from_event(event: dg.EventLogEntry) -> Manifest:
    """The manifest a materialization of the dataset asset carries (ValueError, KeyError or
    TypeError when it carries none that holds together)."""
    materialization = event.asset_materialization
    assert materialization is not None and materialization.partition is not None
    meta: dict[str, Any] = {k: v.value for k, v in materialization.metadata.items()}
    schema = meta["dagster/column_schema"]
    return Manifest(
        dataset_id=meta["dataset_id"],
        name=materialization.partition,
        version=meta["version"],
        operation=meta.get("operation", "apply"),
        schema_fingerprint=meta["schema_fingerprint"],
        columns=[Column(c.name, c.type, c.description or "") for c in schema.columns],
        location=meta["dagster/uri"],
        objects=meta["objects"],
        row_count=meta["dagster/row_count"],
        bytes=meta["bytes"],
        rejects=meta.get("rejects", []),
        rejected_rows=meta.get("rejected_rows", 0),
        base_seq=meta.get("base_seq", 0),
        applied_through=meta.get("applied_through", 0),
        excluded_seqs=meta.get("excluded_seqs", []),
        pruned_through=meta.get("pruned_through", 0),
        key=meta.get("key", []),
        schema_version=meta.get("schema_version", 1),
        added_ingest_ids=meta.get("added_ingest_ids", []),
        stats=meta.get("stats", []),
        dialect=meta.get("csv_dialect", {}),
        iceberg=meta.get("iceberg"),
        created_at=datetime.fromtimestamp(meta["created_at"], UTC),
        updated_at=datetime.fromtimestamp(event.timestamp, UTC),
    )


def trusted_manifest(event: dg.EventLogEntry) -> Manifest | None:
    """The manifest of a materialization the project's run path wrote, else None (and a
    warning): one reported from outside a run (the UI's "Report materialization",
    GraphQL's reportRunlessAssetEvents) or one whose metadata does not hold together never
    becomes what a dataset is, and never fails a query."""
    if not event.run_id:
        log.warning("ignored a dataset materialization reported outside any run: %s", event)
        return None
    try:
        return manifest_from_event(event)
    except (ValueError, KeyError, TypeError, AttributeError, AssertionError) as exc:
        log.warning("ignored a malformed dataset materialization of run %s: %s", event.run_id, exc)
        return None


def _trusted(records: Iterable[dg.EventLogRecord]) -> list[Published]:
    found = []
    for record in records:
        manifest = trusted_manifest(record.event_log_entry)
        if manifest is not None:
            found.append(Published(record.storage_id, manifest, record.event_log_entry.run_id))
    return found


@dataclass(frozen=True)
class Published:
    """A version as the catalog holds it: its manifest, its place in the event log, and
    the run that emitted it."""

    storage_id: int
    manifest: Manifest
    run_id: str = ""


def latest_published(instance: dg.DagsterInstance) -> list[Published]:
    """Every dataset's latest version: one indexed read per dataset."""
    names = sorted(instance.get_dynamic_partitions(DATASETS_PARTITIONS))
    return [p for p in (_latest_trusted(instance, name) for name in names) if p]


def _latest_trusted(instance: dg.DagsterInstance, name: str) -> Published | None:
    """The newest version of `name` its runs wrote. One indexed read of one record is the
    rule; past events the catalog ignores, it reads a page at a time, so forged events
    cost a read per page of them, not per event."""
    cursor: str | None = None
    limit = 1
    while True:
        page = instance.fetch_materializations(
            dg.AssetRecordsFilter(DATASET_ASSET_KEY, asset_partitions=[name]),
            limit=limit,
            cursor=cursor,
        )
        if trusted := _trusted(page.records):
            return trusted[0]
        if not page.has_more:
            return None
        cursor, limit = page.cursor, HISTORY_PAGE


def latest_manifests(instance: dg.DagsterInstance) -> dict[str, Manifest]:
    return {p.manifest.name: p.manifest for p in latest_published(instance)}


def published_since(
    instance: dg.DagsterInstance, storage_id: int, limit: int = HISTORY_PAGE
) -> list[Published]:
    """The versions published after event `storage_id`, oldest first: one indexed query
    that finds nothing while the catalog is unchanged (the cheap check before a query)."""
    found: list[Published] = []
    cursor: str | None = None
    while True:
        page = instance.fetch_materializations(
            dg.AssetRecordsFilter(DATASET_ASSET_KEY, after_storage_id=storage_id),
            limit=limit,
            cursor=cursor,
            ascending=True,
        )
        found += _trusted(page.records)
        if not page.has_more:
            return found
        cursor = page.cursor


def latest_manifest(instance: dg.DagsterInstance, name: str) -> Manifest | None:
    latest = _latest_trusted(instance, name)
    return latest.manifest if latest else None


class CurrentManifests:
    """Each dataset's latest manifest, for a process that reads it on every upload.

    Every version has a commit record in the store before it is in the catalog, so a
    cached manifest is still the latest while no record follows its version: one short
    listing of the store instead of a query of Dagster's event log, which the runs are
    busy writing. A dataset with a newer record is read from the catalog again.
    """

    def __init__(self, store: ObjectStore, read: Callable[[str], Manifest | None]) -> None:
        self.store, self.read = store, read
        self._cached: dict[str, Manifest | None] = {}  # None: no version yet

    def latest(self, name: str) -> Manifest | None:
        if name in self._cached:
            cached = self._cached[name]
            if not self._newer_record(name, cached.version if cached else 0):
                return cached
        manifest = self._cached[name] = self.read(name)
        return manifest

    def _newer_record(self, name: str, version: int) -> bool:
        """Whether a version past `version` has been claimed; if the store cannot say,
        assume so (the catalog answers, and the upload meets the store's 503 itself)."""
        try:
            return self.store.first_key(commits_prefix(name), commit_key(name, version)) is not None
        except StoreUnavailable:
            return True


def manifest_history(
    instance: dg.DagsterInstance, name: str, limit: int = HISTORY_PAGE, cursor: str | None = None
) -> tuple[list[Manifest], str | None]:
    """Up to `limit` versions of `name`, newest first, from `cursor` on; and the cursor of
    the next page (None: no more). Each page costs the same however many versions exist."""
    page, cursor = published_history(instance, name, limit, cursor)
    return [p.manifest for p in page], cursor


def published_history(
    instance: dg.DagsterInstance, name: str, limit: int = HISTORY_PAGE, cursor: str | None = None
) -> tuple[list[Published], str | None]:
    """`manifest_history`, with each version's place in the event log and its run. The
    cursor is the event log's storage id of the last version given (the next page is the
    versions before it): ours to read, so a client's cursor is checked, never decoded by
    Dagster."""
    before = None if cursor is None else _storage_id(cursor)
    page = instance.fetch_materializations(
        dg.AssetRecordsFilter(DATASET_ASSET_KEY, asset_partitions=[name], before_storage_id=before),
        limit=limit,
    )
    last = page.records[-1].storage_id if page.has_more and page.records else None
    return _trusted(page.records), None if last is None else str(last)


def _storage_id(cursor: str) -> int:
    """A page's cursor as the storage id it names; 400 for anything else."""
    if cursor.isdecimal() and cursor.isascii() and 0 < int(cursor) < 2**63:
        return int(cursor)
    raise InvalidInput(
        f"invalid cursor {cursor[:40]!r}: send the `next_cursor` of the page before, "
        "or no cursor for the newest versions"
    )


def current_since(instance: dg.DagsterInstance, name: str, since: datetime) -> list[Published]:
    """The versions of `name` that were current at some point since `since`, newest first:
    the latest, and each older one whose successor came after `since` (the last of them was
    the one current at `since`, if the history reaches back that far)."""
    page, cursor = published_history(instance, name)
    found: list[Published] = []
    while page:
        for version in page:
            if found and found[-1].manifest.updated_at < since:
                return found
            found.append(version)
        if cursor is None:
            break
        page, cursor = published_history(instance, name, cursor=cursor)
    return found


def manifest_at(instance: dg.DagsterInstance, name: str, version: int) -> Manifest | None:
    """Version `version` of `name`, paging back from the newest: the cost grows with how
    far back it is, not with how many versions there are before it."""
    cursor: str | None = None
    while True:
        page, cursor = manifest_history(instance, name, cursor=cursor)
        for manifest in page:
            if manifest.version == version:
                return manifest
            if manifest.version < version:
                return None
        if cursor is None:
            return None


class InstanceCatalog:
    """The Dagster instance as a run's commit reads it (`lakehouse.versions.commit.Catalog`)."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.instance = instance

    def latest(self, dataset: str) -> Manifest | None:
        return latest_manifest(self.instance, dataset)

    def is_running(self, run_id: str) -> bool:
        run = self.instance.get_run_by_id(run_id)
        return run is not None and not run.is_finished
