"""The ingest log: an ingest's log entry is its commit point; entries are read in order,
within a budget; receipts say where an entry is, by ingest id.

Only the dataset asset moves an ingest past `pending`, and only by committing a version
(`lakehouse.versions.commits`), so "decided" and "in the catalog" are one and the same
step. The log is ordered by `seq`, which the conditional write hands out: nobody's clock
decides the order, and finding pending ingests lists only what follows the dataset's
`applied_through`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import islice

from lakehouse.errors import Gone, NotFound
from lakehouse.ingest.marks import mark_pending
from lakehouse.ingest.records import IngestRecord, Receipt, received_at_of
from lakehouse.store import ObjectStore, StoreUnavailable
from lakehouse.store.layout import (
    log_key,
    log_prefix,
    pending_key,
    queued_key,
    receipt_key,
    seq_of_log_key,
)
from lakehouse.store.parallel import each, together


def read_receipt_of(
    store: ObjectStore, ingest_id: str, visible: Callable[[str], bool] = lambda _: True
) -> Receipt:
    """The receipt of `ingest_id` (`NotFound` if there is none, or if its dataset is not
    `visible` to the caller: the same answer, so that an id tells nothing of a dataset)."""
    unknown = NotFound(f"no ingest {ingest_id!r}: use the ingest_id that POST /v1/ingest returned")
    try:
        receipt = Receipt.model_validate(store.get_json(receipt_key(ingest_id)))
    except NotFound as exc:
        raise unknown from exc
    if not visible(receipt.dataset):
        raise unknown
    return receipt


def record_decided(
    store: ObjectStore, dataset: str, version: int, decided: list[tuple[str, int]]
) -> None:
    """Write the receipts of the ingests (id, seq) that version `version` decided."""

    def write(ingest: tuple[str, int]) -> None:
        ingest_id, seq = ingest
        receipt = Receipt(ingest_id=ingest_id, dataset=dataset, seq=seq, version=version)
        store.put_json(receipt_key(ingest_id), receipt.model_dump())

    each(write, decided)


def read_entry(store: ObjectStore, dataset: str, seq: int) -> IngestRecord:
    return IngestRecord.model_validate(store.get_json(log_key(dataset, seq)))


def read_receipt(
    store: ObjectStore,
    ingest_id: str,
    visible: Callable[[str], bool] = lambda _: True,
    retention: timedelta | None = None,
) -> IngestRecord:
    """The committed ingest `ingest_id` (`NotFound` if there is none, or not `visible`;
    `Gone` if it is older than the `retention`, which prunes settled ingests)."""
    try:
        receipt = read_receipt_of(store, ingest_id, visible)
    except NotFound:
        if retention is not None and _older_than(ingest_id, retention):
            days = retention / timedelta(days=1)
            raise Gone(
                f"ingest {ingest_id} was received more than {days:g} days ago: retention "
                "prunes the receipt of a settled ingest (its rows, if it was applied, stay in "
                "the dataset), so how it was settled is no longer known; an ingest that was "
                "never committed answers the same",
                ingest_id=ingest_id,
                received_at=received_at_of(ingest_id).isoformat(),
                retention_days=days,
            ) from None
        raise
    try:
        return read_entry(store, receipt.dataset, receipt.seq)
    except NotFound:
        raise Gone(
            f"ingest {ingest_id} was settled by version {receipt.version} of dataset "
            f"{receipt.dataset!r}, and retention has pruned its log entry",
            ingest_id=ingest_id,
            dataset=receipt.dataset,
            seq=receipt.seq,
            version=receipt.version,
        ) from None


def _older_than(ingest_id: str, retention: timedelta) -> bool:
    try:
        return received_at_of(ingest_id) < datetime.now(UTC) - retention
    except ValueError:  # digits that are no time: not an id this API handed out
        return False


class LogTails:
    """What one process knows of its datasets' logs, to commit fast under many uploads.

    - The last entry it saw in each log: a log only grows, so the next commit lists what
      follows it (a few keys) rather than every entry still pending (hundreds in a burst).
    - A lock per dataset: the process's uploads to one dataset take their seqs one after
      another instead of all racing for the same one. Other processes still race, and the
      conditional create still decides; this only spares round trips.
    """

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    @contextlib.contextmanager
    def committing(self, dataset: str) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault(dataset, threading.Lock())
        with lock:
            yield

    def last_seen(self, dataset: str) -> int:
        return self._seen.get(dataset, 0)

    def saw(self, dataset: str, seq: int) -> None:
        self._seen[dataset] = max(seq, self.last_seen(dataset))


def log_end(store: ObjectStore, dataset: str, after: int) -> int:
    """The seq of the log's last entry, or `after` if none follows it (lists what follows
    `after` only)."""
    last = store.last_key(log_prefix(dataset), log_key(dataset, after))
    return seq_of_log_key(last) if last else after


def commit(
    store: ObjectStore,
    record: IngestRecord,
    after: int,
    tails: LogTails | None = None,
    listed: int | None = None,
) -> IngestRecord:
    """Create `record`'s log entry at the first free seq after `after`: the commit point.
    `listed`: the log's end (`log_end`) as the caller read it a moment ago, side by side
    with other work, which spares a round trip here.

    Several writers racing for one seq each try a conditional create, and exactly one
    wins; the others move on to the next. A create whose answer was lost (the store did
    write it) is recognised by its ingest id, so a retried write never commits twice.
    Each create follows an entry that exists, so the log never has a gap a run could pass.
    """
    tails = tails or LogTails()
    with tails.committing(record.dataset):
        after = max(after, tails.last_seen(record.dataset))
        seq = max(after, log_end(store, record.dataset, after) if listed is None else listed) + 1
        while True:
            committed = record.model_copy(update={"seq": seq})
            key = log_key(record.dataset, seq)
            try:
                if store.put_json_if_absent(key, committed.model_dump(mode="json")):
                    break
                holder = store.get_json_or_none(key)
            except StoreUnavailable as exc:  # the write may have reached the store, or not
                raise CommitUnconfirmed(committed, certain=False) from exc
            if holder is not None and holder["ingest_id"] == record.ingest_id:
                break
            seq += 1
        tails.saw(record.dataset, seq)
    receipt = Receipt(ingest_id=record.ingest_id, dataset=record.dataset, seq=seq)
    try:
        together(
            lambda: store.put_json(receipt_key(record.ingest_id), receipt.model_dump()),
            lambda: store.put_json(
                queued_key(record.dataset, record.sha256),
                {"ingest_id": record.ingest_id, "seq": seq},
            ),
            lambda: mark_pending(store, record.dataset),
        )
    except StoreUnavailable as exc:
        raise CommitUnconfirmed(committed, certain=True) from exc
    return committed


class CommitUnconfirmed(StoreUnavailable):
    """The store failed at or right after the commit point: the ingest is committed
    (`certain`), or may be. Either way a resend is safe: a committed copy is applied once
    and the other is found a duplicate. `GET /v1/ingest/{id}` finds it once a run has
    applied it (runs write the receipts of what they decide)."""

    def __init__(self, record: IngestRecord, *, certain: bool) -> None:
        self.record, self.certain = record, certain
        state = "was committed" if certain else "may have been committed"
        super().__init__(
            f"the object store failed when ingest {record.ingest_id} {state} to dataset "
            f"{record.dataset!r}: if it was, it will be applied once; sending the file again "
            "is safe (a second copy is recognised as a duplicate)"
        )

    def detail(self) -> object:
        return {
            "message": str(self),
            "ingest_id": self.record.ingest_id,
            "committed": True if self.certain else "unknown",
        }


def pending_entries(
    store: ObjectStore, dataset: str, after: int, max_count: int, max_bytes: int
) -> list[IngestRecord]:
    """The log entries after `after`, in order, within a count and byte budget (at least
    one, however large). Entries are read side by side: a batch of small files is many
    small reads."""
    keys = list(islice(store.list_keys(log_prefix(dataset), log_key(dataset, after)), max_count))
    entries = each(lambda key: read_entry(store, dataset, seq_of_log_key(key)), keys)
    size, taken = 0, 0
    for entry in entries:
        if taken and size + entry.bytes > max_bytes:
            break
        size += entry.bytes
        taken += 1
    return entries[:taken]


def has_pending(store: ObjectStore, dataset: str, after: int) -> bool:
    """Whether the log has an entry after `after` (lists one key)."""
    return store.first_key(log_prefix(dataset), log_key(dataset, after)) is not None


def settle_pending(store: ObjectStore, dataset: str, applied_through: int) -> bool:
    """Clear the hint unless entries after `applied_through` remain; True if some remain.

    The hint is deleted *before* looking: an ingest committed meanwhile either shows up in
    the look (and the hint is set again) or set its hint after the delete.
    """
    store.delete([pending_key(dataset)])
    if has_pending(store, dataset, applied_through):
        mark_pending(store, dataset)
        return True
    return False
