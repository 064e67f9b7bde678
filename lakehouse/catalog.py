"""The catalog *is* the dataset asset's materializations: the latest one of a partition is
the dataset's manifest, earlier ones are its versions. Nothing is stored twice: the commit
record a run writes before it emits a version (`lakehouse.commits`) is the same manifest,
there to make version numbers unique, and is published again if its run died before it.

Written by the dataset asset (`Manifest.to_metadata`), read by the asset, the sensor and
the API (`latest_manifest`, `latest_manifests`, `manifest_history`) straight from the
Dagster instance.

A manifest says which ingests it contains without listing them all, so it stays small
however many ingests a dataset has had: the ingest log entries from `base_seq` (the first
ingest, or the last replace) through `applied_through`, less `excluded_seqs` (entries that
failed or were duplicates). Every entry up to `applied_through` has been decided.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import dagster as dg
from dagster import DagsterEventType
from pydantic import BaseModel

from lakehouse.csvschema import Column
from lakehouse.storage import ObjectStore, StoreUnavailable, commit_key, commits_prefix

DATASET_ASSET_KEY = dg.AssetKey("dataset")


class DataObject(BaseModel):
    """One Parquet object of a dataset."""

    key: str
    bytes: int
    rows: int


class ColumnStats(BaseModel):
    """Statistics that merge from what each new object adds, so a version never rescans
    the dataset (a distinct count would not merge, so there is none)."""

    column: str
    nulls: int = 0
    min: str | None = None
    max: str | None = None


class IcebergSnapshot(BaseModel):
    """Where other engines read a version: the Iceberg table, the snapshot that is this
    version, and the table metadata file written by that commit (`lakehouse.iceberg`)."""

    table: str
    snapshot_id: int
    metadata_location: str


class Manifest(BaseModel):
    dataset_id: str
    name: str
    version: int
    schema_fingerprint: str
    columns: list[Column]
    location: str
    objects: list[DataObject]
    row_count: int
    bytes: int
    # Rows that did not parse, kept with their line and reasons (the `<name>__rejects` view).
    rejects: list[DataObject] = []
    rejected_rows: int = 0
    base_seq: int = 0
    applied_through: int = 0
    excluded_seqs: list[int] = []
    added_ingest_ids: list[str] = []  # the ingests this version added
    operation: str = "apply"
    stats: list[ColumnStats] = []
    # How the file that set the columns was read (`Dialect.described`): delimiter, quote,
    # escape, header, skipped lines, comment, NULL markers, encoding, and why each.
    dialect: dict[str, Any] = {}
    # Set when the version is committed to its Iceberg table, after its commit record.
    iceberg: IcebergSnapshot | None = None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def empty(cls, name: str, location: str) -> Manifest:
        """A dataset before its first version: version 0, never materialized."""
        now = datetime.now(UTC)
        return cls(
            dataset_id=str(uuid.uuid4()),
            name=name,
            version=0,
            schema_fingerprint="",
            columns=[],
            location=location,
            objects=[],
            row_count=0,
            bytes=0,
            created_at=now,
            updated_at=now,
        )

    def contains(self, seq: int) -> bool:
        """Whether the ingest log entry `seq` is in this version's rows."""
        return (
            self.version > 0
            and self.base_seq <= seq <= self.applied_through
            and seq not in self.excluded_seqs
        )

    def next_version(self, **changes: Any) -> Manifest:
        """The next version with `changes`; sizes and counts follow from the objects."""
        manifest = self.model_copy(update=changes)
        return manifest.model_copy(
            update={
                "version": self.version + 1,
                "row_count": sum(o.rows for o in manifest.objects),
                "bytes": sum(o.bytes for o in manifest.objects),
                "rejected_rows": sum(r.rows for r in manifest.rejects),
                "iceberg": None,
                "updated_at": datetime.now(UTC),
            }
        )

    def to_metadata(self) -> dict[str, dg.MetadataValue]:
        table_schema = dg.TableSchema(
            columns=[dg.TableColumn(c.name, c.type, description=c.reason) for c in self.columns]
        )
        return {
            "dagster/row_count": dg.MetadataValue.int(self.row_count),
            "dagster/column_schema": dg.MetadataValue.table_schema(table_schema),
            "dagster/uri": dg.MetadataValue.path(self.location),
            "dagster/table_name": dg.MetadataValue.text(self.name),
            "dataset_id": dg.MetadataValue.text(self.dataset_id),
            "version": dg.MetadataValue.int(self.version),
            "operation": dg.MetadataValue.text(self.operation),
            "schema_fingerprint": dg.MetadataValue.text(self.schema_fingerprint),
            "objects": dg.MetadataValue.json([o.model_dump() for o in self.objects]),
            "object_count": dg.MetadataValue.int(len(self.objects)),
            "bytes": dg.MetadataValue.int(self.bytes),
            "rejects": dg.MetadataValue.json([r.model_dump() for r in self.rejects]),
            "rejected_rows": dg.MetadataValue.int(self.rejected_rows),
            "base_seq": dg.MetadataValue.int(self.base_seq),
            "applied_through": dg.MetadataValue.int(self.applied_through),
            "excluded_seqs": dg.MetadataValue.json(self.excluded_seqs),
            "added_ingest_ids": dg.MetadataValue.json(self.added_ingest_ids),
            "stats": dg.MetadataValue.json([s.model_dump() for s in self.stats]),
            "csv_dialect": dg.MetadataValue.json(self.dialect),
            "created_at": dg.MetadataValue.timestamp(self.created_at),
            **(
                {"iceberg": dg.MetadataValue.json(self.iceberg.model_dump())}
                if self.iceberg
                else {}
            ),
        }

    @classmethod
    def from_event(cls, event: dg.EventLogEntry) -> Manifest:
        materialization = event.asset_materialization
        assert materialization is not None and materialization.partition is not None
        meta: dict[str, Any] = {k: v.value for k, v in materialization.metadata.items()}
        schema = meta["dagster/column_schema"]
        return cls(
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
            added_ingest_ids=meta.get("added_ingest_ids", []),
            stats=meta.get("stats", []),
            dialect=meta.get("csv_dialect", {}),
            iceberg=meta.get("iceberg"),
            created_at=datetime.fromtimestamp(meta["created_at"], UTC),
            updated_at=datetime.fromtimestamp(event.timestamp, UTC),
        )


