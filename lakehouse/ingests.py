"""Ingests: one uploaded file, landed in the store and recorded for the sensor to pick up.

The record is written only after the CSV is complete in the landing area, under a key that
sorts by completion time (`storage.record_key`), so the sensor can list just the recent
tail of `ingests/` instead of the whole bucket.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime

from pydantic import BaseModel

from lakehouse.csvschema import CsvSchema, NotCsv, infer_schema
from lakehouse.storage import MultipartUpload, ObjectStore, landing_key, record_key

# Enough for a header and a few thousand rows of any sane width.
SAMPLE_BYTES = 1024 * 1024


def new_ingest_id(now: datetime | None = None) -> str:
    """Sortable by start time and unique: `20261122T015500123456-1a2b3c4d`."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%S%f}-{secrets.token_hex(4)}"


class IngestRecord(BaseModel):
    ingest_id: str
    dataset: str
    landing_key: str
    bytes: int
    sha256: str
    csv_schema: CsvSchema
    received_at: datetime
    completed_at: datetime

    @property
    def key(self) -> str:
        return record_key(self.completed_at, self.ingest_id)


def record_ingest(
    store: ObjectStore,
    *,
    ingest_id: str,
    dataset: str,
    size: int,
    sha256: str,
    schema: CsvSchema,
    received_at: datetime,
) -> IngestRecord:
    record = IngestRecord(
        ingest_id=ingest_id,
        dataset=dataset,
        landing_key=landing_key(dataset, ingest_id),
        bytes=size,
        sha256=sha256,
        csv_schema=schema,
        received_at=received_at,
        completed_at=datetime.now(UTC),
    )
    store.put_json(record.key, record.model_dump(mode="json"))
    return record


def read_record(store: ObjectStore, key: str) -> IngestRecord:
    return IngestRecord.model_validate(store.get_json(key))


class Landing:
    """Streams one upload into `landing/<dataset>/<ingest_id>.csv`, one part at a time.

    The caller hands over parts of at least the store's minimum part size (the last may be
    smaller). The schema is inferred from the first part before anything is written, so a
    file that is not CSV is refused without leaving an object behind.
    """

    def __init__(self, store: ObjectStore, dataset: str, *, sample_rows: int) -> None:
        self.store = store
        self.dataset = dataset
        self.sample_rows = sample_rows
        self.ingest_id = new_ingest_id()
        self.key = landing_key(dataset, self.ingest_id)
        self.received_at = datetime.now(UTC)
        self.size = 0
        self.schema: CsvSchema | None = None
        self._hash = hashlib.sha256()
        self._upload: MultipartUpload | None = None

    def write_part(self, part: bytes) -> None:
        self._take(part, complete=False)
        if self._upload is None:
            self._upload = self.store.multipart(self.key, "text/csv")
        self._upload.write_part(part)

    def finish(self, last_part: bytes) -> IngestRecord:
        """Write the last part, make the object visible, then record the ingest."""
        self._take(last_part, complete=self._upload is None)
        if self.size == 0:
            raise NotCsv("the body is empty: send a CSV file with a header line")
        if self._upload is None:
            self.store.put_bytes(self.key, last_part, "text/csv")
        else:
            if last_part:
                self._upload.write_part(last_part)
            self._upload.complete()
        assert self.schema is not None
        return record_ingest(
            self.store,
            ingest_id=self.ingest_id,
            dataset=self.dataset,
            size=self.size,
            sha256=self._hash.hexdigest(),
            schema=self.schema,
            received_at=self.received_at,
        )

    def abort(self) -> None:
        """Discard whatever was written; nothing of this upload stays visible."""
        if self._upload is not None:
            self._upload.abort()

    def _take(self, data: bytes, *, complete: bool) -> None:
        if self.schema is None and (data or complete):
            sample = data[:SAMPLE_BYTES]
            self.schema = infer_schema(
                sample, complete=complete and len(sample) == len(data), max_rows=self.sample_rows
            )
        self.size += len(data)
        self._hash.update(data)
