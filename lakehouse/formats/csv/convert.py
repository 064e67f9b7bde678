"""CSV in the object store -> one Parquet object in the object store, with DuckDB, exactly.

DuckDB's CSV reader and Parquet writer stream: memory stays bounded by DuckDB's
`memory_limit`, not by the file's size. The CSV is read with the schema inferred at upload
time (no second sniffing pass), so every ingest of a dataset gets exactly its contract.

Nothing is changed on the way. The reader runs in strict mode: a row that does not parse
(a wrong number of fields) is set aside in DuckDB's `reject_errors` table instead of failing
the whole file. DuckDB's casts from text are lenient and would change values silently:
`3.75` into a BIGINT is 4, `1.234` into a DECIMAL(18,2) is 1.23, a timestamp into a DATE
loses its time, a zone offset is dropped. So BIGINT, DECIMAL, DATE and TIMESTAMP columns
are read as text and cast here; a value that does not fit its type exactly keeps its row
out of the object, as a rejected row with the reason (`value_rejects`). The rejected rows
are kept one per line, with every reason (`REJECT_SCHEMA`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import duckdb

from lakehouse.duck import sql_identifier, sql_string
from lakehouse.formats.csv.accounting import LineAccount, lines_past_header, read_records
from lakehouse.formats.csv.schema import CsvSchema
from lakehouse.formats.csv.types import Column

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
_READER_REJECTS = f"""
    SELECT CAST(line AS UBIGINT) AS line,
           string_agg(column_name, ', ' ORDER BY column_idx) AS column_name,
           string_agg(DISTINCT error_type, ', ' ORDER BY error_type) AS error_type,
           string_agg(error_message, '; ' ORDER BY column_idx) AS error_message,
           any_value(csv_line) AS csv_line
    FROM ({_ERRORS_BY_LINE}) GROUP BY line
"""
# Every rejected row of the last conversion on a connection: the reader's, and the rows
# whose values did not fit exactly, by line.
REJECTS_BY_LINE = f"""
    SELECT * FROM ({_READER_REJECTS}) UNION ALL SELECT * FROM value_rejects
    ORDER BY line NULLS LAST
"""

# Types whose cast from text DuckDB makes lenient: read as text, cast exactly here.
_LENIENT = ("BIGINT", "DATE", "TIMESTAMP", "DECIMAL(")

# Samples of rejected rows go into the run's failure and the receipt: keep them short
# (a rejected line may be megabytes long; the rejects object keeps it whole).
SAMPLE_CHARS = 1000

# A file DuckDB refuses as a whole fails the same way every time; only these are faults
# of the moment (the object store, memory, an interrupt) worth retrying.
TRANSIENT = (duckdb.IOException, duckdb.OutOfMemoryException, duckdb.InterruptException)
DETERMINISTIC = (
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
    # Columns with values that did not fit their type past the line its inference sampled
    # through (a first upload widens them).
    misfits: tuple[str, ...] = ()
    # Where the file's data lines went: every one a row or a reject, when `balanced`.
    account: LineAccount = LineAccount(0, 0, 0, "not counted")

    @property
    def rejected_share(self) -> float:
        return self.rejected / max(self.rows + self.rejected, 1)


# How every dataset object is written (one converted file is uploaded as it is).
PARQUET_FORMAT = "FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880"

# The reader's buffer: DuckDB's default (32 MiB) leaves one of two threads idle for much of
# a file of tens of MB; 16 MiB buffers shared the 500k-row sample file (71 MB in the store)
# between them and read it ~0.1 s (10%) faster; larger files are unaffected.
READ_BUFFER_BYTES = 16 * 1024 * 1024


def read_csv_sql(
    source_url: str | Sequence[str], schema: CsvSchema, *, rejects: str = "store"
) -> str:
    """A `read_csv(...)` call that reads `source_url` (or several files, one after another)
    exactly as `schema` says; rejected rows are stored in `reject_errors`
    (`rejects="store"`) or skipped (`"ignore"`)."""
    if isinstance(source_url, str):
        source = sql_string(source_url)
    else:
        source = "[" + ", ".join(sql_string(url) for url in source_url) + "]"
    columns = ", ".join(f"{sql_string(c.name)}: {sql_string(c.type)}" for c in schema.columns)
    nulls = ", ".join(sql_string(n) for n in schema.nulls)
    handling = "store_rejects = true" if rejects == "store" else "ignore_errors = true"
    return (
        f"read_csv({source}, header = {str(schema.header).lower()},"
        f" auto_detect = false, delim = {sql_string(schema.delimiter)},"
        f" quote = {sql_string(schema.quote)}, escape = {sql_string(schema.escape)},"
        f" skip = {int(schema.skip)}, comment = {sql_string(schema.comment)},"
        f" encoding = {sql_string(schema.encoding)}, nullstr = [{nulls}],"
        f" columns = {{{columns}}}, strict_mode = true, {handling},"
        f" buffer_size = {READ_BUFFER_BYTES})"
    )


def lenient(type_: str) -> bool:
    """Whether DuckDB's cast from text to `type_` may change a value instead of failing."""
    return type_.startswith(_LENIENT)


