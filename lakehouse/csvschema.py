"""Infer a CSV's dialect and column types from its first bytes, and explain each choice.

The types are DuckDB's, restricted to ones whose text form DuckDB's CSV reader parses
exactly as checked here, so the conversion never meets a value the sample said would fit.
A column whose sample values do not agree on one type becomes VARCHAR: nothing is lost.
Numbers keep their exact value: DOUBLE only when every sampled number survives the trip
through a double, else DECIMAL when its digits fit, else VARCHAR. Only ASCII digits are
digits (DuckDB reads no other script's).

What DuckDB's reader (strict mode, `lakehouse.convert`) would refuse as a whole file, such
as a missing header or mixed line ends, is refused here, before anything is stored.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

DELIMITERS = (",", ";", "\t", "|")
UTF8_BOM = b"\xef\xbb\xbf"
INT64_MAX = 2**63 - 1
# DuckDB's widest DECIMAL; a column that needs more digits stays VARCHAR.
DECIMAL_DIGITS = 38
# Decimal digits every double keeps exactly.
DOUBLE_DIGITS = 15
# Longer "numbers" stay text: neither a DOUBLE nor a DECIMAL holds them exactly.
MAX_NUMBER_CHARS = 100
# The csv module refuses fields over 128 KiB by default; the sample's size bounds them.
FIELD_LIMIT = 2**31 - 1
# The delimiter is chosen from this many first rows (of at most this many characters).
SNIFF_ROWS = 20
SNIFF_CHARS = 65536

# [0-9], not \d: Python's \d, int() and float() accept other scripts' digits, DuckDB doesn't.
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)([eE][+-]?[0-9]+)?")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?")
_DECIMAL_TYPE = re.compile(r"DECIMAL\(([0-9]+),([0-9]+)\)")
_BOOLEANS = {"true", "false"}
_NUMERIC = frozenset({"integer", "decimal"})
_LINE_ENDS = {"\r\n": "CRLF", "\n": "LF", "\r": "CR"}

# The narrowest kind of a single value, and the column type each set of kinds becomes
# (numbers are decided by `_numeric_column`, which looks at their digits).
_TYPE_OF_KINDS: dict[frozenset[str], str] = {
    frozenset({"boolean"}): "BOOLEAN",
    frozenset({"integer"}): "BIGINT",
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
    _allow_long_fields()
    text = _decode(sample, complete=complete)
    if not text.strip():
        raise NotCsv("the file is empty: send a CSV with a header line")
    delimiter = _sniff_delimiter(text, complete=complete)
    rows = _rows(text, delimiter, complete=complete)
    header, line_end = _header(rows)
    names, renamed = _unique_names(header)
    samples = _sample(rows, len(names), line_end, max_rows)
    columns = tuple(_column(name, seen) for name, seen in zip(names, samples, strict=True))
    if contract is not None and [c.name for c in contract] == names:
        columns = tuple(
            _conform(column, seen, agreed)
            for column, seen, agreed in zip(columns, samples, contract, strict=True)
        )
    return CsvSchema(delimiter=delimiter, columns=columns, renamed=renamed)


def _header(rows: Iterator[tuple[int, list[str], str]]) -> tuple[list[str], str]:
    """The header's names and line end, if DuckDB will read them as the header."""
    _, header, line_end = next(rows)
    if not any(name.strip() for name in header):
        raise NotCsv(
            "line 1 has no column names (it is blank): put the header line first, e.g. id,name"
        )
    if any("\n" in name or "\r" in name for name in header):
        # DuckDB skips the header as one physical line, so the rest would become a row.
        raise NotCsv(
            "a column name on line 1 holds a line break: put every column name on the "
            "header line, without line breaks"
        )
    return header, line_end


def _sample(
    rows: Iterator[tuple[int, list[str], str]], width: int, line_end: str, max_rows: int
) -> list[_Sample]:
    """What the first `max_rows` rows say of each column; their line ends must be the
    header's (DuckDB's reader refuses a file that mixes them)."""
    samples = [_Sample() for _ in range(width)]
    for line, row, end in itertools.islice(rows, max_rows):
        if end and end != line_end:
            raise NotCsv(
                f"line {line} ends with {_LINE_ENDS[end]}, the header with "
                f"{_LINE_ENDS[line_end]}: use one kind of line end throughout the file "
                "(a line break inside a value needs double quotes around the value)"
            )
        for value, seen in zip(row, samples, strict=False):
            seen.add(value, line)
    return samples


