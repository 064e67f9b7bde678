"""The column types a CSV's values can take, and why one is chosen.

The types are DuckDB's, restricted to ones whose text form DuckDB's CSV reader parses
exactly as checked here, so the conversion never meets a value the sample said would fit.
A column whose sample values do not agree on one type becomes VARCHAR: nothing is lost.
Numbers keep their exact value. Numbers written with a point and a fixed number of
decimals (money, quantities) are DECIMAL(18,s) when at most 18 digits hold them (one 64-bit
integer each, sums exact), DECIMAL(38,s) up to 38 digits, else VARCHAR; DOUBLE only for
numbers in exponent notation (`6.02e23`), which are floating point by their form, and only
if a double holds each exactly as written. Only ASCII digits are digits (DuckDB reads no
other script's).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

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
NUMERIC = frozenset({"integer", "decimal"})

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
class Sample:
    """What one column's sampled values say: the first value of each kind, with its line,
    and what its numbers need."""

    kinds: dict[str, tuple[str, int]] = field(default_factory=dict)
    numbers: _Numbers = field(default_factory=_Numbers)
    # Values already added: one seen again changes nothing (its kind has an earlier line,
    # its digits are counted), and most columns repeat their values.
    _seen: set[str] = field(default_factory=set, repr=False, compare=False)

    def add(self, value: str, line: int) -> None:
        if value in self._seen:
            return
        self._seen.add(value)
        kind = value_kind(value)
        if kind is None:
            return
        self.kinds.setdefault(kind, (value, line))
        if kind in NUMERIC:
            self.numbers.add(value, line)

    def fits(self, type_: str) -> bool:
        """Whether `type_` reads every sampled value without loss."""
        kinds = set(self.kinds)
        if type_ == "VARCHAR":
            return True
        if type_ == "DOUBLE":
            return kinds <= NUMERIC and self.numbers.inexact is None
        if decimal := _DECIMAL_TYPE.fullmatch(type_):
            precision, scale = int(decimal[1]), int(decimal[2])
            return kinds <= NUMERIC and self.numbers.fit_decimal(precision, scale)
        return kinds <= _FITS.get(type_, set())


# Which value kinds the other types read without loss.
_FITS: dict[str, set[str]] = {
    "BOOLEAN": {"boolean"},
    "BIGINT": {"integer"},
    "DATE": {"date"},
    "TIMESTAMP": {"date", "timestamp"},
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


def column_for(name: str, seen: Sample) -> Column:
    if not seen.kinds:
        return Column(name, "VARCHAR", "string: no values in the sample")
    if set(seen.kinds) <= NUMERIC and set(seen.kinds) != {"integer"}:
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


def _numeric_column(name: str, seen: Sample) -> Column:
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
