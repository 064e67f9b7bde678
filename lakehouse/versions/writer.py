"""How a run builds the next version of a dataset: pure work on the store and DuckDB, no
Dagster (`lakehouse.versions.commit` checks and commits it).

Each way of making a version starts from the latest manifest and returns the next one
(`Built`), with the objects it lists already written under keys no other run uses:

- `apply`: the pending ingests, in log order, within the batch budget. Each file is
  converted on its own (local Parquet, `lakehouse.versions.reading`), so one that fails
  (too many bad rows, wrong columns) fails alone; the rest become one new object. A
  replace starts the content over; a merge or delete changes the rows with its keys
  (`lakehouse.versions.merge`).
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
from lakehouse.formats.csv.schema import CsvSchema
from lakehouse.formats.evolution import evolved
from lakehouse.ingest.log import read_entry
from lakehouse.ingest.prune import log_floor
from lakehouse.ingest.records import DELETED, KEYED_MODES, IngestRecord
from lakehouse.manifest import Manifest
from lakehouse.store import ObjectStore
from lakehouse.store.layout import dataset_prefix, object_key, rejects_key
from lakehouse.versions import outcomes
from lakehouse.versions.batch import Batch, BatchLimits
from lakehouse.versions.commits import Outcome
from lakehouse.versions.merge import ChangeRefused, Merger
from lakehouse.versions.objects import ObjectWriter, WriteError, merge_stats, without_rows
from lakehouse.versions.reading import FileReader
from lakehouse.versions.together import read_together, runs_of_appends

log = logging.getLogger(__name__)

# A batch logs its progress at most this often: every log line of a run is an event
# Dagster stores, and a line per file made a batch of small files cost twice as much.
PROGRESS_SECONDS = 5.0


@dataclass
class Built:
    """The next version, its objects written, not yet committed."""

    manifest: Manifest
    outcomes: list[Outcome] = field(default_factory=list)
    written: list[str] = field(default_factory=list)  # keys to delete if it is not committed
    applied: list[IngestRecord] = field(default_factory=list)  # entries whose rows it holds
    allow_empty: bool = False  # every source was header-only, or deletes: zero rows is right
    # Where the lines of each file it applied went (ingest id -> account).
    accounts: dict[str, LineAccount] = field(default_factory=dict)


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
        self._logged = 0.0  # when `apply` last said how far it got
        self.objects = ObjectWriter(
            store, con, dataset, run_id, limits.compaction_target_mb, log_line
        )
        self.reader = FileReader(store, con, dataset, limits, scratch, log_line)
        self.merger = Merger(store, con, self.objects, scratch, log_line)

    # -- apply ----------------------------------------------------------------------------

    def apply(self, base: Manifest, entries: Sequence[IngestRecord]) -> Built:
        """The pending `entries` (log order) on top of `base`, as the next version. Each
        run of plain appends is read together where it can be (`read_together`), but for
        the first file of a dataset without columns yet, which defines them; every other
        entry, and a run that cannot be read together, is decided one at a time."""
        state = Batch(base)
        self._logged = time.monotonic()
        for run in runs_of_appends(entries, self.name):
            if len(run) > 1 and not state.fingerprint:
                self._decide_each(state, run[:1], len(entries))
                run = run[1:]
            if not read_together(state, run, self.store, self.reader, self.log):
                self._decide_each(state, run, len(entries))
        return self._finish_apply(base, state, entries[-1].seq)

    def _decide_each(self, state: Batch, entries: Sequence[IngestRecord], total: int) -> None:
        """Decide `entries` one at a time, saying how far the run got (of `total`) now and
        then, and when it decided the last."""
        for entry in entries:
            outcome = self._decide(state, entry)
            state.outcomes.append(outcome)
            if outcome.status != "applied":
                state.excluded.append(entry.seq)
            decided = len(state.outcomes)
            if time.monotonic() - self._logged >= PROGRESS_SECONDS or decided == total:
                self._logged = time.monotonic()
                self.log(f"{self.name}: {decided} of {total} ingests decided ({state.progress()})")

    def _decide(self, state: Batch, entry: IngestRecord) -> Outcome:
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
        if entry.mode in KEYED_MODES:
            return self._change(state, entry, schema)
        defines = entry.mode == "replace" or not state.fingerprint
        converted = self.reader.convert(entry, schema, widen_misfits=defines)
        if isinstance(converted, Outcome):
            return converted
        if entry.mode == "replace":
            state.start_over(entry, converted.schema)
        elif not state.fingerprint:
            state.adopt(entry, converted.schema)
        elif converted.schema.fingerprint != state.fingerprint:  # evolve= (`state.reading`)
            columns = evolved(state.columns, converted.schema.columns, entry.evolve)
            assert columns is not None
            state.evolve_to(columns)
            self.log(f"{self.name}: columns now {[(c.name, c.type) for c in columns]}")
        state.converted.append(converted)
        state.shas[entry.sha256] = entry.ingest_id
        return Outcome(ingest_id=entry.ingest_id, seq=entry.seq, status="applied")

    def _change(self, state: Batch, entry: IngestRecord, schema: CsvSchema) -> Outcome:
        """A merge or delete: its file converted, then applied to the rows so far."""
        if state.key and entry.key != state.key:
            return outcomes.failed(
                entry, f"it matches rows by {entry.key}, and the dataset's key is {state.key}"
            )
        converted = self.reader.convert(entry, schema, widen_misfits=not state.fingerprint)
        if isinstance(converted, Outcome):
            return converted
        if not state.fingerprint:  # a first merge defines the columns, less `_deleted`
            data = tuple(c for c in converted.schema.columns if c.name != DELETED)
            state.adopt(entry, replace(converted.schema, columns=data))
        key = state.key
        state.key = list(entry.key)
        try:
            changes = self.merger.apply(state, converted)
        except ChangeRefused as exc:
            state.key = key
            return outcomes.failed(entry, str(exc))
        state.converted.append(converted)
        self.log(f"{self.name}: {entry.mode} {entry.ingest_id}: {changes}")
        return Outcome(ingest_id=entry.ingest_id, seq=entry.seq, status="applied", changes=changes)

    def _finish_apply(self, base: Manifest, state: Batch, through: int) -> Built:
        built = Built(manifest=base)
        version = base.version + 1
        self.objects.range_column = state.key[0] if state.key else None
        evolved = state.fingerprint != base.schema_fingerprint
        objects = state.kept_objects(evolved)
        rejects = [] if state.replaced else list(base.rejects)
        stats = [] if state.replaced else without_rows(base.stats, state.removed)
        if files := state.files():
            key = object_key(self.name, version, self.run_id)
            conform = None if state.written_as_is() else state.columns
            # The statistics read the local files while the object goes up.
            with ThreadPoolExecutor(1) as upload:
                writing = upload.submit(self.objects.write, files, key, built.written, conform)
                added = self.objects.stats(files, state.columns)
                objects.append(writing.result())
            stats = merge_stats(stats, added)
            reject_files = [c.rejects for c in state.converted if c.rejects is not None]
            if reject_files:
                rejects_at = rejects_key(self.name, version, self.run_id)
                rejects.append(self.objects.write(reject_files, rejects_at, built.written))
        for part, carried in enumerate(state.carried, 1):
            at = object_key(self.name, version, self.run_id, part=f"-kept-{part}")
            conform = None if carried.written_as == state.fingerprint else state.columns
            objects.append(self.objects.write([carried.path], at, built.written, conform))
        if len(objects) > self.limits.compaction_max_objects:
            objects = self.objects.merge_small(objects, state.columns, version, built.written)
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
            key=state.key,
            schema_version=base.schema_version + evolved,
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
        built.allow_empty = manifest.row_count == 0 and (
            state.changed_rows
            or all(c.result.rows == 0 and c.result.rejected == 0 for c in state.converted)
        )
        return built

    # -- compact, rebuild, recommit -------------------------------------------------------

    def compact(self, base: Manifest, target_mb: int, sort_by: list[str]) -> Built:
        """The same rows in as few files as `target_mb` allows, sorted if asked (a keyed
        dataset by its key), with their statistics counted again."""
        known = {c.name for c in base.columns}
        if unknown := [c for c in sort_by if c not in known]:
            raise WriteError(f"cannot sort by {unknown}: not columns of {self.name!r}")
        # A keyed dataset is clustered by its key, so each object's key range stays narrow
        # and a merge reads few of them.
        sort_by = sort_by or base.key
        self.objects.range_column = base.key[0] if base.key else None
        built = Built(manifest=base)
        version = base.version + 1
        objects = self.objects.rewrite(
            base.objects, base.columns, version, target_mb, sort_by, built.written
        )
        # Counted again over the rows as they are: after merges and deletes, min and max
        # were bounds that could name values no longer there (an erased one too).
        stats = self.objects.stats([self.store.url(o.key) for o in objects], base.columns)
        built.manifest = base.next_version(
            objects=objects, operation="compact", added_ingest_ids=[], stats=stats
        )
        built.allow_empty = base.row_count == 0
        return built

    def rebuild(self, base: Manifest) -> Built:
        """Every ingest the version contains, converted again with today's inference."""
        if base.key:
            raise WriteError(
                f"cannot rebuild {self.name!r}: merges and deletes changed its rows, and a "
                "rebuild converts appended files only; nothing changed"
            )
        seqs = range(max(base.base_seq, 1), base.applied_through + 1)
        entries = [read_entry(self.store, self.name, s) for s in seqs if base.contains(s)]
        if any(e.evolve != "strict" for e in entries):
            raise WriteError(
                f"cannot rebuild {self.name!r}: appends with evolve= changed its columns, and "
                "a rebuild reads every file with the first one's; nothing changed"
            )
        state = Batch(base.model_copy(update={"objects": [], "rejects": [], "stats": []}))
        state.replaced = True
        schema: CsvSchema | None = None
        for entry in entries:
            schema = self.reader.reinfer(entry, schema)
            converted = self.reader.convert(entry, schema, widen_misfits=entry is entries[0])
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


def scratch_dir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="lakehouse-run-")