@dataclass
class _Numbers:
    """What a column's sampled numbers need to be stored exactly."""

    int_digits: int = 0  # the most digits before the point
    scale: int = 0  # the most digits after it
    exponent: bool = False
    # The first value a DOUBLE would not hold exactly, and its line.
    inexact: tuple[str, int] | None = None

    def add(self, value: str, line: int) -> None:
        mantissa, e, _ = value.lstrip("+-").lower().partition("e")
        # Up to 15 significant digits always survive a double (DBL_DIG); beyond, check.
        short = not e and len(mantissa) <= DOUBLE_DIGITS
        if not short and self.inexact is None and Decimal(repr(float(value))) != Decimal(value):
            self.inexact = (value, line)
        whole, _, fraction = mantissa.partition(".")
        self.exponent = self.exponent or bool(e)
        self.int_digits = max(self.int_digits, len(whole.lstrip("0")))
        self.scale = max(self.scale, len(fraction))

    def fit_decimal(self, precision: int = DECIMAL_DIGITS, scale: int | None = None) -> bool:
        """Whether DECIMAL(precision, scale) (scale: the sampled one) holds every value."""
        scale = self.scale if scale is None else scale
        return not self.exponent and self.scale <= scale and self.int_digits <= precision - scale


@dataclass
class _Sample:
    """What one column's sampled values say: the first value of each kind, with its line,
    and what its numbers need."""

    kinds: dict[str, tuple[str, int]] = field(default_factory=dict)
    numbers: _Numbers = field(default_factory=_Numbers)

    def add(self, value: str, line: int) -> None:
        kind = value_kind(value)
        if kind is None:
            return
        self.kinds.setdefault(kind, (value, line))
        if kind in _NUMERIC:
            self.numbers.add(value, line)

    def fits(self, type_: str) -> bool:
        """Whether `type_` reads every sampled value without loss."""
        kinds = set(self.kinds)
        if type_ == "VARCHAR":
            return True
        if type_ == "DOUBLE":
            return kinds <= _NUMERIC and self.numbers.inexact is None
        if decimal := _DECIMAL_TYPE.fullmatch(type_):
            precision, scale = int(decimal[1]), int(decimal[2])
            return kinds <= _NUMERIC and self.numbers.fit_decimal(precision, scale)
        return kinds <= _FITS.get(type_, set())


# Which value kinds the other types read without loss.
_FITS: dict[str, set[str]] = {
    "BOOLEAN": {"boolean"},
    "BIGINT": {"integer"},
    "DATE": {"date"},
    "TIMESTAMP": {"date", "timestamp"},
}


def _conform(column: Column, seen: _Sample, agreed: Column) -> Column:
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


def value_kind(value: str) -> str | None:
    """The narrowest kind `value` fits; None for an empty value (a NULL fits any type).

    "integer" fits a BIGINT; "decimal" is any other number (how exactly it can be stored
    depends on its digits: see `_Numbers`).
    """
    if value == "":
        return None
    if value.lower() in _BOOLEANS:
        return "boolean"
    if len(value) <= MAX_NUMBER_CHARS and _INT.fullmatch(value):
        digits = value.lstrip("+-")
        # Leading zeros (zip codes, ids) would be lost as a number.
        if len(digits) > 1 and digits[0] == "0":
            return "text"
        return "integer" if abs(int(value)) <= INT64_MAX else "decimal"
    if len(value) <= MAX_NUMBER_CHARS and _FLOAT.fullmatch(value):
        return "decimal"
    if _DATE.fullmatch(value):
        return "date" if _parses(date.fromisoformat, value) else "text"
    if _TIMESTAMP.fullmatch(value):
        return "timestamp" if _parses(datetime.fromisoformat, value) else "text"
    return "text"


def _column(name: str, seen: _Sample) -> Column:
    if not seen.kinds:
        return Column(name, "VARCHAR", "string: no values in the sample")
    if set(seen.kinds) <= _NUMERIC and set(seen.kinds) != {"integer"}:
        return _numeric_column(name, seen)
    type_ = _TYPE_OF_KINDS.get(frozenset(seen.kinds))
    if type_ is not None:
        value, _ = next(iter(seen.kinds.values()))
        label = "string" if type_ == "VARCHAR" else type_.lower()
        return Column(name, type_, f"{label}: every sampled value fits, e.g. {value!r}")
    # Ambiguous: name a value that broke the agreement, and the kind it broke.
    by_line = sorted(seen.kinds, key=lambda kind: seen.kinds[kind][1])
    odd = "text" if "text" in seen.kinds else by_line[1]
    expected = next(kind for kind in by_line if kind != odd)
    odd_value, odd_line = seen.kinds[odd]
    return Column(
        name,
        "VARCHAR",
        f"string: value {odd_value!r} on line {odd_line} is not {_article(expected)}",
    )


