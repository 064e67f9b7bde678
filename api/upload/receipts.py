"""What `POST /v1/ingest` and `GET /v1/ingest/{id}` answer: an ingest's receipt."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from lakehouse.formats.csv.types import Column
from lakehouse.formats.evolution import Evolve
from lakehouse.formats.structured import Format
from lakehouse.ingest.records import Dedup, IngestRecord, Mode
from lakehouse.manifest import Manifest
from lakehouse.publish.status import IngestStatus
from lakehouse.versions.commits import IngestError, RowChanges


class InferredSchema(BaseModel):
    delimiter: str
    quote: str = Field(description='The quote character ("" for none).')
    escape: str = Field(
        description='What escapes a quote inside a quoted value: the quote (doubled) or "\\".'
    )
    header: bool = Field(
        description="Whether the first line read (after skipped_lines) names the columns."
    )
    skipped_lines: int = Field(
        description="Lines before the header (a title, notes, comments, blank lines)."
    )
    comment: str = Field(description='Lines starting with it are skipped ("" for none).')
    null: list[str] = Field(description="Values read as NULL.")
    encoding: str
    dialect_reasons: dict[str, str] = Field(
        description='Why each of the above was chosen ("given": sent as a parameter).'
    )
    fingerprint: str
    columns: list[Column]
    renamed: dict[str, str] = Field(description="New header name -> the header as sent.")


class IngestAnswer(BaseModel):
    ingest_id: str
    dataset: str
    mode: Mode
    seq: int = Field(description="Its place in the dataset's ingest log (apply order).")
    status: str = Field(description="queued, running, materialized or failed.")
    duplicate: bool = Field(
        False,
        description="True: the dataset already holds these bytes; this is the ingest that "
        "put them there, and nothing new was committed.",
    )
    bytes: int
    sha256: str
    received_at: datetime
    request_id: str | None = Field(
        None, description="The upload's request (its X-Request-ID, audit record and log lines)."
    )
    inferred_schema: InferredSchema
    run_id: str | None = None
    version: int | None = Field(None, description="The dataset version that applied it.")
    in_current_version: bool | None = Field(
        None, description="Once materialized: False if a later replace took its rows out."
    )
    duplicate_of: str | None = Field(
        None, description="Materialized as a duplicate of this ingest: no rows were added."
    )
    error: IngestError | None = None
    key: list[str] = Field([], description="merge, delete: the key columns rows were matched by.")
    dedup: Dedup = Field("none", description="merge, delete: which row of a repeated key won.")
    evolve: Evolve = Field("strict", description="append: what its columns could change.")
    format: Format = Field("csv", description="csv, jsonl or parquet.")
    changes: RowChanges | None = Field(
        None,
        description="merge, delete, once materialized: stored rows whose key it sent again "
        "(updated), new keys (inserted), and rows it deleted.",
    )
    manifest: Manifest | None = Field(None, description="With wait, once materialized.")


def answer(record: IngestRecord, state: IngestStatus, **extra: Any) -> IngestAnswer:
    schema = record.csv_schema
    return IngestAnswer(
        ingest_id=record.ingest_id,
        dataset=record.dataset,
        mode=record.mode,
        seq=record.seq,
        bytes=record.bytes,
        sha256=record.sha256,
        received_at=record.received_at,
        request_id=record.request_id,
        key=record.key,
        dedup=record.dedup,
        evolve=record.evolve,
        format=record.format,
        inferred_schema=InferredSchema.model_validate(
            {
                **schema.described(),
                "fingerprint": schema.fingerprint,
                "columns": list(schema.columns),
                "renamed": schema.renamed,
            }
        ),
        **state.model_dump(),
        **extra,
    )


@dataclass(frozen=True)
class Answered:
    """A receipt and the status it is answered with."""

    receipt: IngestAnswer
    status_code: int
