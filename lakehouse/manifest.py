"""A version of a dataset, as its manifest says: its objects, columns, counts, and which
ingests it contains, without listing them all, so it stays small however many ingests a
dataset has had: the ingest log entries from `base_seq` (the first ingest, or the last
replace) through `applied_through`, less `excluded_seqs` (entries that failed or were
duplicates). Every entry up to `applied_through` has been decided.

Retention prunes the log from its start (`lakehouse.ingest.prune`): entries up to
`pruned_through` are gone with their receipts, and what became of them is forgotten here
too, so `excluded_seqs` holds only later ones.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, field_validator

from lakehouse.formats.csv.types import Column
from lakehouse.formats.structured import storable
from lakehouse.names import validate_name


class DataObject(BaseModel):
    """One Parquet object of a dataset."""

    key: str
    bytes: int
    rows: int
    # A keyed dataset's objects: the least and greatest value of the first key column (as
    # text, cast back to the column's type to compare), so a merge reads only the objects
    # that can hold its keys. None: not known yet (written before the dataset had a key).
    key_min: str | None = None
    key_max: str | None = None
    # An object written before the dataset's columns evolved: the fingerprint of the columns
    # it has (fewer, or narrower; readers conform it). None: the manifest's columns.
    schema_fingerprint: str | None = None


class ColumnStats(BaseModel):
    """Statistics that merge from what each new object adds, so a version never rescans
    the dataset (a distinct count would not merge, so there is none)."""

    column: str
    nulls: int = 0
    min: str | None = None
    max: str | None = None


class IcebergSnapshot(BaseModel):
    """Where other engines read a version: the Iceberg table, the snapshot that is this
    version, and the table metadata file written by that commit (`lakehouse.publish.iceberg`)."""

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

    @field_validator("name")
    @classmethod
    def _a_dataset_name(cls, name: str) -> str:
        return validate_name(name)

    @field_validator("columns")
    @classmethod
    def _known_types(cls, columns: list[Column]) -> list[Column]:
        """Column types reach SQL (a view's CAST) and Iceberg: only the types the project
        writes, in DuckDB's own spelling, pass (`formats.structured.storable`)."""
        for column in columns:
            if storable(column.type) != column.type:
                raise ValueError(f"column {column.name!r}: unknown type {column.type!r}")
        return columns

    row_count: int
    bytes: int
    # Rows that did not parse, kept with their line and reasons (the `<name>__rejects` view).
    rejects: list[DataObject] = []
    rejected_rows: int = 0
    base_seq: int = 0
    applied_through: int = 0
    excluded_seqs: list[int] = []
    pruned_through: int = 0  # log entries up to here were pruned by retention
    # The columns merges and deletes match rows by, set by the first of them (none: the
    # dataset only grows or is replaced).
    key: list[str] = []
    # 1 with the first columns, one more each time they change (a replace, an evolve=).
    schema_version: int = 0
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
        """Whether the ingest log entry `seq` is in this version's rows (False for a pruned
        one: once pruned, nothing asks)."""
        return (
            self.version > 0
            and max(self.base_seq, self.pruned_through + 1) <= seq <= self.applied_through
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
