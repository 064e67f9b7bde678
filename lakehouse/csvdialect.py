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

import csv
import io
import itertools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

DELIMITERS = (",", ";", "\t", "|")
QUOTES = ('"', "'")
ENCODINGS = ("utf-8", "latin-1", "utf-16")  # what DuckDB's CSV reader reads without extensions
UTF8_BOM = b"\xef\xbb\xbf"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
COMMENT = "#"
# The dialect is chosen from this many first records (of at most this many characters).
SNIFF_ROWS = 50
SNIFF_CHARS = 65536
# Lines above a header that may be a title, blank lines or comments.
MAX_PREAMBLE_LINES = 20
# Rows below a header that must agree with it for lines above it to count as a preamble.
PREAMBLE_AGREEMENT = 0.9
# The csv module refuses fields over 128 KiB by default; the sample's size bounds them.
FIELD_LIMIT = 2**31 - 1
LINE_ENDS = {"\r\n": "CRLF", "\n": "LF", "\r": "CR"}
MAX_SKIP = 10_000


class NotCsv(ValueError):
    """The bytes are not CSV text we can read (binary, undecodable, no header), or its
    first lines allow two readings: the message says which parameter to send."""


@dataclass(frozen=True)
class Dialect:
    """What DuckDB's CSV reader is told about a file; `why` says why each was chosen."""

    delimiter: str = ","
    quote: str = '"'  # "" for none
    escape: str = '"'  # the quote itself: doubled quotes; "\\": backslash escapes
    header: bool = True
    skip: int = 0  # physical lines before the header (or the first row): a preamble
    comment: str = ""  # lines starting with it are skipped ("" for none)
    nulls: tuple[str, ...] = ("",)
    encoding: str = "utf-8"
    why: dict[str, str] = field(default_factory=dict)

    def described(self) -> dict[str, object]:
        """The dialect as receipts and the catalog show it, in the API's parameter names."""
        return {
            "delimiter": self.delimiter,
            "quote": self.quote,
            "escape": self.escape,
            "header": self.header,
            "skipped_lines": self.skip,
            "comment": self.comment,
            "null": list(self.nulls),
            "encoding": self.encoding,
            "dialect_reasons": dict(self.why),
        }


@dataclass(frozen=True)
class CsvOptions:
    """The dialect parameters an uploader gave (None: find it in the file)."""

    delimiter: str | None = None
    quote: str | None = None
    escape: str | None = None
    header: bool | None = None
    skip: int | None = None
    comment: str | None = None
    nulls: tuple[str, ...] | None = None
    encoding: str | None = None

    @classmethod
    def parse(
        cls,
        *,
        delimiter: str | None = None,
        quote: str | None = None,
        escape: str | None = None,
        header: str | None = None,
        skip: str | int | None = None,
        comment: str | None = None,
        nulls: Sequence[str] | None = None,
        encoding: str | None = None,
    ) -> CsvOptions:
        """Options from request parameters, as text; `InvalidOption` names a bad one."""
        return cls(
            delimiter=_delimiter(delimiter),
            quote=_none_or_char("quote", quote, allowed=QUOTES),
            escape=_none_or_char("escape", escape, allowed=('"', "'", "\\")),
            header=_boolean("header", header),
            skip=_count("skip", skip),
            comment=_none_or_char("comment", comment, allowed=None),
            nulls=tuple(nulls) if nulls else None,
            encoding=_encoding(encoding),
        )

    def __post_init__(self) -> None:
        if self.quote == "" and self.escape:
            raise InvalidOption(
                f"escape={self.escape!r} with quote=none: nothing is quoted, so nothing can be "
                "escaped; send escape=none, or the quote character the file uses"
            )

    def given(self) -> list[str]:
        """The request parameters that were sent (`null` for `nulls`)."""
        return [_PARAMETER.get(k, k) for k, v in self.__dict__.items() if v is not None]


_PARAMETER = {"nulls": "null"}  # field -> request parameter, where they differ


class InvalidOption(ValueError):
    """A dialect parameter that cannot be used: the message names it and what to send."""


def _delimiter(value: str | None) -> str | None:
    if value is None:
        return None
    value = {"tab": "\t", "\\t": "\t"}.get(value.lower(), value)
    if len(value) != 1 or value in "\r\n\"'" or not value.isprintable() and value != "\t":
        raise InvalidOption(
            f"delimiter={value!r}: send one character that is not a quote or a line break, "
            "e.g. delimiter=, or delimiter=; or delimiter=tab"
        )
    return value


