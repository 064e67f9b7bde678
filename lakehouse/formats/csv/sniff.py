"""How a CSV file is written (its dialect): taken from the uploader where given, else found
in the file's first bytes, each choice with its reason.

The header decides the shape. Line 1 is the header if a candidate delimiter splits it into
several names; a row with another number of fields is then a bad row (rejected, counted),
never a reason to read the file some other way. Only when no delimiter splits line 1 are
the lines before the header looked for: titles, blank lines and `#` comments above a
header that the rows below agree with, as DuckDB's sniffer finds `skip` and `comment`.
Where the first lines allow two readings, the upload is refused with the parameter that
decides it; a file is one column only when nothing splits its header.

Quoting: double quotes with doubled quotes inside (RFC 4180) unless the sample reads with
fewer errors, or more rows agreeing with the header, with backslash escapes or single
quotes. `#` comment lines below the header are skipped only when no value in the sample
holds a `#` (DuckDB's reader ends a value at an unquoted comment character).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace

from lakehouse.formats.csv.dialect import COMMENT, DELIMITERS, QUOTES, Dialect
from lakehouse.formats.csv.options import CsvOptions
from lakehouse.formats.csv.records import Record, records, unreadable
from lakehouse.formats.csv.text import NotCsv

# The dialect is chosen from this many first records (of at most this many characters).
SNIFF_ROWS = 50
SNIFF_CHARS = 65536
# Lines above a header that may be a title, blank lines or comments.
MAX_PREAMBLE_LINES = 20
# Rows below a header that must agree with it for lines above it to count as a preamble.
PREAMBLE_AGREEMENT = 0.9


@dataclass
class _Reading:
    """The first records of the sample under one candidate dialect, and how they fit."""

    dialect: Dialect
    rows: list[Record]  # non-blank records, from line 1
    header_at: int = 0  # index into rows
    errors: int = 0

    @property
    def width(self) -> int:
        return len(self.rows[self.header_at].fields) if self.rows else 0

    @property
    def below(self) -> list[Record]:
        return self.rows[self.header_at + 1 :]

    @property
    def agreement(self) -> float:
        """Share of the rows below the header with as many fields as it (1: none below)."""
        below = self.below
        if not below:
            return 1.0
        return sum(len(r.fields) == self.width for r in below) / len(below)

    def rank(self) -> tuple[float, ...]:
        return (-self.errors, self.agreement, self.width)

    def names_header(self) -> bool:
        header = self.rows[self.header_at].fields if self.rows else []
        return len(header) >= 2 and any(name.strip() for name in header)


def sniff(text: str, options: CsvOptions, *, complete: bool, encoding: str, why: str) -> Dialect:
    """The dialect of `text` (the sample, decoded), `options` taking precedence."""
    head = text[:SNIFF_CHARS]
    head_complete = complete and len(head) == len(text)
    base = Dialect(
        header=True if options.header is None else options.header,
        nulls=options.nulls or ("",),
        encoding=encoding,
        why={
            "encoding": why,
            **{param: "given" for param in options.given() if param != "encoding"},
        },
    )
    readings = _without_needless_backslashes(
        [
            _read(head, replace(base, delimiter=d, quote=q, escape=e, comment=c), head_complete)
            for d, q, e, c in _candidates(head, options)
        ]
    )
    if options.skip is not None:
        chosen = _with_skip(readings, options.skip)
    elif not base.header:
        chosen = _best([r for r in readings if r.rows])
    else:
        chosen = _line_one_header(readings) or _after_preamble(readings)
    return _explain(chosen, options, head)


def _candidates(head: str, options: CsvOptions) -> Iterator[tuple[str, str, str, str]]:
    if options.delimiter:
        delimiters: tuple[str, ...] = (options.delimiter,)
    else:  # of those that never occur, the first stands for all: it reads one column
        delimiters = tuple(d for d in DELIMITERS if d in head or d == DELIMITERS[0])
    if options.quote is not None:
        quotes: tuple[str, ...] = (options.quote,)
    else:
        quotes = _quotes(head)
    for delimiter, quote in itertools.product(delimiters, quotes):
        if not quote:
            escapes: tuple[str, ...] = ("",)
        elif options.escape is not None:
            escapes = (options.escape,)
        else:
            escapes = (quote, "\\") if quote and "\\" + quote in head else (quote,)
        for escape in escapes:
            for comment in _comments(head, options):
                yield delimiter, quote, escape, comment


def _without_needless_backslashes(readings: list[_Reading]) -> list[_Reading]:
    """A backslash escape is a guess, made because `\\"` occurs in the sample. Where the
    RFC 4180 reading with the same delimiter, quote and comment reads every line without
    an error into as many fields, the file is that: its `\\""` is a backslash before an
    escaped quote, and the guess must not reshape it (into more columns below a line it
    would call a preamble, say)."""

    def twin(reading: _Reading) -> tuple[str, str, str]:
        return reading.dialect.delimiter, reading.dialect.quote, reading.dialect.comment

    clean = {
        twin(r)
        for r in readings
        if r.dialect.escape == r.dialect.quote
        and r.rows
        and not r.errors
        and len({len(row.fields) for row in r.rows}) == 1
    }
    return [r for r in readings if not (r.dialect.escape == "\\" and twin(r) in clean)]


def _quotes(head: str) -> tuple[str, ...]:
    """Double quotes; single quotes too, if some value starts with one and none with a
    double quote (a file that quotes with double quotes has apostrophes in its text)."""
    starts = {q: re.search(f"(^|[,;\t|]){q}", head, re.MULTILINE) for q in QUOTES}
    return ('"', "'") if starts["'"] and not starts['"'] else ('"',)


def _comments(head: str, options: CsvOptions) -> tuple[str, ...]:
    """Comment lines are looked for only when some line starts with `#`."""
    if options.comment is not None:
        return (options.comment,)
    if any(line.lstrip(" ").startswith(COMMENT) for line in head.splitlines()):
        return ("", COMMENT)
    return ("",)


def _read(head: str, dialect: Dialect, complete: bool) -> _Reading:
    found = list(records(head, dialect, complete=complete, limit=SNIFF_ROWS))
    rows = [r for r in found if r.fields or r.error]
    return _Reading(dialect, rows, errors=sum(bool(r.error) for r in rows))


def _best(readings: list[_Reading]) -> _Reading:
    """The reading with the fewest errors, then the most rows agreeing with the header,
    then the most columns; the candidates' order (RFC 4180 first) breaks ties."""
    return max(readings, key=_Reading.rank)


