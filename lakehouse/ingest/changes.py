"""What a merge or delete upload must hold before it is committed: the dataset's key (given
with the first keyed upload, remembered after; another key is a conflict), key columns in
the file, and, read once its bytes are in the store but before the commit point, every key
present and given once (unless `dedup` says which row to keep)."""

from __future__ import annotations

from collections.abc import Sequence

import duckdb

from lakehouse.duck import s3_connection, sql_identifier
from lakehouse.errors import Conflict, InvalidInput, Unavailable
from lakehouse.formats.csv.convert import stored_rows_sql
from lakehouse.formats.csv.schema import CsvSchema
from lakehouse.formats.csv.types import Column
from lakehouse.formats.evolution import by_name
from lakehouse.formats.structured import Format, reader_sql
from lakehouse.ingest.records import DELETED, Dedup, Mode
from lakehouse.manifest import Manifest
from lakehouse.settings import S3Config

# A refusal names at most this many keys.
SHOWN_KEYS = 5
# The key check reads the landed file in the API process: a bounded share of its memory.
CHECK_MEMORY = "512MB"


class KeyConflict(Conflict):
    """A merge or delete by other columns than the dataset's key."""

    def __init__(self, dataset: str, asked: Sequence[str], key: Sequence[str]) -> None:
        self.dataset, self.asked, self.key = dataset, list(asked), list(key)
        super().__init__(
            f"dataset {dataset!r} matches rows by key={','.join(key)}, not "
            f"key={','.join(asked)}: send key={','.join(key)} (or none: it is remembered)"
        )

    def detail(self) -> object:
        return {"message": str(self), "dataset": self.dataset, "key": self.key, "asked": self.asked}


class RepeatedKeys(Conflict):
    """A key occurs more than once in a merge or delete file, and no `dedup` was asked."""

    def __init__(self, key: Sequence[str], examples: list[object], count: int) -> None:
        self.key, self.examples, self.count = list(key), examples, count
        super().__init__(
            f"{count} keys occur more than once in the file (e.g. {examples}): send each key "
            "once, or dedup=last (the last row of a key wins) or dedup=first"
        )

    def detail(self) -> object:
        return {
            "message": str(self),
            "key": self.key,
            "repeated": self.count,
            "examples": self.examples,
        }


def resolve_key(
    dataset: str, mode: Mode, asked: Sequence[str], current: Manifest | None
) -> list[str]:
    """The key a keyed upload matches rows by: the one asked, or the dataset's."""
    remembered = list(current.key) if current is not None else []
    if asked and remembered and list(asked) != remembered:
        raise KeyConflict(dataset, asked, remembered)
    if mode == "delete" and (current is None or not current.columns):
        raise Conflict(f"dataset {dataset!r} has no rows to delete: it has no version yet")
    key = list(asked) or remembered
    if not key:
        raise InvalidInput(
            f"mode={mode} matches rows by a key, and dataset {dataset!r} has none yet: send "
            "key=<column> (or key=<column>,<column>), e.g. key=id; it is remembered once the "
            "first merge or delete with it is applied"
        )
    return key


def check_key_columns(schema: CsvSchema, key: Sequence[str]) -> None:
    """400 unless the file has every key column."""
    names = {c.name for c in schema.columns}
    if missing := [k for k in key if k not in names]:
        raise InvalidInput(
            f"the file has no column {', '.join(map(repr, missing))} of the key "
            f"{','.join(key)}: add it (its columns: {', '.join(sorted(names))})"
        )


def keyed_contract(schema: CsvSchema, current: Sequence[Column]) -> list[Column]:
    """The types a keyed file's columns should be read as: the dataset's, and BOOLEAN for
    `_deleted` (each taken only where the sampled values fit it)."""
    flag = Column(DELETED, "BOOLEAN", "boolean: marks a row as a delete of its key")
    return by_name(schema.columns, [*current, flag])


def check_deleted_flag(mode: Mode, schema: CsvSchema) -> None:
    """400 for a `_deleted` column that is not true/false, or in a delete file."""
    found = {c.name: c.type for c in schema.columns}
    if mode == "delete" and DELETED in found:
        raise InvalidInput(
            f"a delete file has no {DELETED} column: each of its rows is a key to delete "
            f"(send {DELETED} in a mode=merge file instead)"
        )
    if found.get(DELETED, "BOOLEAN") != "BOOLEAN":
        raise InvalidInput(
            f"column {DELETED} marks the rows of a merge that delete their key: its values "
            f"must be true or false (or empty), and they were read as {found[DELETED]}"
        )


def check_keys(
    s3: S3Config, url: str, fmt: Format, schema: CsvSchema, key: Sequence[str], dedup: Dedup
) -> None:
    """Read the landed file as a run will: 400 if a row has no value in a key column, 409
    if a key occurs twice and `dedup` is "none"."""
    rows = stored_rows_sql(url, schema) if fmt == "csv" else reader_sql(url, fmt, schema.columns)
    try:
        with s3_connection(s3, CHECK_MEMORY) as con:
            nulls, repeated, examples = key_faults(con, f"({rows})", key, dedup)
    except (duckdb.IOException, duckdb.OutOfMemoryException) as exc:  # the store, memory
        raise Unavailable(f"could not read the file's keys: {exc}; send it again") from exc
    except duckdb.InvalidInputException as exc:
        raise InvalidInput(f"the file's keys could not be read: {exc}") from exc
    if nulls:
        raise InvalidInput(
            f"{nulls} rows have no value in a key column ({','.join(key)}): every row of a "
            "merge or delete needs its key"
        )
    if repeated:
        raise RepeatedKeys(key, examples, repeated)


def key_faults(
    con: duckdb.DuckDBPyConnection, rows: str, key: Sequence[str], dedup: Dedup = "none"
) -> tuple[int, int, list[object]]:
    """Of the `rows` (a table or a parenthesized query): how many have no value in a key
    column, and (unless `dedup` keeps one row of each) how many keys occur more than once,
    with up to SHOWN_KEYS of them."""
    columns = [sql_identifier(k) for k in key]
    con.execute(f"CREATE OR REPLACE TEMP TABLE keys AS SELECT {', '.join(columns)} FROM {rows}")
    found = con.execute(
        f"SELECT count(*) FROM keys WHERE {' OR '.join(f'{c} IS NULL' for c in columns)}"
    ).fetchone()
    nulls = int(found[0]) if found else 0
    if dedup != "none":
        return nulls, 0, []
    repeated = con.execute(
        f"SELECT {', '.join(columns)}, count(*) OVER () FROM keys GROUP BY ALL "
        f"HAVING count(*) > 1 LIMIT {SHOWN_KEYS}"
    ).fetchall()
    examples = [r[0] if len(key) == 1 else list(r[:-1]) for r in repeated]
    return nulls, int(repeated[0][-1]) if repeated else 0, examples
