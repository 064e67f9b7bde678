"""How a run builds the next version of a dataset: pure work on the store and DuckDB, no
Dagster (`lakehouse.versions.commit` checks and commits it).

Each way of making a version starts from the latest manifest and returns the next one
(`Built`), with the objects it lists already written under keys no other run uses:

- `apply`: the pending ingests, in log order, within the batch budget. Each file is
  converted on its own (local Parquet), so one that fails (too many bad rows, wrong
  columns) fails alone; the rest become one new object. A replace starts the content over.
- `compact`: the same rows in as few files as the target size allows.
- `rebuild`: every ingest the version contains, converted again.
- `recommit`: the same objects as a new version (the UI's Materialize with nothing pending).

Statistics merge what the new object adds into the previous ones, so the cost of a version
follows the new data, not the dataset's size; when small objects pile up past the limit,
they are merged into one as part of the same version.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import duckdb

from lakehouse.formats.csv.accounting import LineAccount
from lakehouse.formats.csv.convert import ConversionError, Converted, csv_to_parquet, write_rejects
from lakehouse.formats.csv.schema import CsvSchema, infer_schema
from lakehouse.formats.csv.widen import widen
from lakehouse.ingest.landing import SAMPLE_BYTES
from lakehouse.ingest.log import read_entry
from lakehouse.ingest.marks import applied_with
from lakehouse.ingest.prune import log_floor
from lakehouse.ingest.records import IngestRecord
from lakehouse.manifest import Manifest
from lakehouse.store import ObjectStore
from lakehouse.store.layout import dataset_prefix, object_key, rejects_key
from lakehouse.versions import outcomes
from lakehouse.versions.commits import Outcome
from lakehouse.versions.objects import ObjectWriter, WriteError, merge_stats

log = logging.getLogger(__name__)

# A batch logs its progress at most this often: every log line of a run is an event
# Dagster stores, and a line per file made a batch of small files cost twice as much.
PROGRESS_SECONDS = 5.0


@dataclass(frozen=True)
class BatchLimits:
    """What one version may take in: the share of bad rows a file may have, and when its
    small objects are merged."""

    max_reject_share: float
    compaction_max_objects: int
    compaction_target_mb: int
    sample_rows: int


@dataclass
class Built:
    """The next version, its objects written, not yet committed."""

    manifest: Manifest
    outcomes: list[Outcome] = field(default_factory=list)
    written: list[str] = field(default_factory=list)  # keys to delete if it is not committed
    applied: list[IngestRecord] = field(default_factory=list)  # entries whose rows it holds
    allow_empty: bool = False  # every source was header-only: zero rows is right
    # Where the lines of each file it applied went (ingest id -> account).
    accounts: dict[str, LineAccount] = field(default_factory=dict)


@dataclass
class _Converted:
    record: IngestRecord
    data: Path
    rejects: Path | None
    result: Converted
    schema: CsvSchema  # as it was read (columns widened past the sample, if they were)


class Writer:
    """Builds versions of one dataset; `scratch` holds the run's local Parquet files."""

    def __init__(
        self,
        store: ObjectStore,
        con: duckdb.DuckDBPyConnection,
        dataset: str,
        run_id: str,
        limits: BatchLimits,
        scratch: Path,
        log_line: Callable[[str], None] = log.info,
    ) -> None:
        self.store, self.con, self.name = store, con, dataset
        self.run_id, self.limits, self.scratch = run_id, limits, scratch
        self.log = log_line
        self.objects = ObjectWriter(
            store, con, dataset, run_id, limits.compaction_target_mb, log_line
        )

    # -- apply ----------------------------------------------------------------------------

    def apply(self, base: Manifest, entries: Sequence[IngestRecord]) -> Built:
        """The pending `entries` (log order) on top of `base`, as the next version."""
        state = _Batch(base)
        logged = time.monotonic()
        for done, entry in enumerate(entries, 1):
            outcome = self._decide(state, entry)
            state.outcomes.append(outcome)
            if outcome.status != "applied":
                state.excluded.append(entry.seq)
            if time.monotonic() - logged >= PROGRESS_SECONDS or done == len(entries):
                logged = time.monotonic()
                progress = state.progress()
                self.log(f"{self.name}: {done} of {len(entries)} ingests decided ({progress})")
        return self._finish_apply(base, state, entries[-1].seq)

    def _decide(self, state: _Batch, entry: IngestRecord) -> Outcome:
        if entry.dataset != self.name:
            return outcomes.failed(
                entry, f"ingest {entry.ingest_id} is for dataset {entry.dataset!r}"
            )
        schema = state.reading(entry)
        if schema is None:
            return outcomes.failed(
                entry,
                f"its columns are not those of {self.name!r}, which changed after the upload "
                "was checked (a replace, or another first upload): send it again with the "
                "dataset's columns, or with mode=replace",
            )
        if entry.mode == "append" and (earlier := state.holder_of(self.store, entry)):
            return Outcome(
                ingest_id=entry.ingest_id, seq=entry.seq, status="duplicate", duplicate_of=earlier
            )
        defines = entry.mode == "replace" or not state.fingerprint
        converted = self._convert(entry, schema, widen_misfits=defines)
        if isinstance(converted, Outcome):
            return converted
        if entry.mode == "replace":
            state.start_over(entry, converted.schema)
        elif not state.fingerprint:
            state.adopt(entry, converted.schema)
        state.converted.append(converted)
        state.shas[entry.sha256] = entry.ingest_id
        return Outcome(ingest_id=entry.ingest_id, seq=entry.seq, status="applied")

    def _convert(
        self, entry: IngestRecord, schema: CsvSchema, *, widen_misfits: bool = False
    ) -> _Converted | Outcome:
        """One landed file as local Parquet, or the reason it cannot be applied. A file
        that defines the dataset's columns (`widen_misfits`) has the columns whose values
        stop fitting past the sample widened, and is converted again."""
        source = self.store.url(entry.landing_key)
        data = self.scratch / f"{entry.seq}.parquet"
        try:
            result = self._read(source, data, schema, entry)
            if widen_misfits and result.misfits:
                wider = self._widened(source, schema, result)
                if wider != schema:
                    schema = wider
                    result = self._read(source, data, schema, entry)
        except ConversionError as exc:
            if exc.retryable and self.store.exists(entry.landing_key):
                raise  # the store or the machine, not the file: the step retries
            if exc.retryable:
                return outcomes.failed(
                    entry, "its uploaded file is gone from the landing area: send it again"
                )
            return outcomes.failed(entry, f"the file could not be read: {exc}")
        if not result.account.balanced:
            return outcomes.lines_unaccounted(entry, result.account)
        if result.rejected_share > self.limits.max_reject_share:
            return outcomes.too_many_rejects(entry, result, self.limits.max_reject_share, schema)
        rejects = None
        if result.rejected:
            rejects = self.scratch / f"{entry.seq}.rejects.parquet"
            write_rejects(self.con, str(rejects))
        return _Converted(entry, data, rejects, result, schema)

    def _widened(self, source: str, schema: CsvSchema, result: Converted) -> CsvSchema:
        """`schema` with the columns whose values stop fitting past the sample widened to a
        type that holds them all: always to a wider number or a TIMESTAMP (nothing is lost),
        to VARCHAR only if the rows would otherwise be too many rejects (a column that
        changed its nature; a few odd values are rejected rows instead)."""
        wider = widen(self.con, source, schema, list(result.misfits), schema.sampled_through)
        too_many = result.rejected_share > self.limits.max_reject_share
        columns = tuple(
            new if new.type != "VARCHAR" or too_many else old
            for old, new in zip(schema.columns, wider.columns, strict=True)
        )
        if changed := [n.name for o, n in zip(schema.columns, columns, strict=True) if o != n]:
            self.log(f"{self.name}: widened {', '.join(changed)} past the sampled rows")
        return replace(schema, columns=columns)

    def _read(self, source: str, data: Path, schema: CsvSchema, entry: IngestRecord) -> Converted:
        self.con.execute("DROP TABLE IF EXISTS reject_errors")
        self.con.execute("DROP TABLE IF EXISTS reject_scans")
        return csv_to_parquet(
            self.con,
            source,
            str(data),
            schema,
            lines=entry.lines,
            read_bytes=lambda: self.store.stream(entry.landing_key),
        )

    def _finish_apply(self, base: Manifest, state: _Batch, through: int) -> Built:
        built = Built(manifest=base)
        version = base.version + 1
        objects = [] if state.replaced else list(base.objects)
        rejects = [] if state.replaced else list(base.rejects)
        stats = [] if state.replaced else list(base.stats)
        if state.converted:
            key = object_key(self.name, version, self.run_id)
            files = [c.data for c in state.converted]
            # The statistics read the local files while the object goes up.
            with ThreadPoolExecutor(1) as upload:
                writing = upload.submit(self.objects.write, files, key, built.written)
                added = self.objects.stats(files, state.columns)
                objects.append(writing.result())
            stats = merge_stats(stats, added)
            reject_files = [c.rejects for c in state.converted if c.rejects is not None]
            if reject_files:
                rejects_at = rejects_key(self.name, version, self.run_id)
                rejects.append(self.objects.write(reject_files, rejects_at, built.written))
        if len(objects) > self.limits.compaction_max_objects:
            objects = self.objects.merge_small(objects, version, built.written)
        pruned_through = max(base.pruned_through, log_floor(self.store, self.name))
        manifest = base.next_version(
            location=self.store.url(dataset_prefix(self.name)),
            objects=objects,
            rejects=rejects,
            stats=stats,
            columns=state.columns,
            schema_fingerprint=state.fingerprint,
            dialect=state.dialect,
            base_seq=state.base_seq,
            applied_through=through,
            excluded_seqs=[
                s
                for s in [*state.kept_excluded, *state.excluded]
                if s >= state.base_seq and s > pruned_through
            ],
            pruned_through=pruned_through,
            added_ingest_ids=[o.ingest_id for o in state.outcomes if o.status == "applied"],
            operation="apply",
        )
        built.manifest = manifest
        built.outcomes = state.outcomes
        built.applied = [c.record for c in state.converted]
        built.accounts = {c.record.ingest_id: c.result.account for c in state.converted}
        built.allow_empty = manifest.row_count == 0 and all(
            c.result.rows == 0 and c.result.rejected == 0 for c in state.converted
        )
        return built

    # -- compact, rebuild, recommit -------------------------------------------------------

    def compact(self, base: Manifest, target_mb: int, sort_by: list[str]) -> Built:
        """The same rows in as few files as `target_mb` allows, sorted if asked."""
        known = {c.name for c in base.columns}
        if unknown := [c for c in sort_by if c not in known]:
            raise WriteError(f"cannot sort by {unknown}: not columns of {self.name!r}")
        built = Built(manifest=base)
        version = base.version + 1
        objects = self.objects.rewrite(base.objects, version, target_mb, sort_by, built.written)
        built.manifest = base.next_version(
            objects=objects, operation="compact", added_ingest_ids=[]
        )
        built.allow_empty = base.row_count == 0
        return built

    def rebuild(self, base: Manifest) -> Built:
        """Every ingest the version contains, converted again with today's inference."""
        seqs = range(max(base.base_seq, 1), base.applied_through + 1)
        entries = [read_entry(self.store, self.name, s) for s in seqs if base.contains(s)]
        state = _Batch(base.model_copy(update={"objects": [], "rejects": [], "stats": []}))
        state.replaced = True
        schema: CsvSchema | None = None
        for entry in entries:
            schema = self._reinfer(entry, schema)
            converted = self._convert(entry, schema, widen_misfits=entry is entries[0])
            if isinstance(converted, Outcome):
                raise WriteError(
                    f"rebuild of {self.name!r} stopped at ingest {entry.ingest_id}: "
                    f"{converted.error.message if converted.error else 'failed'}; nothing changed"
                )
            state.converted.append(converted)
            schema = converted.schema
        if schema is not None:
            state.columns, state.fingerprint = list(schema.columns), schema.fingerprint
            state.dialect = schema.described()
        state.base_seq = base.base_seq
        state.kept_excluded = list(base.excluded_seqs)
        built = self._finish_apply(base, state, base.applied_through)
        built.manifest = built.manifest.model_copy(
            update={"operation": "rebuild", "added_ingest_ids": []}
        )
        built.outcomes = []
        return built

    def recommit(self, base: Manifest) -> Built:
        """The current state again, as the next version."""
        manifest = base.next_version(operation="recommit", added_ingest_ids=[])
        return Built(manifest=manifest, allow_empty=base.row_count == 0)

    # -- objects --------------------------------------------------------------------------

    def _reinfer(self, entry: IngestRecord, previous: CsvSchema | None) -> CsvSchema:
        sample = self.store.client.get_object(
            Bucket=self.store.bucket, Key=entry.landing_key, Range=f"bytes=0-{SAMPLE_BYTES - 1}"
        )["Body"].read()
        return infer_schema(
            sample,
            complete=len(sample) == entry.bytes,
            max_rows=self.limits.sample_rows,
            contract=previous.columns if previous else None,
        )