def _line_one_header(readings: list[_Reading]) -> _Reading | None:
    """The reading whose header is line 1, split into several fields, if any is."""
    splitting = [r for r in readings if r.rows and r.rows[0].line == 1 and r.width >= 2]
    if not splitting:
        return None
    best = _best(splitting)
    if not best.names_header():
        raise NotCsv(
            f"line 1 has no column names (its {best.width} fields are blank): put the header "
            f"line first, e.g. id,name{_skip_hint(readings)}"
        )
    if best.below and best.agreement == 0:
        if broken := next((r for r in best.below if r.error), None):
            raise NotCsv(f"line {broken.line} cannot be read: {unreadable(broken.error)}")
        names = best.rows[0].fields
        raise NotCsv(
            f"line 1 splits into {len(names)} fields ({', '.join(map(repr, names[:5]))}) but "
            f"none of the {len(best.below)} rows below it has {len(names)}: if line 1 is the "
            "header, the rows must have as many fields (send delimiter=... if another one "
            f"separates them){_skip_hint(readings)}"
        )
    return best


def _after_preamble(readings: list[_Reading]) -> _Reading:
    """No delimiter splits line 1: a title, blank lines or comments above a header that
    the rows below agree with; else the file is one column, read with the delimiter that
    splits the fewest rows (a comma by default: rows it splits are bad rows, as any CSV
    reader would see them)."""
    found = [r for r in (_find_header(r) for r in readings) if r is not None]
    if found:
        return _best(found)
    from_line_one = [r for r in readings if r.rows and r.rows[0].line == 1]
    if not from_line_one:
        raise NotCsv(
            "line 1 has no column names (it is blank): put the header line first, e.g. "
            "id,name, or send skip=<lines before the header>"
        )
    one_column = _best(from_line_one)
    _refuse_whitespace_separated(one_column)
    return one_column


def _refuse_whitespace_separated(reading: _Reading) -> None:
    """A file whose lines all split on runs of spaces into as many words is not one column
    of text: it is aligned columns, which a one-character delimiter cannot read."""
    lines = [r.fields[0] for r in reading.rows if len(r.fields) == 1]
    widths = {len(line.split()) for line in lines}
    aligned = any("  " in line.strip() for line in lines)
    if len(lines) >= 3 and len(widths) == 1 and (width := widths.pop()) >= (2 if aligned else 3):
        raise NotCsv(
            f"every line splits on spaces into {width} values: send delimiter=%20 (a space) "
            "if one space separates them, or delimiter=tab; values aligned with runs of "
            "spaces cannot be read as CSV: convert the file to CSV first"
        )


