"""The ingest protocol: how an uploaded file becomes part of exactly one dataset version.

States of an ingest, and who moves it (docs/PROTOCOL.md tells the whole story):

    landing    the API streams the bytes to `landing/<dataset>/<ingest_id>.csv`. Nothing
               refers to them: if anything fails now, nothing will ever be applied, and a
               retry is a fresh attempt.
    pending    COMMIT POINT: the API creates the dataset's next ingest log entry
               `log/<dataset>/<seq>` with a conditional write (only one writer can create a
               given seq), then answers with the ingest id. From here the ingest will be
               decided exactly once, in `seq` order, whichever process dies when.
    applied    a run of the dataset asset put its rows in version v (`Manifest.contains`).
    failed     a run decided it cannot be applied (too many bad rows, wrong columns); the
               dataset is unchanged by it and the same bytes may be sent again.
    duplicate  a run found the same bytes already in the dataset or earlier in the batch.
    replaced   it was applied, and a later `mode=replace` ingest took its rows out.

Only the dataset asset moves an ingest past `pending`, and only by committing a version
(`lakehouse.commits`), so "decided" and "in the catalog" are one and the same step. The
ingest log is ordered by `seq`, which the conditional write hands out: nobody's clock
decides the order, and finding pending ingests lists only what follows the dataset's
`applied_through`.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from itertools import islice
from typing import Literal, TypeVar

from pydantic import BaseModel

from lakehouse.catalog import Manifest
from lakehouse.csvdialect import CsvOptions
from lakehouse.csvschema import Column, CsvSchema, NotCsv, infer_schema, schema_diff
from lakehouse.storage import (
    LOG,
    PENDING,
    MultipartUpload,
    ObjectStore,
    StoreUnavailable,
    applied_key,
    landing_key,
    log_key,
    log_prefix,
    pending_key,
    queued_key,
    receipt_key,
    seq_of_log_key,
)

Mode = Literal["append", "replace"]

# Enough for a header and a few thousand rows of any sane width.
SAMPLE_BYTES = 1024 * 1024
READ_THREADS = 16
T = TypeVar("T")
A = TypeVar("A")
UTF8_BOM = b"\xef\xbb\xbf"


def new_ingest_id(now: datetime | None = None) -> str:
    """Unique, and readable: `20261122T015500123456-1a2b3c4d` (the time orders nothing)."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%S%f}-{secrets.token_hex(4)}"


class IngestRecord(BaseModel):
    """An ingest log entry: everything a run needs to apply the file."""

    ingest_id: str
    dataset: str
    mode: Mode = "append"
    landing_key: str
    bytes: int
    sha256: str
    csv_schema: CsvSchema
    received_at: datetime
    seq: int = 0  # its place in the dataset's log; 0 until committed
    # Physical lines in the file (line ends, and a last line without one), counted as the
    # bytes arrived: what the run's accounting of rows and rejects starts from. None for
    # records written before it was counted, and for UTF-16 files.
    lines: int | None = None


def landed_bytes(first_part: bytes) -> bytes:
    """The first part as it is stored: without a UTF-8 byte order mark, which carries no
    data and trips DuckDB's reader on some files (a last line `""` is dropped after it)."""
    return first_part.removeprefix(UTF8_BOM)


class Receipt(BaseModel):
    """Where an ingest's log entry is, found by ingest id; once decided, which version
    decided it (written by that run, so it is there even if the API's write failed)."""

    ingest_id: str = ""
    dataset: str
    seq: int
    version: int | None = None


_io = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="store")


def together(*calls: Callable[[], T]) -> list[T]:
    """Run independent store calls side by side (one round trip instead of several);
    the first error, if any, is raised once all have finished."""
    futures = [_io.submit(call) for call in calls]
    wait(futures)
    return [future.result() for future in futures]


def each(call: Callable[[A], T], items: Sequence[A]) -> list[T]:
    """`call` on every item, side by side on the same threads as `together`."""
    return together(*(partial(call, item) for item in items))


