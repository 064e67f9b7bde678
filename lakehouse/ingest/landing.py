"""An upload landing: streamed into `landing/<dataset>/<ingest_id>.csv` a part at a time,
its schema inferred from the first part and checked against the dataset's before anything
is written, then committed to the dataset's log (the commit point)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from lakehouse.errors import Conflict, InvalidInput, NotFound
from lakehouse.formats.csv.options import CsvOptions
from lakehouse.formats.csv.schema import CsvSchema, infer_schema, schema_diff
from lakehouse.formats.csv.text import NotCsv
from lakehouse.formats.csv.types import Column
from lakehouse.formats.evolution import Evolve, by_name, evolved
from lakehouse.ingest.changes import (
    check_deleted_flag,
    check_key_columns,
    check_keys,
    keyed_contract,
    resolve_key,
)
from lakehouse.ingest.log import LogTails, commit, has_pending, read_entry
from lakehouse.ingest.marks import SameBytes, applied_with, queued_with
from lakehouse.ingest.records import (
    DELETED,
    KEYED_MODES,
    Dedup,
    IngestRecord,
    Mode,
    landed_bytes,
    new_ingest_id,
)
from lakehouse.manifest import Manifest
from lakehouse.store import MultipartUpload, ObjectStore
from lakehouse.store.layout import landing_key
from lakehouse.store.parallel import together

# Enough for a header and a few thousand rows of any sane width.
SAMPLE_BYTES = 1024 * 1024


HOW_TO_MATCH: dict[Mode, str] = {
    "append": ": send evolve=add_columns to add its new columns (evolve=widen also widens a "
    "type as Iceberg allows), or mode=replace to make it the dataset's new version",
    "replace": "",
    "merge": f" (a merge file has the dataset's columns, and may add a BOOLEAN {DELETED})",
    "delete": " (a delete file has the key columns, or more of the dataset's, with its types)",
}


class SchemaConflict(Conflict):
    """The upload's schema is not the dataset's, and the caller did not ask to replace."""

    def __init__(
        self, dataset: str, current: Sequence[Column], upload: CsvSchema, mode: Mode = "append"
    ) -> None:
        self.dataset = dataset
        self.diff = schema_diff(current, [c for c in upload.columns if c.name != DELETED])
        self.upload_fingerprint = upload.fingerprint
        super().__init__(
            f"the file's columns do not match dataset {dataset!r}: change the file to match"
            + HOW_TO_MATCH[mode]
        )

    def detail(self) -> object:
        return {
            "message": str(self),
            "dataset": self.dataset,
            "upload_fingerprint": self.upload_fingerprint,
            **self.diff,
        }


class TooManyColumns(InvalidInput):
    """More columns than a dataset may have (`max_columns`)."""

    def __init__(self, columns: int, cap: int) -> None:
        self.columns, self.cap = columns, cap
        super().__init__(
            f"the file has {columns:,} columns; a dataset may have at most {cap:,} "
            "(the max_columns setting, LAKEHOUSE_MAX_COLUMNS): split the file into datasets "
            "of fewer columns, or ask the operator to raise the cap"
        )

    def detail(self) -> object:
        return {"message": str(self), "columns": self.columns, "max_columns": self.cap}


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
    """Refuse an append to a dataset at its size cap (0: none), before a byte is read."""
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
        max_columns: int = 4096,
        tails: LogTails | None = None,
        options: CsvOptions | None = None,
        request_id: str | None = None,
        key: Sequence[str] = (),
        dedup: Dedup = "none",
        evolve: Evolve = "strict",
    ) -> None:
        self.store = store
        self.tails = tails
        self.dataset = dataset
        self.mode = mode
        self.current = current
        self.sample_rows = sample_rows
        self.max_columns = max_columns
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
        self._lines = LineCounter()
        self._hash = hashlib.sha256()
        self._upload: MultipartUpload | None = None

    @property
    def _contract(self) -> Manifest | None:
        """The version an append or merge must match (none for a replace or a new dataset)."""
        if self.mode != "replace" and self.current is not None and self.current.columns:
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
        if self.match_key:
            try:
                key_url = self.store.url(self.key)
                check_keys(self.store.config, key_url, self.schema, self.match_key, self.dedup)
            except BaseException:
                self.store.delete([self.key])  # refused: nothing of it stays
                raise
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
            request_id=self.request_id,
            key=self.match_key,
            dedup=self.dedup,
            evolve=self.evolve,
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
        if len(schema.columns) > self.max_columns:
            raise TooManyColumns(len(schema.columns), self.max_columns)
        if self.mode in KEYED_MODES:
            return self._keyed(sample, complete and len(sample) == len(data), schema)
        if contract is None or schema.fingerprint == contract.schema_fingerprint:
            return schema
        if self.evolve != "strict":  # read again with the dataset's types, by name
            schema = infer_schema(
                sample,
                complete=complete and len(sample) == len(data),
                max_rows=self.sample_rows,
                contract=by_name(schema.columns, contract.columns),
                options=self.options,
            )
        if evolved(contract.columns, schema.columns, self.evolve) is None:
            raise SchemaConflict(self.dataset, contract.columns, schema)
        return schema

    def _keyed(self, sample: bytes, complete: bool, schema: CsvSchema) -> CsvSchema:
        """A merge file has the dataset's columns (and perhaps `_deleted`), a delete file
        the key and perhaps more of them: read again with the dataset's types where the
        values fit, then checked."""
        check_key_columns(schema, self.match_key)
        current = list(self.current.columns) if self.current else []
        schema = infer_schema(
            sample,
            complete=complete,
            max_rows=self.sample_rows,
            contract=keyed_contract(schema, current),
            options=self.options,
        )
        check_deleted_flag(self.mode, schema)
        data = [(c.name, c.type) for c in schema.columns if c.name != DELETED]
        dataset = [(c.name, c.type) for c in current]
        fits = data == dataset if self.mode == "merge" else set(data) <= set(dataset)
        if current and not fits:
            raise SchemaConflict(self.dataset, current, schema, self.mode)
        return schema
