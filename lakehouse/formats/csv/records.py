"""A CSV's records, read by Python's csv module as a dialect says, the way DuckDB's reader
will read them: lines split at CRLF, LF or CR, comment lines passed over and values cut at
an unquoted comment character, malformed records marked rather than raised."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass

from lakehouse.formats.csv.dialect import LINE_ENDS, Dialect

# The csv module refuses fields over 128 KiB by default; the sample's size bounds them.
FIELD_LIMIT = 2**31 - 1


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