def read_receipt_of(store: ObjectStore, ingest_id: str) -> Receipt:
    """The receipt of `ingest_id` (ClientError if there is none)."""
    return Receipt.model_validate(store.get_json(receipt_key(ingest_id)))


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


def read_receipt(store: ObjectStore, ingest_id: str) -> IngestRecord:
    """The committed ingest `ingest_id` (ClientError if there is none)."""
    receipt = read_receipt_of(store, ingest_id)
    return read_entry(store, receipt.dataset, receipt.seq)


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


def commit(
    store: ObjectStore, record: IngestRecord, after: int, tails: LogTails | None = None
) -> IngestRecord:
    """Create `record`'s log entry at the first free seq after `after`: the commit point.

    Several writers racing for one seq each try a conditional create, and exactly one
    wins; the others move on to the next. A create whose answer was lost (the store did
    write it) is recognised by its ingest id, so a retried write never commits twice.
    Each create follows an entry that exists, so the log never has a gap a run could pass.
    """
    tails = tails or LogTails()
    with tails.committing(record.dataset):
        after = max(after, tails.last_seen(record.dataset))
        last = store.last_key(log_prefix(record.dataset), log_key(record.dataset, after))
        seq = (seq_of_log_key(last) if last else after) + 1
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


def mark_pending(store: ObjectStore, dataset: str) -> None:
    """Tell the sensor that `dataset` may have pending ingests (a hint, never the truth)."""
    store.put_bytes(pending_key(dataset), b"")


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


class SchemaConflict(ValueError):
    """The upload's schema is not the dataset's, and the caller did not ask to replace."""

    def __init__(self, dataset: str, current: Sequence[Column], upload: CsvSchema) -> None:
        self.dataset = dataset
        self.diff = schema_diff(current, upload.columns)
        self.upload_fingerprint = upload.fingerprint
        super().__init__(
            f"the file's columns do not match dataset {dataset!r}: change the file to match, "
            "or send mode=replace to make it the dataset's new version"
        )


class LineCounter:
    """Counts a file's physical lines as its bytes pass, as DuckDB splits them: at LF, at
    CRLF, or at a lone CR (a file whose lines end with CR alone has no LF)."""

    def __init__(self) -> None:
        self.lf = self.cr = 0
        self.last = b""

    def feed(self, data: bytes) -> None:
        if data:
            self.lf += data.count(b"\n")
            self.cr += data.count(b"\r")
            self.last = data[-1:]

    def total(self) -> int:
        ends = self.lf if self.lf else self.cr
        return ends + (1 if self.last and self.last not in b"\r\n" else 0)


@dataclass(frozen=True)
class Landed:
    record: IngestRecord
    duplicate: bool  # True: the dataset has these bytes, applied or pending, in `record`