def fits_exactly(value: str, type_: str) -> str:
    """SQL: whether the text `value` (an expression, not NULL) is exactly a `type_`."""
    cast = f"TRY_CAST({value} AS {type_})"
    if type_ == "BIGINT" or type_.startswith("DECIMAL("):
        # A text that is its value's own canonical spelling is exact: one cast and compare
        # settles nearly every value, and DuckDB evaluates the slower rule only for the rest
        # (the rule alone cost the 500k-row sample file ~0.15 s of its conversion).
        # Never NULL (NOT of it finds the rejects), and no function around the OR: DuckDB
        # evaluates a bare OR's second half only for the rows its first half left out.
        canonical = f"({cast} IS NOT NULL AND CAST({cast} AS VARCHAR) = {value})"
        return f"({canonical} OR {_exact_by_rule(value, type_, cast)})"
    return _exact_by_rule(value, type_, cast)


def _exact_by_rule(value: str, type_: str, cast: str) -> str:
    if type_ == "BIGINT":  # no point, exponent, hex, underscore, space or leading zero
        return (
            f"({cast} IS NOT NULL"
            f" AND (CAST({cast} AS VARCHAR) = ltrim({value}, '+') OR {value} = '-0'))"
        )
    if type_ == "DATE":  # no time of day
        return f"({cast} IS NOT NULL AND length({value}) = 10)"
    if type_ == "TIMESTAMP":  # no zone or offset
        return (
            f"({cast} IS NOT NULL AND length({value}) <= 26 AND NOT contains({value}, '+')"
            f" AND NOT contains(upper({value}), 'Z')"
            f" AND (length({value}) <= 19 OR substr({value}, 20, 1) = '.'))"
        )
    scale = int(type_.rstrip(")").split(",")[1])  # DECIMAL(p,s): at most s decimals
    return (
        f"({cast} IS NOT NULL AND NOT regexp_matches({value}, '[eE_xX]')"
        f" AND (strpos({value}, '.') = 0 OR length({value}) - strpos({value}, '.') <= {scale}))"
    )


def _as_read(schema: CsvSchema) -> CsvSchema:
    """The schema the reader is given: lenient types as text."""
    columns = tuple(
        Column(c.name, "VARCHAR", c.reason) if lenient(c.type) else c for c in schema.columns
    )
    return replace(schema, columns=columns)


def _fits(column: Column) -> str:
    v = sql_identifier(column.name)
    return f"({v} IS NULL OR {fits_exactly(v, column.type)})"


def _exact_rows(source: str, schema: CsvSchema) -> str:
    """The rows whose every value fits its type exactly, cast."""
    select = ", ".join(
        f"TRY_CAST({sql_identifier(c.name)} AS {c.type}) AS {sql_identifier(c.name)}"
        if lenient(c.type)
        else sql_identifier(c.name)
        for c in schema.columns
    )
    checks = [_fits(c) for c in schema.columns if lenient(c.type)]
    where = f" WHERE {' AND '.join(checks)}" if checks else ""
    return f"SELECT {select} FROM {source}{where}"


def stored_rows_sql(source_url: str, schema: CsvSchema) -> str:
    """SQL for the rows a conversion of `source_url` stores (rejected rows left out)."""
    return _exact_rows(read_csv_sql(source_url, _as_read(schema), rejects="ignore"), schema)


