"""Retention of what settled ingests leave in the store: receipts, landing files, log
entries and duplicate marks (`lakehouse.publish.pruning` runs it, then prunes the
commit records and Dagster's runs).

An ingest is settled once a version decided it (applied, failed or duplicate). The log is
pruned from its start, in seq order, and only through the ingests decided by the version
that was current at the horizon, so:

- an entry goes after its receipt and landing file: a pass that dies in between finds the
  same entries again next time, and nothing points at an entry that is gone;
- the log's first entry is its floor (`log_floor`): everything below it is pruned, and a
  version built afterwards forgets the failed and duplicate seqs below it
  (`Manifest.pruned_through`), so `excluded_seqs` stays as short as the retention;
- the log's last entry is never pruned: a new ingest takes the seq after it (`commit`
  lists from a manifest's `applied_through`, which may be stale), so no seq is reused.

Duplicate marks written before the horizon go too: a file sent again after its marks were
pruned is applied again. Duplicate detection reaches back as far as the retention, as
Snowpipe's load history reaches back 14 days.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from lakehouse.ingest.records import IngestRecord
from lakehouse.names import validate_name
from lakehouse.store import ObjectStore
from lakehouse.store.layout import (
    APPLIED,
    QUEUED,
    log_prefix,
    receipt_key,
    seq_of_log_key,
)
from lakehouse.store.parallel import each

BATCH = 1000  # log entries read and pruned at a time


@dataclass
class PrunedIngests:
    ingests: int = 0  # each a log entry, its receipt and its landing file
    marks: int = 0


def prune_settled(
    store: ObjectStore, dataset: str, settled_through: int, before: datetime
) -> PrunedIngests:
    """Prune `dataset`'s log from its start: the entries up to `settled_through` written
    before `before`, with their receipts and landing files; and the duplicate marks
    written before `before`."""
    pruned = PrunedIngests()
    batch: list[str] = []
    for key in _prunable(store, dataset, settled_through, before):
        batch.append(key)
        if len(batch) == BATCH:
            _prune_entries(store, dataset, batch, pruned)
            batch = []
    if batch:
        _prune_entries(store, dataset, batch, pruned)
    pruned.marks = prune_marks(store, dataset, before)
    return pruned


def _prunable(
    store: ObjectStore, dataset: str, settled_through: int, before: datetime
) -> Iterator[str]:
    """The log's first keys that may go, in order: settled, old, and not the last."""
    held: str | None = None  # a key is given out only once another follows it
    for key, modified in store.list_objects(log_prefix(dataset)):
        if held is not None:
            yield held
            held = None
        if seq_of_log_key(key) > settled_through or modified >= before:
            return
        held = key


def _prune_entries(
    store: ObjectStore, dataset: str, keys: list[str], pruned: PrunedIngests
) -> None:
    """Receipts and landing files first, then the entries that named them."""
    entries = each(lambda key: IngestRecord.model_validate(store.get_json(key)), keys)
    forget_sources(store, entries)
    drop_entries(store, keys)
    pruned.ingests += len(keys)


def forget_sources(store: ObjectStore, entries: list[IngestRecord]) -> None:
    """Delete the receipts and landing files of settled ingests."""
    store.delete([receipt_key(e.ingest_id) for e in entries] + [e.landing_key for e in entries])


def drop_entries(store: ObjectStore, keys: list[str]) -> None:
    """Delete log entries whose receipts and landing files are gone."""
    store.delete(keys)


def prune_marks(store: ObjectStore, dataset: str, before: datetime) -> int:
    """Delete the duplicate marks (`queued/`, `applied/`) of `dataset` written before
    `before`: hints, each checked against a manifest before it is believed."""
    old = [
        key
        for folder in (QUEUED, APPLIED)
        for key, modified in store.list_objects(f"{folder}{validate_name(dataset)}/")
        if modified < before
    ]
    store.delete(old)
    return len(old)


def log_floor(store: ObjectStore, dataset: str) -> int:
    """The last seq retention has pruned: the log's first entry, less one (0 if none
    was)."""
    first = store.first_key(log_prefix(dataset))
    return seq_of_log_key(first) - 1 if first else 0