class _Batch:
    """The state an apply builds up, entry by entry."""

    def __init__(self, base: Manifest) -> None:
        self.base = base
        self.columns = list(base.columns)
        self.fingerprint = base.schema_fingerprint
        self.dialect = dict(base.dialect)
        self.base_seq = base.base_seq
        self.kept_excluded = list(base.excluded_seqs)
        self.replaced = False
        self.converted: list[_Converted] = []
        self.outcomes: list[Outcome] = []
        self.excluded: list[int] = []
        self.shas: dict[str, str] = {}  # bytes applied in this batch -> their ingest
        # The fingerprint the adopted entry was uploaded with, before any widening.
        self.uploaded_as = ""

    def start_over(self, entry: IngestRecord, schema: CsvSchema) -> None:
        """A replace: the content so far (earlier in this batch too) is left behind."""
        self.replaced = True
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
        """How to read `entry`: as it was uploaded, or, an append checked against columns
        this batch widened since, with those columns (they hold every value the narrower
        ones did); None if its columns are another dataset's."""
        schema = entry.csv_schema
        if (
            entry.mode == "replace"
            or not self.fingerprint
            or schema.fingerprint == self.fingerprint
        ):
            return schema
        if schema.fingerprint == self.uploaded_as:
            return replace(schema, columns=tuple(self.columns))
        return None

    def progress(self) -> str:
        """The batch so far, for progress lines."""
        rows = sum(c.result.rows for c in self.converted)
        rejected = sum(c.result.rejected for c in self.converted)
        return f"{rows} rows to add, {rejected} rejected"

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


def scratch_dir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="lakehouse-run-")
