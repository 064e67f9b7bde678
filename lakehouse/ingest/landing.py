"""An upload landing: streamed into `landing/<dataset>/<ingest_id>.csv` a part at a time,
its columns checked (`lakehouse.ingest.contract`: a CSV's from the first part, before
anything is written; a JSON Lines or Parquet file's, and a merge's keys, once it is in the
store), then committed to the dataset's log (the commit point)."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

from lakehouse.errors import Conflict, NotFound
from lakehouse.formats.csv.options import CsvOptions
from lakehouse.formats.csv.schema import CsvSchema
from lakehouse.formats.csv.text import NotCsv
from lakehouse.formats.evolution import Evolve
from lakehouse.formats.structured import Format, format_of
from lakehouse.ingest.changes import check_keys, resolve_key
from lakehouse.ingest.contract import UploadContract
from lakehouse.ingest.log import LogTails, commit, has_pending, log_end, read_entry
from lakehouse.ingest.marks import SameBytes, applied_with, queued_with
from lakehouse.ingest.records import (
    KEYED_MODES,
    Dedup,
    IngestRecord,
    Mode,
    landed_bytes,
    new_ingest_id,
)
from lakehouse.ingest.underway import announce, withdraw
from lakehouse.manifest import Manifest
from lakehouse.store import MultipartUpload, ObjectStore, StoreUnavailable
from lakehouse.store.layout import landing_key
from lakehouse.store.parallel import together

# What an empty body should have been.
WHAT_TO_SEND: dict[Format, str] = {
    "csv": "a CSV file with a header line",
    "jsonl": "a JSON Lines file (one JSON object a line)",
    "parquet": "a Parquet file",
}


class DatasetFull(Conflict):
    """An append to a dataset whose current version is at its size cap."""

    def __init__(self, dataset: str, size: int, cap: int) -> None:
        self.dataset, self.size, self.cap = dataset, size, cap
        super().__init__(
            f"dataset {dataset!r} holds {size:,} bytes, at or past its cap of {cap:,} "
            "(the max_dataset_bytes setting, LAKEHOUSE_MAX_DATASET_BYTES): replace it "
            "(mode=replace) with what it should keep, or ask the operator to raise the cap"
        )

    def detail(self) -> object:
        return {
            "message": str(self),
            "dataset": self.dataset,
            "bytes": self.size,
            "max_dataset_bytes": self.cap,
        }


def check_room(current: Manifest | None, mode: Mode, cap: int) -> None:
    """Refuse an append or merge to a dataset at its size cap (0: none), before a byte is
    read."""
    if cap and mode in ("append", "merge") and current is not None and current.bytes >= cap:
        raise DatasetFull(current.name, current.bytes, cap)


class LineCounter:
    """Counts a file's physical lines as its bytes pass, as DuckDB splits them: at LF, at
    CRLF, or at a lone CR (a file whose lines end with CR alone has no LF)."""

    def __init__(self) -> None:
        self.lf = self.cr = 0
        self.last = b""

    def feed(self, data: bytes) -> None:
        if data:
            self.lf += data.count(b"\n")
            if not self.lf:  # CRs count only in a file with no LF at all (half the work)
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
    current version while the parts are sent; nothing is visible before `finish`, and a
    refused upload is aborted (`abort`), so it leaves nothing behind.
    """

    def __init__(
        self,
        store: ObjectStore,
        dataset: str,
        *,
        mode: Mode = "append",
        current: Manifest | None = None,
        sample_rows: int = 2000,
        max_columns: int = 4096,
        tails: LogTails | None = None,
        options: CsvOptions | None = None,
        request_id: str | None = None,
        key: Sequence[str] = (),
        dedup: Dedup = "none",
        evolve: Evolve = "strict",
        fmt: Format = "csv",
        on_under_way: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.tails = tails
        self.dataset = dataset
        self.mode = mode
        self.current = current
        self.ingest_id = new_ingest_id()
        self.key = landing_key(dataset, self.ingest_id)
        self.received_at = datetime.now(UTC)
        self.size = 0
        self.schema: CsvSchema | None = None
        self.options = options or CsvOptions()
        self.request_id = request_id
        self.match_key = resolve_key(dataset, mode, key, current) if mode in KEYED_MODES else []
        self.dedup = dedup
        self.evolve = evolve
        self.format = fmt
        self.contract = UploadContract(
            dataset,
            mode,
            current,
            key=self.match_key,
            evolve=evolve,
            fmt=fmt,
            sample_rows=sample_rows,
            max_columns=max_columns,
            options=self.options,
        )
        self._lines = LineCounter()
        self._hash = hashlib.sha256()
        self._upload: MultipartUpload | None = None
        self.on_under_way = on_under_way
        self.announced = False  # as under way (`lakehouse.ingest.underway`)

    def name_file(self, filename: str) -> None:
        """A multipart upload's file name, known before its first byte: its ending may say
        the format (`.jsonl`, `.ndjson`, `.parquet`, each perhaps `.gz`)."""
        self.format = self.contract.format = format_of(None, "", filename)

    def open_part(self) -> int:
        """The next part's number, in the body's order; the first starts the multipart
        upload (one round trip), whose parts stay invisible until `finish`."""
        if self._upload is None:
            self._upload = self.store.multipart(self.key, "text/csv")
        return self._upload.next_number()

    def take_part(self, part: bytes, announce: bool = True) -> None:
        """Account for the next part, in order (hash, size, the schema from the first one,
        which may refuse the upload). `announce`: the upload is to be announced as under
        way now, if it is not yet."""
        self._take(part, complete=False)
        if announce:
            self._announce()

    def _announce(self) -> None:
        """An upload of more than one part is announced, then `on_under_way` is told (the
        API asks for its run), so that the run starts while the rest arrives."""
        if self.on_under_way is not None and not self.announced:
            announce(self.store, self.dataset, self.ingest_id)
            self.announced = True
            self.on_under_way(self.ingest_id)

    def upload_part(self, number: int, part: bytes) -> None:
        """Send part `number` (from `open_part`), before or while it is taken in; parts may
        be sent concurrently, in any order."""
        assert self._upload is not None
        self._upload.write_part(number, landed_bytes(part) if number == 1 else part)

    def finish(self, last_part: bytes) -> Landed:
        """Write the last part, make the object visible, then commit the ingest; then it
        is no longer under way, whatever happened.

        Appending bytes the dataset already holds, or that are pending for it, commits
        nothing: the answer is the ingest that has them.
        """
        try:
            return self._finish(last_part)
        finally:
            if self.announced:
                withdraw(self.store, self.dataset, self.ingest_id)

    def _finish(self, last_part: bytes) -> Landed:
        self._take(last_part, complete=self._upload is None)
        if self.size == 0:
            raise NotCsv(f"the body is empty: send {WHAT_TO_SEND[self.format]}")
        sha256 = self._hash.hexdigest()
        after = self.current.applied_through if self.current else 0
        earlier, listed = self._land(last_part, sha256, after)
        if earlier is not None:
            self.store.delete([self.key])  # the dataset has these bytes: nothing stays
            return Landed(earlier, duplicate=True)
        try:
            self._check_landed()
        except BaseException:
            self.store.delete([self.key])  # refused: nothing of it stays
            raise
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
            lines=self._lines.total() if self.schema.encoding not in ("utf-16", "") else None,
            request_id=self.request_id,
            key=self.match_key,
            dedup=self.dedup,
            evolve=self.evolve,
            format=self.format,
        )
        return Landed(commit(self.store, record, after, self.tails, listed), duplicate=False)

    def abort(self) -> None:
        """Discard whatever was written; nothing of this upload stays visible."""
        if self._upload is not None:
            self._upload.abort()
            self._upload = None
        if self.announced:
            withdraw(self.store, self.dataset, self.ingest_id)

    def _land(self, last_part: bytes, sha256: str, after: int) -> tuple[IngestRecord | None, int]:
        """Make the file visible while looking for the same bytes and for the log's end
        (where the commit will write): one round trip for the three. The ingest that holds
        these bytes already, if one does, and the log's end. If any fails, nothing stays."""
        tail = max(after, self.tails.last_seen(self.dataset)) if self.tails else after
        try:
            earlier, listed, _ = together(
                lambda: self._already_there(sha256),
                lambda: log_end(self.store, self.dataset, tail),
                lambda: self._complete(last_part),
            )
        except BaseException:
            with contextlib.suppress(StoreUnavailable):
                self.store.delete([self.key])
            raise
        return cast(IngestRecord | None, earlier), cast(int, listed)

    def _already_there(self, sha256: str) -> IngestRecord | None:
        """The ingest that holds these bytes: in the current version, or still pending.

        Two identical uploads racing may both pass this check and both commit; the run
        that applies them finds the second a duplicate, so rows still land once.
        """
        if self.mode == "replace":
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
        try:
            entry = read_entry(self.store, self.dataset, holder.seq)
        except NotFound:  # pruned by retention since its mark was read: send it on
            return None
        return entry if (entry.mode, entry.key) == (self.mode, self.match_key) else None

    def _check_landed(self) -> None:
        """What can only be read once the file is in the store: a JSON Lines or Parquet
        file's columns, a merge's or delete's keys (a NULL or repeated one)."""
        if self.format == "csv" and not self.match_key:
            return
        url = self.store.url(self.key)
        if self.format != "csv":
            self.schema = self.contract.of_landed(self.store.config, url)
        if self.match_key:
            assert self.schema is not None
            check_keys(self.store.config, url, self.format, self.schema, self.match_key, self.dedup)

    def _complete(self, last_part: bytes) -> None:
        if self._upload is None:
            self.store.put_bytes(self.key, landed_bytes(last_part), "text/csv")
            return
        if last_part:  # already taken into account by finish()
            self.upload_part(self._upload.next_number(), last_part)
        self._upload.complete()
        self._upload = None  # nothing left to abort: the object is visible

    def _take(self, data: bytes, *, complete: bool) -> None:
        if self.size == 0:
            self.contract.check_options()
            data = landed_bytes(data)
        if self.format == "csv" and self.schema is None and (data or complete):
            self.schema = self.contract.of_csv(data, complete=complete)
        self.size += len(data)
        self._hash.update(data)
        self._lines.feed(data)
