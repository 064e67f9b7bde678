"""CSV in the object store -> one Parquet object in the object store, with DuckDB.

DuckDB's CSV reader and Parquet writer stream: memory stays bounded by DuckDB's
`memory_limit`, not by the file's size. The CSV is read with the schema inferred at upload
time (no second sniffing pass), so every ingest of a dataset gets exactly its contract.
Rows that do not parse (a wrong number of fields, a value that does not fit its column)
are set aside in DuckDB's `reject_errors` table instead of failing the whole file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import duckdb

from lakehouse.csvschema import CsvSchema
from lakehouse.duck import sql_string

REJECT_COLUMNS = (
    "line, column_name, CAST(error_type AS VARCHAR) AS error_type, error_message, csv_line"
)


class ConversionError(ValueError):
    """The CSV could not be read at all (not the odd bad row: those are rejected)."""


@dataclass(frozen=True)
class Converted:
    rows: int
    rejected: int
    samples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rejected_share(self) -> float:
        return self.rejected / max(self.rows + self.rejected, 1)


def read_csv_sql(source_url: str, schema: CsvSchema) -> str:
    """A `read_csv(...)` call that reads `source_url` exactly as `schema` says."""
    columns = ", ".join(f"{sql_string(c.name)}: {sql_string(c.type)}" for c in schema.columns)
    return (
        f"read_csv({sql_string(source_url)}, header = true, auto_detect = false,"
        f" delim = {sql_string(schema.delimiter)}, quote = '\"', escape = '\"',"
        f" nullstr = '', columns = {{{columns}}}, store_rejects = true)"
    )


def csv_to_parquet(
    con: duckdb.DuckDBPyConnection, source_url: str, target_url: str, schema: CsvSchema
) -> Converted:
    """Convert; `con` must be fresh (its `reject_errors` table then holds this file's only)."""
    query = f"SELECT * FROM {read_csv_sql(source_url, schema)}"
    try:
        result = con.execute(
            f"COPY ({query}) TO {sql_string(target_url)}"
            " (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880)"
        ).fetchone()
    except (duckdb.ConversionException, duckdb.InvalidInputException) as exc:
        raise ConversionError(str(exc)) from exc
    rejected = con.execute("SELECT count(DISTINCT line) FROM reject_errors").fetchone()
    samples = con.execute(
        f"SELECT {REJECT_COLUMNS} FROM reject_errors ORDER BY line LIMIT 10"
    ).fetchall()
    names = ["line", "column", "error_type", "error", "csv_line"]
    return Converted(
        rows=int(result[0]) if result else 0,
        rejected=int(rejected[0]) if rejected else 0,
        samples=[dict(zip(names, row, strict=True)) for row in samples],
    )


def write_rejects(con: duckdb.DuckDBPyConnection, target_url: str) -> None:
    """Write the rejected rows of the last conversion on `con`, with line and reason."""
    con.execute(
        f"COPY (SELECT {REJECT_COLUMNS} FROM reject_errors ORDER BY line)"
        f" TO {sql_string(target_url)} (FORMAT parquet)"
    )
