"""Infer a CSV's dialect and column types from its first bytes, and explain each choice.

The types are DuckDB's, restricted to ones whose text form DuckDB's CSV reader parses
exactly as checked here, so the conversion never meets a value the sample said would fit.
A column whose sample values do not agree on one type becomes VARCHAR: nothing is lost.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

DELIMITERS = (",", ";", "\t", "|")
UTF8_BOM = b"\xef\xbb\xbf"
INT64_MAX = 2**63 - 1

_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?")
_BOOLEANS = {"true", "false"}

# The narrowest kind of a single value, and the column type each set of kinds becomes.
_TYPE_OF_KINDS: dict[frozenset[str], str] = {
    frozenset({"boolean"}): "BOOLEAN",
    frozenset({"integer"}): "BIGINT",
    frozenset({"integer", "decimal"}): "DOUBLE",
    frozenset({"decimal"}): "DOUBLE",
    frozenset({"date"}): "DATE",
    frozenset({"date", "timestamp"}): "TIMESTAMP",
    frozenset({"timestamp"}): "TIMESTAMP",
    frozenset({"text"}): "VARCHAR",
}


class NotCsv(ValueError):
    """The bytes are not CSV text we can read (binary, not UTF-8, no header)."""


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    reason: str


@dataclass(frozen=True)
class CsvSchema:
    delimiter: str
    columns: tuple[Column, ...]
    # Header names that had to change (blank or repeated), as {"column_3": "<blank>"}.
    renamed: dict[str, str] = field(default_factory=dict)

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
) -> CsvSchema:
    """Infer the schema from `sample`, the first bytes of a file (`complete` if all of it).

    With a `contract` (the dataset's current columns) and the same header, a column whose
    sampled values all fit the contract's type takes that type: a file whose sample happens
    to hold only integers still appends to a DOUBLE column.
    """
    text = _decode(sample, complete=complete)
    if not text.strip():
        raise NotCsv("the file is empty: send a CSV with a header line")
    delimiter = _sniff_delimiter(text)
    rows = csv.reader(io.StringIO(text), delimiter=delimiter, quotechar='"', doublequote=True)
    header = next(rows)
    names, renamed = _unique_names(header)
    kinds: list[dict[str, tuple[str, int]]] = [{} for _ in names]
    for count, row in enumerate(rows, start=1):
        if count > max_rows:
            break
        for i, value in enumerate(row[: len(names)]):
            kind = value_kind(value)
            if kind is not None and kind not in kinds[i]:
                kinds[i][kind] = (value, rows.line_num)
    columns = tuple(_column(name, seen) for name, seen in zip(names, kinds, strict=True))
    if contract is not None and [c.name for c in contract] == names:
        columns = tuple(
            _conform(column, seen, agreed)
            for column, seen, agreed in zip(columns, kinds, contract, strict=True)
        )
    return CsvSchema(delimiter=delimiter, columns=columns, renamed=renamed)


# Which value kinds each type reads without loss.
_FITS: dict[str, set[str]] = {
    "BOOLEAN": {"boolean"},
    "BIGINT": {"integer"},
    "DOUBLE": {"integer", "decimal"},
    "DATE": {"date"},
    "TIMESTAMP": {"date", "timestamp"},
}


def _conform(column: Column, seen: dict[str, tuple[str, int]], agreed: Column) -> Column:
    if column.type == agreed.type:
        return column
    if agreed.type == "VARCHAR" or set(seen) <= _FITS.get(agreed.type, set()):
        return Column(
            column.name,
            agreed.type,
            f"{agreed.type.lower()}: the dataset's type, and every sampled value fits it",
        )
    return column


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


def value_kind(value: str) -> str | None:
    """The narrowest kind `value` fits; None for an empty value (a NULL fits any type)."""
    if value == "":
        return None
    if value.lower() in _BOOLEANS:
        return "boolean"
    if _INT.fullmatch(value):
        digits = value.lstrip("+-")
        # Leading zeros (zip codes, ids) would be lost as a number; huge ones would overflow.
        if (len(digits) > 1 and digits[0] == "0") or abs(int(value)) > INT64_MAX:
            return "text"
        return "integer"
    if _FLOAT.fullmatch(value):
        return "decimal"
    if _DATE.fullmatch(value):
        return "date" if _parses(date.fromisoformat, value) else "text"
    if _TIMESTAMP.fullmatch(value):
        return "timestamp" if _parses(datetime.fromisoformat, value) else "text"
    return "text"


def _column(name: str, seen: dict[str, tuple[str, int]]) -> Column:
    if not seen:
        return Column(name, "VARCHAR", "string: no values in the sample")
    type_ = _TYPE_OF_KINDS.get(frozenset(seen))
    if type_ is not None:
        value, _ = next(iter(seen.values()))
        label = "string" if type_ == "VARCHAR" else type_.lower()
        return Column(name, type_, f"{label}: every sampled value fits, e.g. {value!r}")
    # Ambiguous: name a value that broke the agreement, and the kind it broke.
    by_line = sorted(seen, key=lambda kind: seen[kind][1])
    odd = "text" if "text" in seen else by_line[1]
    expected = next(kind for kind in by_line if kind != odd)
    odd_value, odd_line = seen[odd]
    return Column(
        name,
        "VARCHAR",
        f"string: value {odd_value!r} on line {odd_line} is not {_article(expected)}",
    )


def _article(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _parses(parse, value: str) -> bool:
    try:
        parse(value)
    except ValueError:
        return False
    return True


def _decode(sample: bytes, *, complete: bool) -> str:
    if sample.startswith(UTF8_BOM):
        sample = sample[len(UTF8_BOM) :]
    if b"\x00" in sample:
        raise NotCsv("the file is not text (it contains NUL bytes): send a UTF-8 CSV")
    if not complete:
        # Drop the last, probably cut, line (and any multi-byte character cut with it).
        cut = sample.rfind(b"\n")
        sample = sample[: cut + 1] if cut >= 0 else sample
    try:
        return sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotCsv(f"the file is not UTF-8 text (byte {exc.start}): send a UTF-8 CSV") from exc


def _sniff_delimiter(text: str) -> str:
    """The delimiter that splits the first lines into the most, equally many, fields."""
    head = text[:65536].splitlines()[:20]
    best, best_width = ",", 1
    for delimiter in DELIMITERS:
        widths = {len(row) for row in csv.reader(head, delimiter=delimiter) if row}
        if len(widths) == 1 and (width := widths.pop()) > best_width:
            best, best_width = delimiter, width
    return best


def _unique_names(header: list[str]) -> tuple[list[str], dict[str, str]]:
    names: list[str] = []
    renamed: dict[str, str] = {}
    for position, raw in enumerate(header, start=1):
        name = raw.strip() or f"column_{position}"
        base, n = name, 1
        while name in names:
            n += 1
            name = f"{base}_{n}"
        if name != raw:
            renamed[name] = raw if raw.strip() else "<blank>"
        names.append(name)
    return names, renamed
