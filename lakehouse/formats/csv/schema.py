"""Infer a CSV's column types from its first bytes (its dialect: `sniff`), and explain
each choice (the types and their rules: `types`).

What DuckDB's reader (strict mode, `convert`) would refuse as a whole file, such as a
missing header or mixed line ends, is refused here, before anything is stored.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from lakehouse.formats.csv.dialect import LINE_ENDS, Dialect
from lakehouse.formats.csv.options import CsvOptions
from lakehouse.formats.csv.records import Record, records, unreadable
from lakehouse.formats.csv.sniff import sniff
from lakehouse.formats.csv.text import NotCsv, decode
from lakehouse.formats.csv.types import Column, Sample, column_for

__all__ = ["Column", "CsvSchema", "fingerprint", "infer_schema", "schema_diff"]


@dataclass(frozen=True)
class CsvSchema(Dialect):
    """A CSV file's dialect and columns: everything its conversion needs."""

    columns: tuple[Column, ...] = ()
    # Header names that had to change (blank or repeated), as {"column_3": "<blank>"}.
    renamed: dict[str, str] = field(default_factory=dict)
    # The line of the last row the types were inferred from (0: not known): a value past it
    # that does not fit is news to the inference.
    sampled_through: int = 0

    @property
    def fingerprint(self) -> str:
        return fingerprint([(c.name, c.type) for c in self.columns])


def fingerprint(columns: list[tuple[str, str]]) -> str:
    """A short, stable hash of the (name, type) list: equal exactly when schemas are equal."""
    return hashlib.sha256(json.dumps(columns).encode()).hexdigest()[:16]


def infer_schema(
    sample: bytes,
    *,
    complete: bool,
    max_rows: int = 2000,
    contract: Sequence[Column] | None = None,
    options: CsvOptions | None = None,
) -> CsvSchema:
    """Infer the schema from `sample`, the first bytes of a file (`complete` if all of it),
    with the dialect parameters the uploader gave in `options`.

    With a `contract` (the dataset's current columns) and the same header, a column whose
    sampled values all fit the contract's type takes that type: a file whose sample happens
    to hold only integers still appends to a DOUBLE column.
    """
    options = options or CsvOptions()
    text, encoding, why = decode(sample, complete=complete, encoding=options.encoding)
    if not text.strip():
        raise NotCsv("the file is empty: send a CSV with a header line")
    dialect = sniff(text, options, complete=complete, encoding=encoding, why=why)
    every = _one_line_end(records(text, dialect, complete=complete), dialect)
    rows: Iterator[Record] = (r for r in every if r.position(dialect) > dialect.skip)
    rows = (r for r in rows if r.fields or r.error)
    header = _header(rows, dialect)
    if dialect.header:
        names, renamed = _unique_names(header.fields)
    else:  # the first row is data: numbered names, and it counts in the sample
        names, renamed = [f"column_{n}" for n in range(1, len(header.fields) + 1)], {}
        rows = itertools.chain([header], rows)
    seen = _Seen(rows)
    samples = _sample(seen, len(names), max_rows, dialect.nulls)
    columns = tuple(column_for(name, seen) for name, seen in zip(names, samples, strict=True))
    if contract is not None and [c.name for c in contract] == names:
        columns = tuple(
            _conform(column, seen, agreed)
            for column, seen, agreed in zip(columns, samples, contract, strict=True)
        )
    return CsvSchema(
        **dialect.__dict__, columns=columns, renamed=renamed, sampled_through=seen.last_line
    )


class _Seen:
    """The rows, remembering the line of the last one taken."""

    def __init__(self, rows: Iterator[Record]) -> None:
        self.rows = rows
        self.last_line = 0

    def __iter__(self) -> Iterator[Record]:
        for row in self.rows:
            self.last_line = row.line
            yield row


def _one_line_end(rows: Iterator[Record], dialect: Dialect) -> Iterator[Record]:
    """`rows`, as long as they end as the first line does (DuckDB's reader refuses a file
    that mixes line ends)."""
    first: Record | None = None
    for row in rows:
        first = first or row
        if row.end and first.end and row.end != first.end:
            which = "the header" if dialect.skip == 0 and dialect.header else "line 1"
            raise NotCsv(
                f"line {row.line} ends with {LINE_ENDS[row.end]}, {which} with "
                f"{LINE_ENDS[first.end]}: use one kind of line end throughout the file "
                "(a line break inside a value needs double quotes around the value)"
            )
        yield row


def _header(rows: Iterator[Record], dialect: Dialect) -> Record:
    """The header record, if DuckDB will read it as the header; without a header, the
    first row, which gives the number of columns (`column_1`, ...)."""
    first = next(rows, None)
    if first is None:
        raise NotCsv("no line is left after the skipped ones: send a smaller skip")
    if first.error:
        raise NotCsv(f"line {first.line} cannot be read: {unreadable(first.error)}")
    if not dialect.header:
        return first
    if not any(name.strip() for name in first.fields):
        raise NotCsv(
            f"line {first.line} has no column names (it is blank): put the header line first, "
            "e.g. id,name"
        )
    if any("\n" in name or "\r" in name for name in first.fields):
        # DuckDB skips the header as one physical line, so the rest would become a row.
        raise NotCsv(
            f"a column name on line {first.line} holds a line break: put every column name on "
            "the header line, without line breaks"
        )
    return first


def _sample(
    rows: Iterable[Record], width: int, max_rows: int, nulls: Sequence[str]
) -> list[Sample]:
    """What the first `max_rows` rows say of each column. Malformed rows and rows of
    another width say nothing: the reader rejects them."""
    samples = [Sample() for _ in range(width)]
    null = frozenset(nulls)
    for row in itertools.islice(rows, max_rows):
        if row.error or len(row.fields) != width:
            continue
        for value, seen in zip(row.fields, samples, strict=True):
            seen.add("" if value in null else value, row.line)
    return samples


def _conform(column: Column, seen: Sample, agreed: Column) -> Column:
    if column.type == agreed.type or not seen.fits(agreed.type):
        return column
    return Column(
        column.name,
        agreed.type,
        f"{agreed.type.lower()}: the dataset's type, and every sampled value fits it",
    )


def schema_diff(current: Sequence[Column], upload: Sequence[Column]) -> dict[str, Any]:
    """What differs between a dataset's columns and an upload's, column by column."""
    now = {c.name: c.type for c in current}
    new = {c.name: c.type for c in upload}
    return {
        "added": [{"name": n, "type": t} for n, t in new.items() if n not in now],
        "removed": [{"name": n, "type": t} for n, t in now.items() if n not in new],
        "type_changed": [
            {"name": n, "dataset_type": now[n], "upload_type": t, "reason": reason}
            for n, t, reason in ((c.name, c.type, c.reason) for c in upload)
            if n in now and now[n] != t
        ],
        "order_changed": [n for n in now if n in new] != [n for n in new if n in now],
    }


def _unique_names(header: list[str]) -> tuple[list[str], dict[str, str]]:
    """Blank names get their position, repeated ones a suffix; names that differ only in
    case count as repeated (DuckDB's identifiers, and most engines', ignore case)."""
    names: list[str] = []
    taken: set[str] = set()
    renamed: dict[str, str] = {}
    for position, raw in enumerate(header, start=1):
        name = raw.strip() or f"column_{position}"
        base, n = name, 1
        while name.casefold() in taken:
            n += 1
            name = f"{base}_{n}"
        if name != raw:
            renamed[name] = raw if raw.strip() else "<blank>"
        names.append(name)
        taken.add(name.casefold())
    return names, renamed