class Landing:
    """Streams one upload into `landing/<dataset>/<ingest_id>.csv`, one part at a time,
    then commits it to the dataset's log.

    The caller hands over parts of at least the store's minimum part size (the last may be
    smaller). The schema is inferred from the first part and checked against the dataset's
    current version before anything is written, so a refused upload leaves nothing behind.
    """

    def __init__(
        self,
        store: ObjectStore,
        dataset: str,
        *,
        mode: Mode = "append",
        current: Manifest | None = None,
        sample_rows: int = 2000,
        tails: LogTails | None = None,
        options: CsvOptions | None = None,
    ) -> None:
        self.store = store
        self.tails = tails
        self.dataset = dataset
        self.mode = mode
        self.current = current
        self.sample_rows = sample_rows
        self.ingest_id = new_ingest_id()
        self.key = landing_key(dataset, self.ingest_id)
        self.received_at = datetime.now(UTC)
        self.size = 0
        self.schema: CsvSchema | None = None
        self.options = options or CsvOptions()
        self._lines = LineCounter()
        self._hash = hashlib.sha256()
        self._upload: MultipartUpload | None = None

    @property
    def _contract(self) -> Manifest | None:
        """The version an append must match (none for a replace or a new dataset)."""
        if self.mode == "append" and self.current is not None and self.current.columns:
            return self.current
        return None

    def take_part(self, part: bytes) -> int:
        """Account for the next part, in order (hash, size, the schema from the first one,
        which may refuse the upload before anything is sent); returns its part number."""
        self._take(part, complete=False)
        if self._upload is None:
            self._upload = self.store.multipart(self.key, "text/csv")
        return self._upload.next_number()

    def upload_part(self, number: int, part: bytes) -> None:
        """Send a part taken by `take_part`; parts may be sent concurrently, in any order."""
        assert self._upload is not None
        self._upload.write_part(number, landed_bytes(part) if number == 1 else part)

    def finish(self, last_part: bytes) -> Landed:
        """Write the last part, make the object visible, then commit the ingest.

        Appending bytes the dataset already holds, or that are pending for it, commits
        nothing: the answer is the ingest that has them.
        """
        self._take(last_part, complete=self._upload is None)
        if self.size == 0:
            raise NotCsv("the body is empty: send a CSV file with a header line")
        sha256 = self._hash.hexdigest()
        if (earlier := self._already_there(sha256)) is not None:
            self.abort()
            return Landed(earlier, duplicate=True)
        self._complete(last_part)
        assert self.schema is not None
        record = IngestRecord(
            ingest_id=self.ingest_id,
            dataset=self.dataset,
            mode=self.mode,
            landing_key=self.key,
            bytes=self.size,
            sha256=sha256,
            csv_schema=self.schema,
            received_at=self.received_at,
            lines=self._lines.total() if self.schema.encoding != "utf-16" else None,
        )
        after = self.current.applied_through if self.current else 0
        return Landed(commit(self.store, record, after, self.tails), duplicate=False)

    def abort(self) -> None:
        """Discard whatever was written; nothing of this upload stays visible."""
        if self._upload is not None:
            self._upload.abort()
            self._upload = None

    def _already_there(self, sha256: str) -> IngestRecord | None:
        """The ingest that holds these bytes: in the current version, or still pending.

        Two identical uploads racing may both pass this check and both commit; the run
        that applies them finds the second a duplicate, so rows still land once.
        """
        if self.mode != "append":
            return None
        applied_through = self.current.applied_through if self.current else 0
        holder: SameBytes | None = None
        queued, applied = together(
            lambda: queued_with(self.store, self.dataset, sha256),
            lambda: applied_with(self.store, self.dataset, sha256),
        )
        if queued is not None and queued.seq > applied_through:
            holder = queued
        if holder is None and applied and self.current and self.current.contains(applied.seq):
            holder = applied
        # Anything committed after the holder may be a replace that takes it out (and the
        # manifest read at the start may be stale): then only the run can tell.
        if holder is None or has_pending(
            self.store, self.dataset, max(holder.seq, applied_through)
        ):
            return None
        return read_entry(self.store, self.dataset, holder.seq)

    def _complete(self, last_part: bytes) -> None:
        if self._upload is None:
            self.store.put_bytes(self.key, landed_bytes(last_part), "text/csv")
            return
        if last_part:  # already taken into account by finish()
            self.upload_part(self._upload.next_number(), last_part)
        self._upload.complete()

    def _take(self, data: bytes, *, complete: bool) -> None:
        if self.size == 0:
            data = landed_bytes(data)
        if self.schema is None and (data or complete):
            self.schema = self._infer(data, complete=complete)
        self.size += len(data)
        self._hash.update(data)
        self._lines.feed(data)

    def _infer(self, data: bytes, *, complete: bool) -> CsvSchema:
        sample = data[:SAMPLE_BYTES]
        contract = self._contract
        schema = infer_schema(
            sample,
            complete=complete and len(sample) == len(data),
            max_rows=self.sample_rows,
            contract=contract.columns if contract else None,
            options=self.options,
        )
        if contract is not None and schema.fingerprint != contract.schema_fingerprint:
            raise SchemaConflict(self.dataset, contract.columns, schema)
        return schema
