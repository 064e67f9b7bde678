"""What a version decides about an ingest that it does not apply, and why, in words that
say what to do."""

from __future__ import annotations

from lakehouse.formats.csv.accounting import LineAccount
from lakehouse.formats.csv.convert import Converted
from lakehouse.formats.csv.schema import CsvSchema
from lakehouse.ingest.records import IngestRecord
from lakehouse.versions.commits import IngestError, Outcome


def failed(entry: IngestRecord, message: str) -> Outcome:
    return Outcome(
        ingest_id=entry.ingest_id,
        seq=entry.seq,
        status="failed",
        error=IngestError(message=f"{message}; dataset {entry.dataset!r} is unchanged by it"),
    )


def too_many_rejects(
    entry: IngestRecord, converted: Converted, allowed: float, schema: CsvSchema
) -> Outcome:
    total = converted.rows + converted.rejected
    return Outcome(
        ingest_id=entry.ingest_id,
        seq=entry.seq,
        status="failed",
        error=IngestError(
            message=(
                f"{converted.rejected} of {total} rows ({converted.rejected_share:.2%}) could "
                f"not be read, more than the {allowed:.2%} allowed: fix them (samples below, "
                f"with line numbers) and upload again{_dialect_hint(converted, schema)}; "
                f"dataset {entry.dataset!r} is unchanged by it"
            ),
            rejected_rows=converted.rejected,
            total_rows=total,
            samples=converted.samples,
        ),
    )


def _dialect_hint(converted: Converted, schema: CsvSchema) -> str:
    """Rows of the wrong shape may mean another dialect: say how the file was read, and
    which parameters would read it otherwise."""
    shapes = {"TOO MANY COLUMNS", "MISSING COLUMNS", "UNQUOTED VALUE", "INVALID STATE"}
    if not any(set(str(s.get("error_type", "")).split(", ")) & shapes for s in converted.samples):
        return ""
    return (
        f" (it was read with delimiter {schema.delimiter!r}, quote {schema.quote!r}, escape "
        f"{schema.escape!r}, {schema.skip} lines skipped: if the file is written otherwise, "
        "send delimiter=, quote=, escape= or skip=)"
    )


def lines_unaccounted(entry: IngestRecord, lines: LineAccount) -> Outcome:
    return failed(
        entry,
        f"of its {lines.data_lines} data lines, {lines.rows} were read as rows and "
        f"{lines.rejected} rejected: {lines.data_lines - lines.rows - lines.rejected} would "
        "vanish, so it is not applied; send its dialect explicitly (delimiter=, quote=, "
        "escape=, skip=, comment=)",
    )