def csv_to_parquet(
    con: duckdb.DuckDBPyConnection,
    source_url: str,
    target_url: str,
    schema: CsvSchema,
    *,
    lines: int | None = None,
    read_bytes: Callable[[], Iterable[bytes]] | None = None,
) -> Converted:
    """Convert; `con` must be fresh (its `reject_errors` table then holds this file's only).

    Every data line is accounted for (`Converted.account`): the file's physical `lines`
    (counted as it was uploaded; None: not counted) prove it with no more reading when every
    line past the header is one record. Otherwise one pass over its bytes (`read_bytes`; by
    default the local file at `source_url`) counts the records, and only if rows are still
    missing (left out: a value did not fit) do one more read and pass find them.
    """
    read_bytes = read_bytes or partial(_local_chunks, source_url)
    source = read_csv_sql(source_url, _as_read(schema))
    try:
        result = con.execute(
            f"COPY ({_exact_rows(source, schema)}) TO {sql_string(target_url)} ({PARQUET_FORMAT})"
        ).fetchone()
        rows = int(result[0]) if result else 0
        read_rejected = _count(con, "SELECT count(DISTINCT line) FROM reject_errors")
        data_lines, counted_by = lines_past_header(schema, lines), "line ends"
        if data_lines is None or rows + read_rejected != data_lines:
            data_lines, counted_by = read_records(read_bytes(), schema).count, "reading"
        if read_rejected == 0 and rows == data_lines:
            # Every line a row (most files): no rejects to describe, no more statements.
            return Converted(rows, 0, account=LineAccount(data_lines, rows, 0, counted_by))
        _no_value_rejects(con)
        if rows + read_rejected != data_lines:
            ignoring = read_csv_sql(source_url, _as_read(schema), rejects="ignore")
            if _find_value_rejects(con, ignoring, schema):
                _place_value_rejects(con, read_bytes(), schema)
    except DETERMINISTIC as exc:
        raise ConversionError(f"{exc}; fix the file and upload it again", retryable=False) from exc
    except TRANSIENT as exc:
        raise ConversionError(str(exc), retryable=True) from exc
    rejected = read_rejected + _count(con, "SELECT count(*) FROM value_rejects")
    return Converted(
        rows=rows,
        rejected=rejected,
        samples=_samples(con),
        misfits=_misfits(con, schema.sampled_through),
        account=LineAccount(data_lines, rows, rejected, counted_by),
    )


def csv_files_to_parquet(
    con: duckdb.DuckDBPyConnection,
    source_urls: Sequence[str],
    target_url: str,
    schema: CsvSchema,
    lines: Sequence[int | None],
) -> list[Converted] | None:
    """Several files read as `schema` in one read, their rows in one file in the order
    given (`con` fresh, as for `csv_to_parquet`): each file's `Converted`; or None when a
    line of any of them did not become a row, or the read failed (converted one by one,
    each then says which lines and why, or which file is gone, or that the store is).

    Every file's physical `lines` (counted as it was uploaded) prove its account: with no
    line rejected and no row left out, no file can give more rows than its data lines, so
    rows equal to their sum means every file's lines are each a row."""
    data_lines = [lines_past_header(schema, n) for n in lines]
    if any(n is None for n in data_lines):
        return None
    source = read_csv_sql(source_urls, _as_read(schema))
    try:
        result = con.execute(
            f"COPY ({_exact_rows(source, schema)}) TO {sql_string(target_url)} ({PARQUET_FORMAT})"
        ).fetchone()
        rejected = _count(con, "SELECT count(*) FROM reject_errors")
    except (*DETERMINISTIC, *TRANSIENT):
        return None
    rows = int(result[0]) if result else 0
    counted = [n for n in data_lines if n is not None]
    if rejected or rows != sum(counted):
        return None
    return [Converted(n, 0, account=LineAccount(n, n, 0, "line ends")) for n in counted]


def _count(con: duckdb.DuckDBPyConnection, query: str) -> int:
    found = con.execute(query).fetchone()
    return int(found[0]) if found and found[0] is not None else 0


def _no_value_rejects(con: duckdb.DuckDBPyConnection) -> None:
    """An empty `value_rejects` table, as REJECTS_BY_LINE reads it."""
    columns = ", ".join(f"{name} {type_}" for name, type_ in REJECT_SCHEMA)
    con.execute(f"CREATE OR REPLACE TEMP TABLE value_rejects ({columns})")