def change_marker(instance: dg.DagsterInstance) -> object:
    """Something that changes whenever the catalog may have changed: the event log's
    highest record id (one indexed query)."""
    return instance.event_log_storage.get_maximum_record_id()


def latest_storage_ids(instance: dg.DagsterInstance) -> Mapping[str, int]:
    """{dataset: storage id of its latest materialization}: one cheap query, which changes
    exactly when the catalog does."""
    return instance.get_latest_storage_id_by_partition(
        DATASET_ASSET_KEY, DagsterEventType.ASSET_MATERIALIZATION
    )


def manifests_by_storage_id(
    instance: dg.DagsterInstance, storage_ids: list[int]
) -> dict[int, Manifest]:
    if not storage_ids:
        return {}
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(DATASET_ASSET_KEY, storage_ids=storage_ids), limit=len(storage_ids)
    ).records
    return {r.storage_id: Manifest.from_event(r.event_log_entry) for r in records}


def latest_manifests(instance: dg.DagsterInstance) -> dict[str, Manifest]:
    by_id = manifests_by_storage_id(instance, list(latest_storage_ids(instance).values()))
    return {m.name: m for m in sorted(by_id.values(), key=lambda m: m.name)}


def latest_manifest(instance: dg.DagsterInstance, name: str) -> Manifest | None:
    history, _ = manifest_history(instance, name, limit=1)
    return history[0] if history else None


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


HISTORY_PAGE = 100


def manifest_history(
    instance: dg.DagsterInstance, name: str, limit: int = HISTORY_PAGE, cursor: str | None = None
) -> tuple[list[Manifest], str | None]:
    """Up to `limit` versions of `name`, newest first, from `cursor` on; and the cursor of
    the next page (None: no more). Each page costs the same however many versions exist."""
    page = instance.fetch_materializations(
        dg.AssetRecordsFilter(DATASET_ASSET_KEY, asset_partitions=[name]),
        limit=limit,
        cursor=cursor,
    )
    manifests = [Manifest.from_event(r.event_log_entry) for r in page.records]
    return manifests, page.cursor if page.has_more else None


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
