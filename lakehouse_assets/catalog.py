"""The catalog *is* the dataset asset's materializations: the latest one of a partition is
the dataset's manifest, earlier ones are its earlier versions. Nothing is stored twice.

Written by the asset (`Manifest.to_metadata`), read by the asset and the API
(`latest_manifests`, `manifest_history`) straight from the Dagster instance.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
from dagster import DagsterEventType
from dagster._core.storage.event_log import SqliteEventLogStorage
from pydantic import BaseModel

from lakehouse.csvschema import Column

DATASET_ASSET_KEY = dg.AssetKey("dataset")


class DataObject(BaseModel):
    """One Parquet object of a dataset."""

    key: str
    bytes: int
    rows: int
    ingest_id: str = ""  # the ingest it holds; empty for a compacted object (several)


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
    source_ingest_ids: list[str]
    # Rows that did not parse, kept with their line and reason (the `<name>__rejects` view).
    rejects: list[DataObject] = []
    rejected_rows: int = 0
    created_at: datetime
    updated_at: datetime

    @classmethod
    def first(cls, name: str, location: str, columns: list[Column], fingerprint: str) -> Manifest:
        """The manifest of a dataset before any object: version 0, never materialized."""
        now = datetime.now(UTC)
        return cls(
            dataset_id=str(uuid.uuid4()),
            name=name,
            version=0,
            schema_fingerprint=fingerprint,
            columns=columns,
            location=location,
            objects=[],
            row_count=0,
            bytes=0,
            source_ingest_ids=[],
            created_at=now,
            updated_at=now,
        )

    def appended(self, obj: DataObject, rejects: DataObject | None) -> Manifest:
        """The next version with `obj` added. An object of the same key is replaced, so
        re-running an ingest never doubles its rows."""
        objects = [o for o in self.objects if o.key != obj.key] + [obj]
        return self._next_version(
            objects,
            [r for r in self.rejects if r.ingest_id != obj.ingest_id] + _listed(rejects),
            sources=_unique([*self.source_ingest_ids, obj.ingest_id]),
        )

    def replaced(
        self, obj: DataObject, rejects: DataObject | None, columns: list[Column], fingerprint: str
    ) -> Manifest:
        """The next version made of `obj` alone, with its columns: earlier versions stay in
        the history, the dataset keeps its id."""
        return self.model_copy(
            update={"columns": columns, "schema_fingerprint": fingerprint}
        )._next_version([obj], _listed(rejects), sources=[obj.ingest_id])

    def compacted(self, objects: list[DataObject]) -> Manifest:
        """The next version: the same rows and sources in fewer objects."""
        return self._next_version(objects, self.rejects, sources=self.source_ingest_ids)

    def rebuilt(
        self,
        objects: list[DataObject],
        rejects: list[DataObject],
        columns: list[Column],
        fingerprint: str,
    ) -> Manifest:
        """The next version: the same sources converted again, maybe with a new schema."""
        return self.model_copy(
            update={"columns": columns, "schema_fingerprint": fingerprint}
        )._next_version(objects, rejects, sources=self.source_ingest_ids)

    def _next_version(
        self, objects: list[DataObject], rejects: list[DataObject], sources: list[str]
    ) -> Manifest:
        return self.model_copy(
            update={
                "version": self.version + 1,
                "objects": objects,
                "row_count": sum(o.rows for o in objects),
                "bytes": sum(o.bytes for o in objects),
                "source_ingest_ids": sources,
                "rejects": rejects,
                "rejected_rows": sum(r.rows for r in rejects),
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
            "schema_fingerprint": dg.MetadataValue.text(self.schema_fingerprint),
            "objects": dg.MetadataValue.json([o.model_dump() for o in self.objects]),
            "object_count": dg.MetadataValue.int(len(self.objects)),
            "bytes": dg.MetadataValue.int(self.bytes),
            "source_ingest_ids": dg.MetadataValue.json(self.source_ingest_ids),
            "rejects": dg.MetadataValue.json([r.model_dump() for r in self.rejects]),
            "rejected_rows": dg.MetadataValue.int(self.rejected_rows),
            "created_at": dg.MetadataValue.timestamp(self.created_at),
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
            schema_fingerprint=meta["schema_fingerprint"],
            columns=[Column(c.name, c.type, c.description or "") for c in schema.columns],
            location=meta["dagster/uri"],
            objects=meta["objects"],
            row_count=meta["dagster/row_count"],
            bytes=meta["bytes"],
            source_ingest_ids=meta["source_ingest_ids"],
            rejects=meta.get("rejects", []),
            rejected_rows=meta.get("rejected_rows", 0),
            created_at=datetime.fromtimestamp(meta["created_at"], UTC),
            updated_at=datetime.fromtimestamp(event.timestamp, UTC),
        )


def _listed(obj: DataObject | None) -> list[DataObject]:
    return [obj] if obj is not None else []


def _unique(ids: list[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def change_marker(instance: dg.DagsterInstance) -> object:
    """Something that changes whenever the event log (and so the catalog) may have changed,
    and is cheap to read. SQLite: the index database's files, by stat (asking SQLite opens
    a new connection each time, milliseconds); elsewhere: the highest event id."""
    storage = instance.event_log_storage
    if isinstance(storage, SqliteEventLogStorage):
        index = Path(storage.path_for_shard("index"))
        return tuple(_stat(path) for path in (index, index.with_name(index.name + "-wal")))
    return storage.get_maximum_record_id()


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_mtime_ns, stat.st_size


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
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(DATASET_ASSET_KEY, asset_partitions=[name]), limit=1
    ).records
    return Manifest.from_event(records[0].event_log_entry) if records else None


HISTORY_PAGE = 1000


def manifest_history(
    instance: dg.DagsterInstance, name: str, limit: int | None = None
) -> list[Manifest]:
    """The versions of `name`, newest first: all of them, or the newest `limit`."""
    manifests: list[Manifest] = []
    cursor = None
    while limit is None or len(manifests) < limit:
        page = instance.fetch_materializations(
            dg.AssetRecordsFilter(DATASET_ASSET_KEY, asset_partitions=[name]),
            limit=min(HISTORY_PAGE, limit - len(manifests)) if limit else HISTORY_PAGE,
            cursor=cursor,
        )
        manifests += [Manifest.from_event(r.event_log_entry) for r in page.records]
        if not page.has_more:
            break
        cursor = page.cursor
    return manifests