def _find_header(reading: _Reading) -> _Reading | None:
    for at, row in enumerate(reading.rows):
        if row.line > MAX_PREAMBLE_LINES + 1:
            return None
        candidate = _Reading(reading.dialect, reading.rows, at, reading.errors)
        if (
            candidate.names_header()
            and len(candidate.below) >= 1
            and candidate.agreement >= PREAMBLE_AGREEMENT
            and all(len(r.fields) < candidate.width for r in reading.rows[:at])
        ):
            return candidate
    return None


def _with_skip(readings: list[_Reading], skip: int) -> _Reading:
    """The header (or first row) is the first record past `skip` physical lines."""
    placed = []
    for reading in readings:
        at = next((i for i, r in enumerate(reading.rows) if r.line > skip), None)
        if at is not None:
            placed.append(_Reading(reading.dialect, reading.rows, at, reading.errors))
    if not placed:
        raise NotCsv(f"skip={skip} skips every line of the sample: send a smaller skip")
    return _best(placed)


def _skip_hint(readings: list[_Reading]) -> str:
    """Where a header below line 1 could be, as the parameter that would choose it."""
    later = [r for r in (_find_header(_without_line_one(r)) for r in readings) if r is not None]
    if not later:
        return ""
    best = _best(later)
    line = best.rows[best.header_at].line
    return f"; if lines 1-{line - 1} are a title or notes, send skip={line - 1}"


def _without_line_one(reading: _Reading) -> _Reading:
    return _Reading(reading.dialect, [r for r in reading.rows if r.line > 1], 0, reading.errors)


def _check_backslashes(head: str, dialect: Dialect) -> None:
    """DuckDB's reader escapes only inside quoted values: a backslash outside quotes is
    text to it, but an escape to the uploader (and to Python's csv module)."""
    if dialect.escape != "\\" or not dialect.quote:
        return
    quoted = False
    for number, line in enumerate(head.splitlines(keepends=True), 1):
        escaped = False
        for char in line:
            if escaped:
                escaped = False
            elif char == "\\" and quoted:
                escaped = True
            elif char == dialect.quote:
                quoted = not quoted
            elif char == "\\":
                raise NotCsv(
                    f"line {number} has a backslash outside quotes: with escape=\\ only quotes "
                    "inside quoted values are escaped, so it would be kept as text; quote that "
                    'value, or send escape=" to read every backslash as text'
                )


def _check_comment(head: str, dialect: Dialect) -> None:
    """Comments below the header are only safe when no value holds the comment character:
    DuckDB's reader would end such a value there, silently."""
    if not dialect.comment or "comment" in dialect.why:
        return
    lines = [line for line in head.splitlines() if not line.lstrip(" ").startswith(COMMENT)]
    if holding := [n for n, line in enumerate(lines, 1) if COMMENT in line][:3]:
        raise NotCsv(
            f"some lines start with {COMMENT!r} and look like comments, but other lines hold "
            f"{COMMENT!r} too (e.g. data line {holding[0]}): send comment={COMMENT} to skip the "
            f"comment lines (a {COMMENT!r} outside quotes then ends a value), or comment=none "
            "to read them as rows"
        )


def _explain(reading: _Reading, options: CsvOptions, head: str) -> Dialect:
    dialect = reading.dialect
    _check_comment(head, dialect)
    _check_backslashes(head, dialect)
    why = dict(dialect.why)
    header = reading.rows[reading.header_at] if reading.rows else None
    # DuckDB's `skip` counts lines after dropping comment lines.
    skip = header.position(dialect) - 1 if header else 0
    if "delimiter" not in why:
        why["delimiter"] = (
            f"splits line {header.line if header else 1} into {reading.width} names, and "
            f"{reading.agreement:.0%} of the {len(reading.below)} rows below into as many"
            if reading.width > 1
            else "no delimiter splits the header: one column"
        )
    if "quote" not in why and dialect.quote != '"':
        why["quote"] = "values are quoted with single quotes (fewer malformed rows)"
    if "escape" not in why and dialect.escape == "\\":
        why["escape"] = 'quotes inside values are escaped with a backslash (\\")'
    if "comment" not in why and dialect.comment:
        why["comment"] = (
            f"lines starting with {dialect.comment!r} are comments; a {dialect.comment!r} "
            "outside quotes would end a value: send comment=none if values hold one"
        )
    if "skip" not in why and skip:
        line = header.line if header else skip + 1
        why["skip"] = (
            f"lines 1-{line - 1} are a preamble (a title, notes, comments or blank lines): no "
            f"delimiter splits line 1, and line {line} is a header the rows below agree with"
        )
    if "header" not in why:
        why["header"] = (
            f"line {header.line if header else 1} names the columns (send header=false if "
            "it is data)"
            if dialect.header
            else "given"
        )
    if "null" not in why:
        why["null"] = "empty values are NULL (send null=NA, say, for other NULL markers)"
    return replace(dialect, skip=skip, why=why)
