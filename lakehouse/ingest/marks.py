"""Marks beside the log, each a hint checked against the truth before it is believed:
`pending/<dataset>` (a run may have work), and the last ingest with given bytes that was
committed (`queued/`) or applied (`applied/`), for duplicate detection."""

from __future__ import annotations

from dataclasses import dataclass

from lakehouse.ingest.records import IngestRecord
from lakehouse.store import ObjectStore
from lakehouse.store.layout import (
    LOG,
    PENDING,
    applied_key,
    pending_key,
    queued_key,
)


def mark_pending(store: ObjectStore, dataset: str) -> None:
    """Tell the sensor that `dataset` may have pending ingests (a hint, never the truth)."""
    store.put_bytes(pending_key(dataset), b"")


def datasets_marked_pending(store: ObjectStore) -> list[str]:
    return [key.removeprefix(PENDING) for key in store.list_keys(PENDING)]


def datasets_with_log(store: ObjectStore) -> list[str]:
    """Every dataset that ever had an ingest committed (one short listing)."""
    return [prefix.removeprefix(LOG).rstrip("/") for prefix in store.list_prefixes(LOG)]


@dataclass(frozen=True)
class SameBytes:
    """An ingest of the same bytes to the same dataset."""

    ingest_id: str
    seq: int


def applied_with(store: ObjectStore, dataset: str, sha256: str) -> SameBytes | None:
    """The last ingest with these bytes that a run applied (maybe replaced since)."""
    found = store.get_json_or_none(applied_key(dataset, sha256))
    return SameBytes(**found) if found else None


def queued_with(store: ObjectStore, dataset: str, sha256: str) -> SameBytes | None:
    """The last ingest with these bytes that was committed (maybe decided since)."""
    found = store.get_json_or_none(queued_key(dataset, sha256))
    return SameBytes(**found) if found else None


def record_applied(store: ObjectStore, record: IngestRecord) -> None:
    """Written by the run that applies `record`, before it commits the version: if that
    commit never happens the entry is still pending and is applied again, so a mark that
    runs ahead of the catalog is harmless (it is always checked against a manifest)."""
    store.put_json(
        applied_key(record.dataset, record.sha256),
        {"ingest_id": record.ingest_id, "seq": record.seq},
    )