def _none_or_char(name: str, value: str | None, allowed: Sequence[str] | None) -> str | None:
    if value is None:
        return None
    if value.lower() in {"none", ""}:
        return ""
    if len(value) != 1 or (allowed is not None and value not in allowed):
        choices = ", ".join(f"{name}={c}" for c in allowed or ("#",))
        raise InvalidOption(f"{name}={value!r}: send {choices} or {name}=none")
    return value


def _boolean(name: str, value: str | None) -> bool | None:
    if value is None:
        return None
    if value.lower() in {"true", "1", "yes"}:
        return True
    if value.lower() in {"false", "0", "no"}:
        return False
    raise InvalidOption(f"{name}={value!r}: send {name}=true or {name}=false")


def _count(name: str, value: str | int | None) -> int | None:
    if value is None:
        return None
    text = str(value)
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_SKIP:
        raise InvalidOption(f"{name}={value!r}: send a number of lines from 0 to {MAX_SKIP}")
    return int(text)


def _encoding(value: str | None) -> str | None:
    if value is None:
        return None
    normal = value.lower().replace("_", "-")
    normal = {"utf8": "utf-8", "latin1": "latin-1", "iso-8859-1": "latin-1", "utf16": "utf-16"}.get(
        normal, normal
    )
    if normal not in ENCODINGS:
        raise InvalidOption(f"encoding={value!r}: send one of {', '.join(ENCODINGS)}")
    return normal


# -- decoding -------------------------------------------------------------------------------


def decode(sample: bytes, *, complete: bool, encoding: str | None) -> tuple[str, str, str]:
    """The sample as text (a cut last line dropped), the encoding, and why it was chosen."""
    if encoding is None:
        encoding, why = _find_encoding(sample)
    else:
        why = "given"
    if encoding == "utf-16":
        return _decode_utf16(sample, complete=complete), encoding, why
    if not complete:
        cut = max(sample.rfind(b"\n"), sample.rfind(b"\r"))
        if cut < 0:
            raise NotCsv(
                f"no line end in the first {len(sample)} bytes: the header line is too "
                "long, or this is not a line-based CSV file"
            )
        sample = sample[: cut + 1]
    if encoding == "latin-1":
        return sample.decode("latin-1"), encoding, why
    try:
        return sample.removeprefix(UTF8_BOM).decode("utf-8"), encoding, why
    except UnicodeDecodeError as exc:
        raise NotCsv(
            f"the file is not UTF-8 text (byte {exc.start}): convert it to UTF-8, or send "
            "encoding=latin-1 if it is Latin-1 (ISO-8859-1) text"
        ) from exc


def _find_encoding(sample: bytes) -> tuple[str, str]:
    if sample.startswith(UTF16_BOMS):
        return "utf-16", "the file starts with a UTF-16 byte order mark"
    if b"\x00" in sample:
        raise NotCsv(
            "the file is not text (it contains NUL bytes): send a UTF-8 CSV, or "
            "encoding=utf-16 if it is UTF-16 text"
        )
    return "utf-8", "the default (and the file decodes as UTF-8)"


def _decode_utf16(sample: bytes, *, complete: bool) -> str:
    even = sample[: len(sample) - len(sample) % 2]
    for trim in (0, 2):  # a cut may split a surrogate pair
        try:
            text = even[: len(even) - trim].decode("utf-16")
            break
        except UnicodeDecodeError:
            continue
    else:
        raise NotCsv("the file is not UTF-16 text: send encoding=utf-8 or encoding=latin-1")
    text = text.removeprefix("\ufeff")
    if "\x00" in text:
        raise NotCsv("the file is not text (it contains NUL characters): send a UTF-8 CSV")
    if not complete:
        cut = max(text.rfind("\n"), text.rfind("\r"))
        if cut < 0:
            raise NotCsv("no line end in the sample: the header line is too long")
        text = text[: cut + 1]
    return text


# -- records --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """One CSV record: its first physical line (1-based), fields and line end."""

    line: int
    fields: list[str]
    end: str
    error: str = ""  # the csv module's complaint, if the record is malformed
    kept: int = 0  # its first line's number among the lines that are not comments

    def position(self, dialect: Dialect) -> int:
        """Its line as DuckDB's `skip` counts: comment lines are dropped before skipping."""
        return self.kept if dialect.comment else self.line


