"""Ingests: one uploaded file, landed in the store and recorded for the sensor to pick up.

The record is written only after the CSV is complete in the landing area, under a key that
sorts by completion time (`storage.record_key`), so the sensor can list just the recent
tail of `ingests/` instead of the whole bucket. A copy under `receipts/<ingest_id>.json`
finds it by id.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from botocore.exceptions import ClientError
from pydantic import BaseModel

from lakehouse.csvschema import Column, CsvSchema, NotCsv, infer_schema, schema_diff
from lakehouse.storage import (
    MultipartUpload,
    ObjectStore,
    claim_key,
    landing_key,
    receipt_key,
    record_key,
)

Mode = Literal["append", "replace"]

# Enough for a header and a few thousand rows of any sane width.
SAMPLE_BYTES = 1024 * 1024
# How long (x 0.5 s) a duplicate waits for the earlier ingest's receipt to appear.
CLAIM_WAIT_STEPS = 20


def new_ingest_id(now: datetime | None = None) -> str:
    """Sortable by start time and unique: `20261122T015500123456-1a2b3c4d`."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%S%f}-{secrets.token_hex(4)}"


class IngestRecord(BaseModel):
    ingest_id: str
    dataset: str
    mode: Mode = "append"
    landing_key: str
    bytes: int
    sha256: str
    csv_schema: CsvSchema
    received_at: datetime
    completed_at: datetime

    @property
    def key(self) -> str:
        return record_key(self.completed_at, self.ingest_id)


def read_record(store: ObjectStore, key: str) -> IngestRecord:
    return IngestRecord.model_validate(store.get_json(key))


def read_receipt(store: ObjectStore, ingest_id: str) -> IngestRecord:
    return read_record(store, receipt_key(ingest_id))


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


@dataclass(frozen=True)
class Contract:
    """What an upload to an existing dataset must match: its current columns."""

    columns: Sequence[Column]
    fingerprint: str


@dataclass(frozen=True)
class Landed:
    record: IngestRecord
    duplicate: bool  # True: these bytes were sent before; `record` is that earlier ingest


class Landing:
    """Streams one upload into `landing/<dataset>/<ingest_id>.csv`, one part at a time.

    The caller hands over parts of at least the store's minimum part size (the last may be
    smaller). The schema is inferred from the first part and checked against the dataset's
    contract before anything is written, so a refused upload leaves nothing behind.
    """

    def __init__(
        self,
        store: ObjectStore,
        dataset: str,
        *,
        mode: Mode = "append",
        contract: Contract | None = None,
        sample_rows: int = 2000,
        on_receipt: Callable[[IngestRecord], object] | None = None,
    ) -> None:
        self.store = store
        self.dataset = dataset
        self.mode = mode
        self.contract = contract
        self.sample_rows = sample_rows
        # Called once the receipt exists and before the record the sensor lists is written.
        self.on_receipt = on_receipt
        self.ingest_id = new_ingest_id()
        self.key = landing_key(dataset, self.ingest_id)
        self.received_at = datetime.now(UTC)
        self.size = 0
        self.schema: CsvSchema | None = None
        self._hash = hashlib.sha256()
        self._upload: MultipartUpload | None = None

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
        self._upload.write_part(number, part)

    def finish(self, last_part: bytes) -> Landed:
        """Write the last part, make the object visible, then record the ingest.

        Appending bytes this dataset already received lands nothing: the answer is the
        earlier ingest. The claim on the bytes' hash is a conditional write, so of two
        identical uploads racing, exactly one lands.
        """
        self._take(last_part, complete=self._upload is None)
        if self.size == 0:
            raise NotCsv("the body is empty: send a CSV file with a header line")
        sha256 = self._hash.hexdigest()
        if self.mode == "append" and (earlier := self._claim(sha256)) is not None:
            self.abort()
            return Landed(earlier, duplicate=True)
        try:
            return Landed(self._commit(last_part, sha256), duplicate=False)
        except BaseException:
            if self.mode == "append":
                self.store.delete([claim_key(self.dataset, sha256)])
            raise

    def _claim(self, sha256: str) -> IngestRecord | None:
        """Claim these bytes for this ingest; if an earlier ingest holds them, its record."""
        claim = claim_key(self.dataset, sha256)
        mine = {"ingest_id": self.ingest_id}
        if self.store.put_json_if_absent(claim, mine):
            return None
        earlier = self.store.get_json(claim)["ingest_id"]
        # The earlier uploader writes its receipt right after its claim; wait for it briefly.
        for _ in range(CLAIM_WAIT_STEPS):
            with contextlib.suppress(ClientError):
                return read_receipt(self.store, earlier)
            time.sleep(0.5)
        # No receipt: that uploader died between claim and commit. The claim is ours now.
        self.store.put_json(claim, mine)
        return None

    def abort(self) -> None:
        """Discard whatever was written; nothing of this upload stays visible."""
        if self._upload is not None:
            self._upload.abort()
            self._upload = None

    def _commit(self, last_part: bytes, sha256: str) -> IngestRecord:
        if self._upload is None:
            self.store.put_bytes(self.key, last_part, "text/csv")
        else:
            if last_part:  # already taken into account by finish()
                self.upload_part(self._upload.next_number(), last_part)
            self._upload.complete()
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
            completed_at=datetime.now(UTC),
        )
        document: dict[str, Any] = record.model_dump(mode="json")
        # Receipt first: once the sensor can see the record, GET /v1/ingest/{id} must too.
        self.store.put_json(receipt_key(self.ingest_id), document)
        if self.on_receipt is not None:
            self.on_receipt(record)
        self.store.put_json(record.key, document)
        return record

    def _take(self, data: bytes, *, complete: bool) -> None:
        if self.schema is None and (data or complete):
            self.schema = self._infer(data, complete=complete)
        self.size += len(data)
        self._hash.update(data)

    def _infer(self, data: bytes, *, complete: bool) -> CsvSchema:
        sample = data[:SAMPLE_BYTES]
        schema = infer_schema(
            sample,
            complete=complete and len(sample) == len(data),
            max_rows=self.sample_rows,
            contract=self.contract.columns if self.contract and self.mode == "append" else None,
        )
        if (
            self.contract is not None
            and self.mode == "append"
            and schema.fingerprint != self.contract.fingerprint
        ):
            raise SchemaConflict(self.dataset, self.contract.columns, schema)
        return schema
