"""Nothing vanishes: every data line of an applied file is a stored row or a rejected one.

`data_lines` counts the records the reader had to read: the file's physical lines (counted
as the upload arrived) less the skipped ones, the header, blank and comment lines, and line
breaks inside quoted values. When every line past the header is one record, the count from
the upload proves it with no more reading ("line ends"). Otherwise one pass over the file's
bytes tells blank lines, comments and quoted line breaks apart ("reading"): a line starts a
record unless it starts inside a quoted value (an odd number of quotes before it), and that
pass also finds the line of each row the conversion left out.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from lakehouse.formats.csv.schema import CsvSchema


@dataclass(frozen=True)
class LineAccount:
    """Where a file's lines went; `counted_by`: "line ends" or "reading" (above)."""

    data_lines: int
    rows: int
    rejected: int
    counted_by: str

    @property
    def balanced(self) -> bool:
        return self.rows + self.rejected == self.data_lines


def lines_past_header(schema: CsvSchema, lines: int | None) -> int | None:
    """The data lines of a file of `lines` physical lines, if each is one record (None when
    comments may hide some, or the lines were not counted)."""
    if lines is None or schema.comment:
        return None
    return lines - schema.skip - (1 if schema.header else 0)


@dataclass
class Records:
    """What one pass over a file found: its records past the header, and the line of each
    readable row asked for (readable: not on a line the reader rejected)."""

    count: int
    lines_of_rows: dict[int, int]


def read_records(
    chunks: Iterable[bytes],
    schema: CsvSchema,
    *,
    rows: Iterable[int] = (),
    rejected_lines: Iterable[int] = (),
) -> Records:
    """Count the records of the file whose bytes are `chunks`, and find the line where each
    readable row in `rows` (1-based, in file order) starts. Memory: a line at a time."""
    wanted = sorted(set(rows))
    rejected = set(rejected_lines)
    found: dict[int, int] = {}
    count = readable = 0
    for line in record_starts(chunks, schema):
        count += 1
        if line in rejected:
            continue
        readable += 1
        if wanted and readable == wanted[0]:
            found[readable] = line
            wanted.pop(0)
    return Records(count, found)


def record_starts(chunks: Iterable[bytes], schema: CsvSchema) -> Iterator[int]:
    """The physical line (1-based) where each record past the header starts."""
    quote = schema.quote
    escaped_quote = "\\" + quote if schema.escape == "\\" and quote else ""
    inside = False
    kept = 0  # lines that are not comments: what DuckDB's `skip` counts, when comments are on
    before = schema.skip + (1 if schema.header else 0)
    for number, line in enumerate(_lines(chunks, schema.encoding), 1):
        starts_inside = inside
        if quote:
            body = line.replace("\\\\", "").replace(escaped_quote, "") if escaped_quote else line
            inside ^= body.count(quote) % 2 == 1
        if starts_inside:
            continue
        if schema.comment and line.lstrip(" ").startswith(schema.comment):
            continue
        kept += 1
        # A blank line is no record, but in a one-column file, where it is a NULL.
        if (kept if schema.comment else number) > before and (line or len(schema.columns) == 1):
            yield number


def _lines(chunks: Iterable[bytes], encoding: str) -> Iterator[str]:
    """The file's lines without their ends, split as DuckDB splits them: at LF (a CR before
    it belongs to the end), or at CR in a file with no LF."""
    decoder = codecs.getincrementaldecoder(_codec(encoding))(errors="replace")
    pending = separator = ""
    for chunk in chunks:
        text = pending + decoder.decode(chunk)
        if not separator:  # the first line end says which (the header is in the first MiB)
            separator = "\n" if "\n" in text else "\r" if "\r" in text else ""
        if not separator:
            pending = text
            continue
        parts = text.split(separator)
        pending = parts.pop()
        yield from (part.removesuffix("\r") for part in parts)
    rest = pending + decoder.decode(b"", final=True)
    if rest:
        yield rest.removesuffix("\r")


def _codec(encoding: str) -> str:
    return {"utf-8": "utf-8-sig", "latin-1": "latin-1", "utf-16": "utf-16"}[encoding]
