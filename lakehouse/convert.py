"""CSV in the object store -> one Parquet object in the object store, with DuckDB.

DuckDB's CSV reader and Parquet writer stream: memory stays bounded by DuckDB's
`memory_limit`, not by the file's size. The CSV is read with the schema inferred at upload
time (no second sniffing pass), so every ingest of a dataset gets exactly its contract.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from lakehouse.csvschema import CsvSchema
from lakehouse.duck import sql_string


class ConversionError(ValueError):
    """The CSV did not read with its inferred schema (a value that does not fit, a bad row)."""


@dataclass(frozen=True)
class Converted:
    rows: int


def read_csv_sql(source_url: str, schema: CsvSchema) -> str:
    """A `read_csv(...)` call that reads `source_url` exactly as `schema` says."""
    columns = ", ".join(f"{sql_string(c.name)}: {sql_string(c.type)}" for c in schema.columns)
    return (
        f"read_csv({sql_string(source_url)}, header = true, auto_detect = false,"
        f" delim = {sql_string(schema.delimiter)}, quote = '\"', escape = '\"',"
        f" nullstr = '', columns = {{{columns}}})"
    )


def csv_to_parquet(
    con: duckdb.DuckDBPyConnection, source_url: str, target_url: str, schema: CsvSchema
) -> Converted:
    query = f"SELECT * FROM {read_csv_sql(source_url, schema)}"
    try:
        result = con.execute(
            f"COPY ({query}) TO {sql_string(target_url)}"
            " (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880)"
        ).fetchone()
    except duckdb.ConversionException as exc:
        raise ConversionError(str(exc)) from exc
    except duckdb.InvalidInputException as exc:
        raise ConversionError(str(exc)) from exc
    return Converted(rows=int(result[0]) if result else 0)
