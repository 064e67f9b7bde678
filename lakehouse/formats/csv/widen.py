"""Types from the whole file: when values past the sampled rows do not fit the type the
sample chose, a file that defines its dataset's columns (its first upload, or a replace)
has those columns widened, BIGINT -> DECIMAL or DOUBLE -> VARCHAR, instead of losing the
rows to rejects.

The conversion says which columns failed (DuckDB's CAST rejects); one more read of the file
profiles only those columns, by the same rules as the sample (`types`), and
the file is converted again. Files whose sample told the truth pay nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import duckdb

from lakehouse.duck import sql_identifier
from lakehouse.formats.csv.convert import read_csv_sql
from lakehouse.formats.csv.schema import CsvSchema
from lakehouse.formats.csv.types import DECIMAL_DIGITS, FAST_DECIMAL_DIGITS, Column

_INTEGER = r"[+-]?[0-9]+"
_FIXED = r"[+-]?([0-9]+\.[0-9]*|\.[0-9]+)"
_EXPONENT = r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)[eE][+-]?[0-9]+"
_DATE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
_TIMESTAMP = r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?"

# Each kind as a SQL condition on a value `{v}` (never NULL here), as `value_kind` says.
_NOT_PADDED = "NOT regexp_full_match({v}, '[+-]?0[0-9]+')"  # leading zeros: text
_KINDS = {
    "boolean": "lower({v}) IN ('true', 'false')",
    "integer": f"regexp_full_match({{v}}, '{_INTEGER}') AND {_NOT_PADDED}"
    " AND try_cast({v} AS BIGINT) IS NOT NULL",
    "decimal": f"(regexp_full_match({{v}}, '{_FIXED}') OR (regexp_full_match({{v}}, '{_INTEGER}')"
    f" AND {_NOT_PADDED} AND try_cast({{v}} AS BIGINT) IS NULL))",
    "exponent": f"regexp_full_match({{v}}, '{_EXPONENT}') AND isfinite(try_cast({{v}} AS DOUBLE))",
    "date": f"regexp_full_match({{v}}, '{_DATE}') AND try_cast({{v}} AS DATE) IS NOT NULL",
    "timestamp": f"regexp_full_match({{v}}, '{_TIMESTAMP}')"
    " AND try_cast({v} AS TIMESTAMP) IS NOT NULL",
}
_MAX_NUMBER_CHARS = 100


@dataclass(frozen=True)
class Profile:
    """What every value of one column is, over the whole file."""

    counts: dict[str, int]  # kind -> values of that kind ("text": none of the others)
    examples: dict[str, str]  # kind -> one value of it
    int_digits: int
    scale: int

    def widened(self, column: Column, sampled_through: int) -> Column:
        """`column` with a type that holds every value, and why."""
        kinds = {kind for kind, n in self.counts.items() if n}
        type_ = _type_of(kinds, self.int_digits, self.scale)
        new = next((k for k in ("text", "exponent", "decimal", "timestamp") if k in kinds), "")
        example = self.examples.get(new) or next(iter(self.examples.values()), "")
        label = "string" if type_ == "VARCHAR" else type_.split("(")[0].lower()
        return Column(
            column.name,
            type_,
            f"{label}: widened from {column.type} over the whole file: values past line "
            f"{sampled_through}, the last the sample read, do not fit it, e.g. {example!r}",
        )


def _type_of(kinds: set[str], int_digits: int, scale: int) -> str:
    if "text" in kinds or not kinds:
        return "VARCHAR"
    if kinds <= {"integer", "decimal", "exponent"}:
        if "exponent" in kinds:
            return "DOUBLE"
        if kinds == {"integer"}:
            return "BIGINT"
        for precision in (FAST_DECIMAL_DIGITS, DECIMAL_DIGITS):
            if int_digits <= precision - scale:
                return f"DECIMAL({precision},{scale})"
        return "VARCHAR"
    if kinds <= {"date", "timestamp"}:
        return "TIMESTAMP" if "timestamp" in kinds else "DATE"
    if kinds == {"boolean"}:
        return "BOOLEAN"
    return "VARCHAR"


def profile(
    con: duckdb.DuckDBPyConnection, source_url: str, schema: CsvSchema, names: list[str]
) -> dict[str, Profile]:
    """Profile columns `names` of the file over all its rows (as text: one read)."""
    as_text = replace(schema, columns=tuple(Column(c.name, "VARCHAR", "") for c in schema.columns))
    source = read_csv_sql(source_url, as_text, rejects="ignore")
    parts = [part for name in names for part in _profile_sql(sql_identifier(name))]
    row = con.execute(f"SELECT {', '.join(parts)} FROM {source}").fetchone()
    assert row is not None
    kinds = [*_KINDS, "text"]
    width = 2 * len(kinds) + 2
    profiles = {}
    for at, name in enumerate(names):
        values = row[at * width : (at + 1) * width]
        counts = {kind: int(values[2 * i]) for i, kind in enumerate(kinds)}
        examples = {kind: str(values[2 * i + 1]) for i, kind in enumerate(kinds) if counts[kind]}
        profiles[name] = Profile(counts, examples, int(values[-2]), int(values[-1]))
    return profiles


def _profile_sql(v: str) -> list[str]:
    """The aggregates `profile` reads for the column `v`: per kind a count and an example,
    then the most digits before and after the point among its numbers."""
    conditions = {kind: "(" + cond.replace("{v}", v) + ")" for kind, cond in _KINDS.items()}
    conditions["text"] = (
        f"(NOT ({' OR '.join(conditions.values())}) OR length({v}) > {_MAX_NUMBER_CHARS})"
    )
    parts = []
    for cond in conditions.values():
        parts += [f"count_if({cond})", f"any_value({v}) FILTER (WHERE {cond})"]
    number = f"({conditions['integer']} OR {conditions['decimal']})"
    whole = f"ltrim(split_part(ltrim({v}, '+-'), '.', 1), '0')"
    parts.append(f"coalesce(max(length({whole})) FILTER (WHERE {number}), 0)")
    parts.append(f"coalesce(max(length(split_part({v}, '.', 2))) FILTER (WHERE {number}), 0)")
    return parts


def widen(
    con: duckdb.DuckDBPyConnection,
    source_url: str,
    schema: CsvSchema,
    names: list[str],
    sampled_through: int,
) -> CsvSchema:
    """`schema` with columns `names` widened to hold every value of the file."""
    found = profile(con, source_url, schema, names)
    columns = tuple(
        found[c.name].widened(c, sampled_through) if c.name in found else c for c in schema.columns
    )
    return replace(schema, columns=columns)
