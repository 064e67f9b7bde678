"""The state one apply builds up, entry by entry (`lakehouse.versions.writer`): the rows to
add (each file converted to local Parquet), the objects kept from the version it builds on,
and what was decided about each entry."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from lakehouse.formats.csv.convert import Converted
from lakehouse.formats.csv.schema import CsvSchema, fingerprint
from lakehouse.formats.csv.types import Column
from lakehouse.formats.evolution import evolved
from lakehouse.ingest.marks import applied_with
from lakehouse.ingest.records import DELETED, IngestRecord
from lakehouse.manifest import ColumnStats, DataObject, Manifest
from lakehouse.store import ObjectStore
from lakehouse.versions.commits import Outcome


@dataclass(frozen=True)
class BatchLimits:
    """What one version may take in: the share of bad rows a file may have, and when its
    small objects are merged."""

    max_reject_share: float
    compaction_max_objects: int
    compaction_target_mb: int
    sample_rows: int


@dataclass(frozen=True)
class Carried:
    """The rows a merge kept of an object it left out (a local file), and the fingerprint
    of the columns they were written with."""

    path: Path
    written_as: str


@dataclass
class ConvertedFile:
    """One landed file, converted to local Parquet (`data`; None once it adds no rows: a
    delete's keys; or when its rows are in an earlier entry's file, read together)."""

    record: IngestRecord
    data: Path | None
    rejects: Path | None
    result: Converted
    schema: CsvSchema  # as it was read (columns widened past the sample, if they were)


class Batch:
    """The state an apply builds up, entry by entry."""

    def __init__(self, base: Manifest) -> None:
        self.base = base
        self.columns = list(base.columns)
        self.fingerprint = base.schema_fingerprint
        self.dialect = dict(base.dialect)
        self.base_seq = base.base_seq
        self.kept_excluded = list(base.excluded_seqs)
        self.key = list(base.key)
        self.objects: list[DataObject] = list(base.objects)  # kept from the base version
        self.removed: list[ColumnStats] = []  # statistics of rows merges took out of them
        self.carried: list[Carried] = []  # the rows of rewritten objects that stay
        self.changed_rows = False  # a merge or delete took rows out
        self.replaced = False
        self.converted: list[ConvertedFile] = []
        self.outcomes: list[Outcome] = []
        self.excluded: list[int] = []
        self.shas: dict[str, str] = {}  # bytes applied in this batch -> their ingest
        # The fingerprint the adopted entry was uploaded with, before any widening.
        self.uploaded_as = ""

    def start_over(self, entry: IngestRecord, schema: CsvSchema) -> None:
        """A replace: the content so far (earlier in this batch too) is left behind."""
        self.replaced = True
        self.objects, self.removed, self.carried = [], [], []
        self.converted = []
        self.shas = {}
        self.kept_excluded = []
        self.excluded = []
        self.adopt(entry, schema)

    def adopt(self, entry: IngestRecord, schema: CsvSchema) -> None:
        """`entry`, read as `schema`, defines the columns from here on."""
        self.columns = list(schema.columns)
        self.fingerprint = schema.fingerprint
        self.dialect = schema.described()
        self.uploaded_as = entry.csv_schema.fingerprint
        self.base_seq = entry.seq

    def reading(self, entry: IngestRecord) -> CsvSchema | None:
        """How to read `entry`: as it was uploaded (a merge has the columns and perhaps
        `_deleted`, a delete some of them, an evolving append what its `evolve=` allows),
        or, an append checked against columns this batch widened since, with those columns
        (they hold every value the narrower ones did); None if its columns are another
        dataset's."""
        schema = entry.csv_schema
        if entry.mode == "append" and entry.evolve != "strict" and self.fingerprint:
            return schema if evolved(self.columns, schema.columns, entry.evolve) else None
        if entry.mode == "merge" and (not self.fingerprint or self._merges_into(schema)):
            return schema
        if entry.mode == "delete":
            return schema if self.fingerprint and self._names_keys_of(schema) else None
        if (
            entry.mode == "replace"
            or not self.fingerprint
            or schema.fingerprint == self.fingerprint
        ):
            return schema
        if schema.fingerprint == self.uploaded_as:
            return replace(schema, columns=tuple(self.columns))
        return None

    def _merges_into(self, schema: CsvSchema) -> bool:
        data = [(c.name, c.type) for c in schema.columns if c.name != DELETED]
        return fingerprint(data) == self.fingerprint

    def _names_keys_of(self, schema: CsvSchema) -> bool:
        types = {c.name: c.type for c in self.columns}
        return all(types.get(c.name) == c.type for c in schema.columns)

    def evolve_to(self, columns: list[Column]) -> None:
        """An append with `evolve=` changed the columns (added, or widened)."""
        self.columns = columns
        self.fingerprint = fingerprint([(c.name, c.type) for c in columns])

    def kept_objects(self, evolved: bool) -> list[DataObject]:
        """The base version's objects the new one keeps; if the columns changed, each marked
        with the columns it was written with."""
        if not evolved:
            return list(self.objects)
        return [
            o
            if o.schema_fingerprint
            else o.model_copy(update={"schema_fingerprint": self.base.schema_fingerprint})
            for o in self.objects
        ]

    def written_as_is(self) -> bool:
        """Whether the new rows are one local file with the version's columns exactly (it is
        uploaded as it is)."""
        data = [c for c in self.converted if c.data is not None]
        return len(data) == 1 and data[0].schema.fingerprint == self.fingerprint

    def files(self) -> list[Path]:
        """The local files of the rows the version adds (not those merges carried)."""
        return [c.data for c in self.converted if c.data is not None]

    def progress(self) -> str:
        """The batch so far, for progress lines."""
        rows = sum(c.result.rows for c in self.converted)
        rejected = sum(c.result.rejected for c in self.converted)
        return f"{rows} rows read, {rejected} rejected"

    def holder_of(self, store: ObjectStore, entry: IngestRecord) -> str | None:
        """The ingest whose rows these bytes already are, in this batch or the dataset."""
        if entry.sha256 in self.shas:
            return self.shas[entry.sha256]
        if self.replaced:
            return None
        applied = applied_with(store, entry.dataset, entry.sha256)
        if applied is not None and applied.seq != entry.seq and self.base.contains(applied.seq):
            return applied.ingest_id
        return None
