"""Infer a CSV's column types from its first bytes (its dialect: `lakehouse.csvdialect`),
and explain each choice.

The types are DuckDB's, restricted to ones whose text form DuckDB's CSV reader parses
exactly as checked here, so the conversion never meets a value the sample said would fit.
A column whose sample values do not agree on one type becomes VARCHAR: nothing is lost.
Numbers keep their exact value. Numbers written with a point and a fixed number of
decimals (money, quantities) are DECIMAL(18,s) when at most 18 digits hold them (one 64-bit
integer each, sums exact), DECIMAL(38,s) up to 38 digits, else VARCHAR; DOUBLE only for
numbers in exponent notation (`6.02e23`), which are floating point by their form, and only
if a double holds each exactly as written. Only ASCII digits are digits (DuckDB reads no
other script's).

What DuckDB's reader (strict mode, `lakehouse.convert`) would refuse as a whole file, such
as a missing header or mixed line ends, is refused here, before anything is stored.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from lakehouse.csvdialect import (
    LINE_ENDS,
    CsvOptions,
    Dialect,
    NotCsv,
    Record,
    decode,
    records,
    sniff,
    unreadable,
)

INT64_MAX = 2**63 - 1
# DuckDB's widest DECIMAL; a column that needs more digits stays VARCHAR.
DECIMAL_DIGITS = 38
# The widest DECIMAL DuckDB keeps in one 64-bit integer (fast, and sums stay exact).
FAST_DECIMAL_DIGITS = 18
# Decimal digits every double keeps exactly.
DOUBLE_DIGITS = 15
# Longer "numbers" stay text: neither a DOUBLE nor a DECIMAL holds them exactly.
MAX_NUMBER_CHARS = 100

# [0-9], not \d: Python's \d, int() and float() accept other scripts' digits, DuckDB doesn't.
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)([eE][+-]?[0-9]+)?")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?")
_DECIMAL_TYPE = re.compile(r"DECIMAL\(([0-9]+),([0-9]+)\)")
_BOOLEANS = {"true", "false"}
_NUMERIC = frozenset({"integer", "decimal"})

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


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    reason: str


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
    columns = tuple(_column(name, seen) for name, seen in zip(names, samples, strict=True))
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
) -> list[_Sample]:
    """What the first `max_rows` rows say of each column. Malformed rows and rows of
    another width say nothing: the reader rejects them."""
    samples = [_Sample() for _ in range(width)]
    null = frozenset(nulls)
    for row in itertools.islice(rows, max_rows):
        if row.error or len(row.fields) != width:
            continue
        for value, seen in zip(row.fields, samples, strict=True):
            seen.add("" if value in null else value, row.line)
    return samples


@dataclass
class _Numbers:
    """What a column's sampled numbers need to be stored exactly."""

    int_digits: int = 0  # the most digits before the point
    scale: int = 0  # the most digits after it
    exponent: bool = False
    # The first value a DOUBLE would not hold exactly, and its line.
    inexact: tuple[str, int] | None = None
    exponent_example: tuple[str, int] | None = None
    widest: tuple[str, int] | None = None  # the value with the most digits, and its line
    _widest_digits: int = -1

    def add(self, value: str, line: int) -> None:
        mantissa, e, _ = value.lstrip("+-").lower().partition("e")
        # Up to 15 significant digits always survive a double (DBL_DIG); beyond, check.
        short = not e and len(mantissa) <= DOUBLE_DIGITS
        if not short and self.inexact is None and Decimal(repr(float(value))) != Decimal(value):
            self.inexact = (value, line)
        whole, _, fraction = mantissa.partition(".")
        if e and self.exponent_example is None:
            self.exponent_example = (value, line)
        self.exponent = self.exponent or bool(e)
        self.int_digits = max(self.int_digits, len(whole.lstrip("0")))
        self.scale = max(self.scale, len(fraction))
        digits = len(whole.lstrip("0")) + len(fraction)
        if digits > self._widest_digits:
            self.widest, self._widest_digits = (value, line), digits

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
    if numbers.exponent:
        if numbers.inexact is None:
            value, line = numbers.exponent_example or ("", 0)
            return Column(
                name,
                "DOUBLE",
                f"double: value {value!r} on line {line} is in exponent notation (floating "
                "point), and a double holds every sampled value exactly as written",
            )
        value, line = numbers.inexact
        example, at = numbers.exponent_example or ("", 0)
        return Column(
            name,
            "VARCHAR",
            f"string: numbers in exponent notation (e.g. {example!r} on line {at}) make it "
            f"floating point, but a DOUBLE would not hold value {value!r} on line {line} "
            "exactly as written",
        )
    value, line = numbers.widest or ("", 0)
    for precision in (FAST_DECIMAL_DIGITS, DECIMAL_DIGITS):
        if numbers.fit_decimal(precision):
            type_ = f"DECIMAL({precision},{numbers.scale})"
            return Column(
                name,
                type_,
                f"decimal: every sampled value has at most {numbers.scale} decimals and "
                f"{precision} digits, e.g. {value!r} on line {line}: {type_} keeps them exactly",
            )
    return Column(
        name,
        "VARCHAR",
        f"string: value {value!r} on line {line} is a number with more digits than a "
        f"DECIMAL({DECIMAL_DIGITS}) holds",
    )


def _article(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _parses(parse: Callable[[str], object], value: str) -> bool:
    try:
        parse(value)
    except ValueError:
        return False
    return True


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