class Lines:
    """The text's lines, split at CRLF, LF or CR as DuckDB does, numbered. With a comment
    character, comment lines are passed over and the rest is cut at an unquoted comment
    character, as DuckDB's reader does."""

    def __init__(self, text: str, comment: str = "", quote: str = "") -> None:
        self._lines = io.StringIO(text, newline="")
        self.comment, self.quote = comment, quote
        self.number = 0  # physical lines read, comments included
        self.kept = 0  # lines read that are not comments
        self.first = (0, 0)  # (number, kept) of the first line returned since `begin`
        self.end = ""
        self.read = 0  # characters read
        self._quoted = False  # inside a quoted value at the end of the last line

    def begin(self) -> None:
        """A new record starts with the next line returned."""
        self.first = (0, 0)

    def __iter__(self) -> Lines:
        return self

    def __next__(self) -> str:
        while True:
            line = next(self._lines)
            self.number += 1
            self.read += len(line)
            self.end = next((end for end in LINE_ENDS if line.endswith(end)), "")
            if not self.comment:
                break
            if not self._quoted and line.lstrip(" ").startswith(self.comment):
                continue
            line = self._cut_comment(line)
            break
        self.kept += 1
        self.first = self.first if self.first[0] else (self.number, self.kept)
        return line

    def _cut_comment(self, line: str) -> str:
        if self.comment not in line:
            self._quoted ^= bool(self.quote) and line.count(self.quote) % 2 == 1
            return line
        for at, char in enumerate(line):
            if char == self.quote:
                self._quoted = not self._quoted
            elif char == self.comment and not self._quoted:
                return line[:at] + self.end
        return line


def records(
    text: str, dialect: Dialect, *, complete: bool, limit: int | None = None
) -> Iterator[Record]:
    """The records of `text` read as `dialect` says, from its first line (skip and header
    included), malformed ones marked. A cut sample (`complete` false) ends at a line end,
    so only its last record can be cut: inside a quoted value, which a line break does not
    end; it is left out."""
    _allow_long_fields()
    lines = Lines(text, dialect.comment, dialect.quote)
    reader = _csv_reader(lines, dialect)
    count = 0
    while limit is None or count < limit:
        start = lines.read
        lines.begin()
        try:
            fields = next(reader)
            error = ""
        except StopIteration:
            return
        except csv.Error as exc:
            fields, error = [], str(exc)
        if count and not complete and lines.read >= len(text) and _open_quote(text, start, dialect):
            return
        count += 1
        line, kept = lines.first if lines.first[0] else (lines.number, lines.kept)
        yield Record(line, fields, lines.end, error, kept)


def _open_quote(text: str, start: int, dialect: Dialect) -> bool:
    """Whether the text from `start` on ends inside a quoted value (an odd quote count)."""
    return bool(dialect.quote) and text.count(dialect.quote, start) % 2 == 1


def unreadable(error: str) -> str:
    """What a csv module complaint means, and the parameter that would change it."""
    if "unexpected end of data" in error:
        return (
            "a quoted value is never closed: close its quote, or send quote=none if quote "
            "characters are part of the values"
        )
    if "expected after" in error:
        return (
            "text follows a closing quote: quote the whole value (doubling quotes inside it), "
            "send escape=\\ if quotes inside values are escaped with a backslash, or "
            "quote=none if quote characters are part of the values"
        )
    return f"{error}: send the file as CSV (RFC 4180)"


def _csv_reader(lines: Lines, dialect: Dialect) -> Iterator[list[str]]:
    """Python's csv module, reading as `dialect` says (strictly: malformed quoting raises)."""
    if not dialect.quote:
        return csv.reader(lines, delimiter=dialect.delimiter, quoting=csv.QUOTE_NONE, strict=True)
    backslash = dialect.escape == "\\"
    return csv.reader(
        lines,
        delimiter=dialect.delimiter,
        quotechar=dialect.quote,
        escapechar="\\" if backslash else None,
        doublequote=not backslash,
        strict=True,
    )


def _allow_long_fields() -> None:
    # The sample (at most a few MiB) bounds every field; the csv module's own limit
    # (128 KiB) would refuse a long but valid value. Only ever raised, never lowered.
    if csv.field_size_limit() < FIELD_LIMIT:
        csv.field_size_limit(FIELD_LIMIT)


# -- sniffing -------------------------------------------------------------------------------


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
    readings = [
        _read(head, replace(base, delimiter=d, quote=q, escape=e, comment=c), head_complete)
        for d, q, e, c in _candidates(head, options)
    ]
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