def _find_value_rejects(con: duckdb.DuckDBPyConnection, source: str, schema: CsvSchema) -> bool:
    """The rows the conversion left out because a value did not fit exactly, as rejects:
    which columns, why, and the row's values (and its place among the readable rows,
    `row`); whether there are any."""
    checked = [c for c in schema.columns if lenient(c.type)]
    if not checked:
        return False
    names = ", ".join(f"CASE WHEN NOT {_fits(c)} THEN {sql_string(c.name)} END" for c in checked)
    reasons = ", ".join(
        f"CASE WHEN NOT {_fits(c)} THEN 'value ' || {_quoted(sql_identifier(c.name))} || "
        f"' is not exactly a {c.type}' END"
        for c in checked
    )
    values = ", ".join(
        f"coalesce(CAST({sql_identifier(c.name)} AS VARCHAR), '')" for c in schema.columns
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE value_rejects AS "
        f"SELECT row, concat_ws(', ', {names}) AS column_name,"
        f" 'CAST' AS error_type, concat_ws('; ', {reasons}) AS error_message,"
        f" concat_ws({sql_string(schema.delimiter)}, {values}) AS csv_line"
        f" FROM (SELECT row_number() OVER () AS row, * FROM {source})"
        f" WHERE NOT ({' AND '.join(_fits(c) for c in checked)})"
    )
    if _count(con, "SELECT count(*) FROM value_rejects"):
        return True
    _no_value_rejects(con)
    return False


def _place_value_rejects(
    con: duckdb.DuckDBPyConnection, chunks: Iterable[bytes], schema: CsvSchema
) -> None:
    """Give each row left out its line: the line where the n-th readable record starts
    (records the reader rejected, whose lines it reports, are not readable)."""
    rows = [int(r) for (r,) in con.execute("SELECT row FROM value_rejects").fetchall()]
    rejected = [
        int(n) for (n,) in con.execute("SELECT DISTINCT line FROM reject_errors").fetchall()
    ]
    found = read_records(chunks, schema, rows=rows, rejected_lines=rejected).lines_of_rows
    con.execute("CREATE OR REPLACE TEMP TABLE reject_lines (row BIGINT, line UBIGINT)")
    if found:
        con.executemany("INSERT INTO reject_lines VALUES (?, ?)", list(found.items()))
    con.execute(
        "CREATE OR REPLACE TEMP TABLE value_rejects AS"
        " SELECT l.line, v.column_name, v.error_type, v.error_message, v.csv_line"
        " FROM value_rejects v LEFT JOIN reject_lines l USING (row)"
    )


def _local_chunks(path: str) -> Iterator[bytes]:
    with open(path, "rb") as source:
        while chunk := source.read(1024 * 1024):
            yield chunk


def _quoted(value: str) -> str:
    """SQL: `value` in single quotes, for a message."""
    return f"(chr(39) || {value} || chr(39))"


def _samples(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    samples = con.execute(
        f"SELECT * REPLACE (left(error_message, {SAMPLE_CHARS}) AS error_message,"
        f" left(csv_line, {SAMPLE_CHARS}) AS csv_line) FROM ({REJECTS_BY_LINE}) LIMIT 10"
    ).fetchall()
    names = ["line", "column", "error_type", "error", "csv_line"]
    return [dict(zip(names, row, strict=True)) for row in samples]


def _misfits(con: duckdb.DuckDBPyConnection, sampled_through: int) -> tuple[str, ...]:
    """Columns with values past line `sampled_through` that did not fit their type, by the
    reader or the exact cast (a value with no line known counts as past it)."""
    found = con.execute(
        "SELECT DISTINCT column_name FROM reject_errors"
        " WHERE CAST(error_type AS VARCHAR) = 'CAST' AND column_name IS NOT NULL"
        f" AND line > {int(sampled_through)}"
        " UNION SELECT DISTINCT unnest(string_split(column_name, ', ')) FROM value_rejects"
        f" WHERE coalesce(line, {2**62}) > {int(sampled_through)}"
    ).fetchall()
    return tuple(sorted(str(name) for (name,) in found if name))


def write_rejects(con: duckdb.DuckDBPyConnection, target_url: str) -> None:
    """Write the rejected rows of the last conversion on `con`: one per line, all reasons."""
    con.execute(f"COPY ({REJECTS_BY_LINE}) TO {sql_string(target_url)} (FORMAT parquet)")
