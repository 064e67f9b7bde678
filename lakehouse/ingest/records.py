"""An ingest: its record (the log entry) and its receipt.

The ingest protocol: how an uploaded file becomes part of exactly one dataset version.

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

A `merge` or `delete` ingest changes rows by the dataset's key (`lakehouse.versions.merge`):
it is applied, failed or decided the same way, in the same log order.

Only the dataset asset moves an ingest past `pending`, and only by committing a version
(`lakehouse.versions.commits`), so "decided" and "in the catalog" are one and the same step. The
ingest log is ordered by `seq`, which the conditional write hands out: nobody's clock
decides the order, and finding pending ingests lists only what follows the dataset's
`applied_through`.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel

from lakehouse.formats.csv.schema import CsvSchema
from lakehouse.formats.csv.text import UTF8_BOM
from lakehouse.formats.evolution import Evolve
from lakehouse.formats.structured import Format

Mode = Literal["append", "replace", "merge", "delete"]
# Modes that change rows by the dataset's key.
KEYED_MODES = ("merge", "delete")
# What a merge or delete does with a key that occurs more than once in its file: refuse the
# upload (409), or keep the first or the last row with that key.
Dedup = Literal["none", "first", "last"]
# A merge file's column that marks a row as a delete of its key (dlt's `hard_delete`).
DELETED = "_deleted"
# Where an ingest stands, as `GET /v1/ingest/{id}` says it.
IngestState = Literal["queued", "running", "materialized", "failed"]


ID_TIME = "%Y%m%dT%H%M%S%f"


def new_ingest_id(now: datetime | None = None) -> str:
    """Unique, and readable: `20261122T015500123456-1a2b3c4d` (the time orders nothing)."""
    now = now or datetime.now(UTC)
    return f"{now.strftime(ID_TIME)}-{secrets.token_hex(4)}"


def received_at_of(ingest_id: str) -> datetime:
    """When the API received an ingest, read from its id (`new_ingest_id`)."""
    return datetime.strptime(ingest_id.split("-", 1)[0], ID_TIME).replace(tzinfo=UTC)


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
    request_id: str | None = None  # the API request that uploaded it (its X-Request-ID)
    key: list[str] = []  # merge and delete: the key columns rows are matched by
    dedup: Dedup = "none"
    evolve: Evolve = "strict"  # an append: what its columns may change (`formats.evolution`)
    # How the file is written: CSV (read as `csv_schema`'s dialect says), or JSON Lines or
    # Parquet (`formats.structured`: `csv_schema` then holds only the columns).
    format: Format = "csv"


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
