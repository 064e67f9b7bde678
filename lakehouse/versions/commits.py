"""Commit records: the compare-and-set that makes every version number unique.

Before a run emits version v of a dataset it creates `commits/<dataset>/<v>.json` with a
conditional write. Of two runs that read the same version v-1 and both built a v, exactly
one creates it; the other lost the race, throws its work away and builds again on top of
the winner. Version numbers are therefore unique and consecutive, whoever launched the run
(sensor, API push, schedule, backfill, the UI's Materialize button).

The record holds the version's manifest and what became of each ingest the version
decided. A run that dies after creating its record but before emitting the version leaves
a record ahead of the catalog; the next run of the dataset publishes it first (see
`unpublished`), so what was decided is never decided again.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from lakehouse.manifest import Manifest
from lakehouse.store import ObjectStore
from lakehouse.store.layout import commit_key, commits_prefix, version_of_commit_key


class IngestError(BaseModel):
    message: str
    rejected_rows: int | None = None
    total_rows: int | None = None
    samples: list[dict[str, Any]] = []


class RowChanges(BaseModel):
    """What a merge or delete did to the rows that were there: stored rows whose key it
    sent again (`updated`), new keys (`inserted`), rows its deletes removed (`deleted`)."""

    inserted: int = 0
    updated: int = 0
    deleted: int = 0


class Outcome(BaseModel):
    """What a version decided about one ingest."""

    ingest_id: str
    seq: int
    status: Literal["applied", "failed", "duplicate"]
    error: IngestError | None = None
    duplicate_of: str | None = None  # the ingest whose rows these bytes already are
    changes: RowChanges | None = None  # a merge's or delete's counts


class CommitRecord(BaseModel):
    version: int
    run_id: str
    manifest: Manifest
    outcomes: list[Outcome] = []

    def outcome(self, seq: int) -> Outcome | None:
        return next((o for o in self.outcomes if o.seq == seq), None)

    @property
    def decided(self) -> list[tuple[str, int]]:
        """(ingest id, seq) of every ingest this version decided."""
        return [(o.ingest_id, o.seq) for o in self.outcomes]


def claim(store: ObjectStore, record: CommitRecord) -> bool:
    """Create the version's record; False if another run already committed that version.

    A write whose answer was lost and whose retry found the key taken finds its own
    record there (same run), and so counts as committed. A version whose record retention
    has pruned (`prune_records`) is long taken: records are pruned from the first one, so
    a first record past it says so.
    """
    name = record.manifest.name
    first = store.first_key(commits_prefix(name))
    if first is not None and version_of_commit_key(first) > record.version:
        return False
    key = commit_key(name, record.version)
    if store.put_json_if_absent(key, record.model_dump(mode="json")):
        return True
    holder = store.get_json_or_none(key)
    return holder is not None and holder["run_id"] == record.run_id


def prune_records(store: ObjectStore, dataset: str, pruned_through: int, current: int) -> int:
    """Delete the records of the versions before the one that decided ingest
    `pruned_through + 1`: each decided only ingests retention has pruned, whose receipts
    are gone, so nothing reads them. Never the current version's (a run claims the next
    version after it). Returns how many went."""
    needed = deciding_commit(store, dataset, pruned_through + 1, current)
    keep_from = min(needed.version if needed else current, current)
    old = []
    for key in store.list_keys(commits_prefix(dataset)):
        if version_of_commit_key(key) >= keep_from:
            break
        old.append(key)
    store.delete(old)
    return len(old)


def read_commit(store: ObjectStore, dataset: str, version: int) -> CommitRecord | None:
    found = store.get_json_or_none(commit_key(dataset, version))
    return CommitRecord.model_validate(found) if found else None


def unpublished(store: ObjectStore, dataset: str, published: int) -> CommitRecord | None:
    """A record past the catalog's latest version `published`: its run died between the
    commit and emitting the version (or is emitting it right now)."""
    last = store.last_key(commits_prefix(dataset), commit_key(dataset, published))
    if last is None:
        return None
    return CommitRecord.model_validate(store.get_json(last))


def deciding_commit(store: ObjectStore, dataset: str, seq: int, latest: int) -> CommitRecord | None:
    """The record of the first version whose `applied_through` reaches `seq`: the one
    that decided that ingest. Versions only ever move `applied_through` forward, so a
    binary search reads about log2(versions) records."""
    low, high = 1, latest
    found: CommitRecord | None = None
    while low <= high:
        middle = (low + high) // 2
        record = read_commit(store, dataset, middle)
        if record is None:  # versions made before commit records existed
            low = middle + 1
        elif record.manifest.applied_through >= seq:
            found, high = record, middle - 1
        else:
            low = middle + 1
    return found