def _numeric_column(name: str, seen: _Sample) -> Column:
    """Decimals, or integers past BIGINT: the narrowest type that keeps every digit."""
    numbers = seen.numbers
    if numbers.inexact is None:
        value, _ = seen.kinds.get("decimal") or seen.kinds["integer"]
        return Column(name, "DOUBLE", f"double: every sampled value fits exactly, e.g. {value!r}")
    value, line = numbers.inexact
    if numbers.fit_decimal():
        type_ = f"DECIMAL({DECIMAL_DIGITS},{numbers.scale})"
        return Column(
            name,
            type_,
            f"decimal: value {value!r} on line {line} has more digits than a DOUBLE keeps; "
            f"every sampled value fits {type_}",
        )
    return Column(
        name,
        "VARCHAR",
        f"string: value {value!r} on line {line} is a number that neither a DOUBLE nor a "
        f"DECIMAL({DECIMAL_DIGITS}) holds exactly",
    )


def _article(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _parses(parse: Callable[[str], object], value: str) -> bool:
    try:
        parse(value)
    except ValueError:
        return False
    return True


def _allow_long_fields() -> None:
    # The sample (at most a few MiB) bounds every field; the csv module's own limit
    # (128 KiB) would refuse a long but valid value. Only ever raised, never lowered.
    if csv.field_size_limit() < FIELD_LIMIT:
        csv.field_size_limit(FIELD_LIMIT)


def _decode(sample: bytes, *, complete: bool) -> str:
    if sample.startswith(UTF8_BOM):
        sample = sample[len(UTF8_BOM) :]
    if b"\x00" in sample:
        raise NotCsv("the file is not text (it contains NUL bytes): send a UTF-8 CSV")
    if not complete:
        # Drop the last, probably cut, line (and any multi-byte character cut with it).
        cut = max(sample.rfind(b"\n"), sample.rfind(b"\r"))
        if cut < 0:
            raise NotCsv(
                f"no line end in the first {len(sample)} bytes: the header line is too "
                "long, or this is not a line-based CSV file"
            )
        sample = sample[: cut + 1]
    try:
        return sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotCsv(f"the file is not UTF-8 text (byte {exc.start}): send a UTF-8 CSV") from exc


class _Lines:
    """The text's lines, split at CRLF, LF or CR as DuckDB does, remembering how the last
    one read ended and how many characters were read."""

    def __init__(self, text: str) -> None:
        self._lines = io.StringIO(text, newline="")
        self.end = ""
        self.read = 0

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.end = next((end for end in _LINE_ENDS if line.endswith(end)), "")
        self.read += len(line)
        return line


def _rows(text: str, delimiter: str, *, complete: bool) -> Iterator[tuple[int, list[str], str]]:
    """(line number, fields, line end) of each row. The last row of a cut sample is left
    out if it ends inside a quoted value (an odd number of quotes): it is incomplete."""
    lines = _Lines(text)
    reader = csv.reader(lines, delimiter=delimiter, quotechar='"', doublequote=True)
    start = 0
    try:
        for row in reader:
            whole = complete or lines.read < len(text) or text.count('"', start) % 2 == 0
            if whole or start == 0:
                yield reader.line_num, row, lines.end
            start = lines.read
    except csv.Error as exc:
        raise NotCsv(
            f"line {reader.line_num}: {exc}: send the file as CSV (RFC 4180) in UTF-8"
        ) from exc


def _sniff_delimiter(text: str, *, complete: bool) -> str:
    """The delimiter that splits the first rows into the most, equally many, fields
    (a one-column file: one that splits no row)."""
    head = text[:SNIFF_CHARS]
    best, best_width = ",", 0
    for delimiter in DELIMITERS:
        reader = csv.reader(io.StringIO(head, newline=""), delimiter=delimiter)
        try:
            rows = [row for row in itertools.islice(reader, SNIFF_ROWS) if row]
        except csv.Error:
            continue
        if (len(head) < len(text) or not complete) and len(rows) > 1:
            rows.pop()  # may be cut
        widths = {len(row) for row in rows}
        if len(widths) == 1 and (width := widths.pop()) > best_width:
            best, best_width = delimiter, width
    return best


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
