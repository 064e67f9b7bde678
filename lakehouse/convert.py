"""CSV in the object store -> one Parquet object in the object store, with DuckDB.

DuckDB's CSV reader and Parquet writer stream: memory stays bounded by DuckDB's
`memory_limit`, not by the file's size. The CSV is read with the schema inferred at upload
time (no second sniffing pass), so every ingest of a dataset gets exactly its contract.
The reader runs in strict mode: a row that does not parse (a wrong number of fields, a
value that does not fit its column) is set aside in DuckDB's `reject_errors` table instead
of failing the whole file, and never silently cut or padded. The rejected rows are kept
one per line, with every reason DuckDB gave for it (`REJECT_SCHEMA`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import duckdb

from lakehouse.csvschema import CsvSchema
from lakehouse.duck import sql_string

# The rejected rows of a file, one per line: the `<name>__rejects` view's columns. Joined
# texts rather than lists, so older rejects objects (one row per error) read alongside.
REJECT_SCHEMA: tuple[tuple[str, str], ...] = (
    ("line", "UBIGINT"),
    ("column_name", "VARCHAR"),  # the columns at fault, comma-separated (NULL: the row's shape)
    ("error_type", "VARCHAR"),  # e.g. "CAST, TOO MANY COLUMNS"
    ("error_message", "VARCHAR"),  # every reason, "; "-separated
    ("csv_line", "VARCHAR"),
)

# One row per (line, kind of error, column): DuckDB reports a row with two extra fields as
# two TOO MANY COLUMNS errors; the last one counts them all.
_ERRORS_BY_LINE = """
    SELECT line, column_name, CAST(error_type AS VARCHAR) AS error_type,
           arg_max(error_message, column_idx) AS error_message,
           min(column_idx) AS column_idx, any_value(csv_line) AS csv_line
    FROM reject_errors GROUP BY ALL
"""
REJECTS_BY_LINE = f"""
    SELECT CAST(line AS UBIGINT) AS line,
           string_agg(column_name, ', ' ORDER BY column_idx) AS column_name,
           string_agg(DISTINCT error_type, ', ' ORDER BY error_type) AS error_type,
           string_agg(error_message, '; ' ORDER BY column_idx) AS error_message,
           any_value(csv_line) AS csv_line
    FROM ({_ERRORS_BY_LINE}) GROUP BY line ORDER BY line
"""

# Samples of rejected rows go into the run's failure and the receipt: keep them short
# (a rejected line may be megabytes long; the rejects object keeps it whole).
SAMPLE_CHARS = 1000

# A file DuckDB refuses as a whole fails the same way every time; only these are faults
# of the moment (the object store, memory, an interrupt) worth retrying.
_TRANSIENT = (duckdb.IOException, duckdb.OutOfMemoryException, duckdb.InterruptException)
_DETERMINISTIC = (
    duckdb.ConversionException,
    duckdb.InvalidInputException,
    duckdb.BinderException,
    duckdb.ParserException,
)


class ConversionError(ValueError):
    """The CSV could not be read at all (not the odd bad row: those are rejected).

    `retryable` is False when the same file would fail the same way again (fix the file),
    True for a fault of the moment (the object store unreachable, memory).
    """

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class Converted:
    rows: int
    rejected: int
    samples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rejected_share(self) -> float:
        return self.rejected / max(self.rows + self.rejected, 1)


# How every dataset object is written (one converted file is uploaded as it is).
PARQUET_FORMAT = "FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880"


def read_csv_sql(source_url: str, schema: CsvSchema) -> str:
    """A `read_csv(...)` call that reads `source_url` exactly as `schema` says."""
    columns = ", ".join(f"{sql_string(c.name)}: {sql_string(c.type)}" for c in schema.columns)
    return (
        f"read_csv({sql_string(source_url)}, header = true, auto_detect = false,"
        f" delim = {sql_string(schema.delimiter)}, quote = '\"', escape = '\"',"
        f" nullstr = '', columns = {{{columns}}}, strict_mode = true, store_rejects = true)"
    )


def csv_to_parquet(
    con: duckdb.DuckDBPyConnection, source_url: str, target_url: str, schema: CsvSchema
) -> Converted:
    """Convert; `con` must be fresh (its `reject_errors` table then holds this file's only)."""
    query = f"SELECT * FROM {read_csv_sql(source_url, schema)}"
    try:
        result = con.execute(
            f"COPY ({query}) TO {sql_string(target_url)} ({PARQUET_FORMAT})"
        ).fetchone()
    except _DETERMINISTIC as exc:
        raise ConversionError(f"{exc}; fix the file and upload it again", retryable=False) from exc
    except _TRANSIENT as exc:
        raise ConversionError(str(exc), retryable=True) from exc
    rejected = con.execute("SELECT count(DISTINCT line) FROM reject_errors").fetchone()
    samples = con.execute(
        f"SELECT * REPLACE (left(error_message, {SAMPLE_CHARS}) AS error_message,"
        f" left(csv_line, {SAMPLE_CHARS}) AS csv_line) FROM ({REJECTS_BY_LINE})"
        " ORDER BY line LIMIT 10"
    ).fetchall()
    names = ["line", "column", "error_type", "error", "csv_line"]
    return Converted(
        rows=int(result[0]) if result else 0,
        rejected=int(rejected[0]) if rejected else 0,
        samples=[dict(zip(names, row, strict=True)) for row in samples],
    )


def write_rejects(con: duckdb.DuckDBPyConnection, target_url: str) -> None:
    """Write the rejected rows of the last conversion on `con`: one per line, all reasons."""
    con.execute(f"COPY ({REJECTS_BY_LINE}) TO {sql_string(target_url)} (FORMAT parquet)")
