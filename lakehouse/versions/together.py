"""A burst of small files read together (`lakehouse.versions.writer`'s apply): a run of plain
CSV appends of the dataset's columns (`runs_of_appends`), all read alike, is decided in log
order (duplicates) and read in one DuckDB read into one local file, instead of a read, a
local file and a handful of statements each. A new dataset's first file is read alone (it
defines the columns), and so is every other entry (a replace, a merge, an `evolve=`); a
run whose lines do not all become rows is decided one file at a time, which says which
lines and why."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from itertools import groupby

from lakehouse.formats.csv.convert import stored_rows_sql
from lakehouse.formats.csv.schema import CsvSchema
from lakehouse.ingest.records import IngestRecord
from lakehouse.store import ObjectStore
from lakehouse.versions.batch import Batch
from lakehouse.versions.commits import Outcome
from lakehouse.versions.reading import FileReader


def read_together(
    state: Batch,
    entries: Sequence[IngestRecord],
    store: ObjectStore,
    reader: FileReader,
    log: Callable[[str], None],
) -> bool:
    """Decide and read `entries` together into `state`; False, with `state` as it was,
    when they cannot be (then each is decided and read on its own)."""
    schema = one_reading(state, entries)
    if schema is None:
        return False
    saved = dict(state.shas)
    decided: list[Outcome] = []
    fresh: list[IngestRecord] = []
    for entry in entries:
        if earlier := state.holder_of(store, entry):
            decided.append(
                Outcome(
                    ingest_id=entry.ingest_id,
                    seq=entry.seq,
                    status="duplicate",
                    duplicate_of=earlier,
                )
            )
            continue
        state.shas[entry.sha256] = entry.ingest_id
        fresh.append(entry)
        decided.append(Outcome(ingest_id=entry.ingest_id, seq=entry.seq, status="applied"))
    converted = reader.convert_together(fresh, schema) if len(fresh) > 1 else None
    if converted is None:
        state.shas = saved
        if len(fresh) > 1:  # said, so that a slower run is not a mystery
            log(
                f"{reader.name}: {len(fresh)} files read one at a time: a line of one is no "
                "row, or the read together failed"
            )
        return False
    state.converted.extend(converted)
    state.outcomes.extend(decided)
    state.excluded.extend(o.seq for o in decided if o.status != "applied")
    log(
        f"{reader.name}: {len(state.outcomes)} ingests decided, the last {len(fresh)} read "
        f"together ({state.progress()})"
    )
    return True


def one_reading(state: Batch, entries: Sequence[IngestRecord]) -> CsvSchema | None:
    """The one way to read every entry, if they are all plain CSV appends (counted lines,
    no `evolve=`) of the columns the dataset has, read alike; else None."""
    if len(entries) < 2 or not state.fingerprint:
        return None
    reads: set[str] = set()
    schema: CsvSchema | None = None
    for entry in entries:
        if not plain_append(entry, state.base.name):
            return None
        schema = state.reading(entry)
        if schema is None or schema.fingerprint != state.fingerprint:
            return None
        reads.add(stored_rows_sql("", schema))  # how it is read, not what its sample said
    return schema if len(reads) == 1 else None


def plain_append(entry: IngestRecord, dataset: str) -> bool:
    """A CSV appended to `dataset` as it is (no `evolve=`), its lines counted."""
    plain = (entry.dataset, entry.mode, entry.format, entry.evolve)
    return plain == (dataset, "append", "csv", "strict") and entry.lines is not None


def runs_of_appends(
    entries: Sequence[IngestRecord], dataset: str
) -> Iterator[Sequence[IngestRecord]]:
    """`entries` in log order, in groups: each run of plain appends together, every other
    entry alone."""
    for plain, group in groupby(entries, key=lambda entry: plain_append(entry, dataset)):
        if plain:
            yield list(group)
        else:
            yield from ([entry] for entry in group)
