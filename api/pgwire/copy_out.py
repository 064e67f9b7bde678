"""`COPY (query) TO STDOUT`: a query's answer in Postgres's COPY formats (binary, text,
csv), streamed a batch at a time with the client's pace. ADBC's driver reads every result
this way (binary), and psql's `\\copy ... to` too (text, csv). COPY FROM is refused: the
server is read-only.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pg_mimic
from pg_mimic import PgError
from pg_mimic.middleware import MiddlewareContext
from pg_mimic.types import encode_value, encode_value_binary

from api.pgwire import compat
from api.pgwire.types import Column, parameters

if TYPE_CHECKING:
    from api.pgwire.session import LakehouseSession

BATCH_ROWS = 10_000
BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
_COPY = re.compile(
    r"""^\s*COPY\s+(?:\((?P<query>.*)\)|(?P<table>[\w."]+))\s+TO\s+STDOUT\s*
    (?:WITH\s*)?(?P<options>\(.*\)|[\w\s']*?)\s*;?\s*$""",
    re.IGNORECASE | re.DOTALL | re.VERBOSE,
)
_COPY_ANY = re.compile(r"^\s*COPY\b", re.IGNORECASE)
_TEXT_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


async def copy_out(ctx: MiddlewareContext) -> pg_mimic.Statement | None:
    if not _COPY_ANY.match(ctx.sql):
        return None
    match = _COPY.match(ctx.sql)
    if match is None:
        raise PgError(
            "25006",
            "only COPY (query) TO STDOUT is served: the server is read-only, and writes no files",
        )
    query = match["query"] or f"SELECT * FROM {match['table']}"
    binary, header = _options(match["options"] or "")
    session: LakehouseSession = ctx.connection.session
    oids = await session.parameter_types(query, ctx.param_oids)
    return _CopyOut(session, ctx.sql, query, binary, header, oids)


def _options(text: str) -> tuple[str, bool]:
    """The format (binary, text, csv) and whether a csv has a header line."""
    words = re.findall(r"\w+|'[^']*'", text.strip("() ").lower())
    fmt, header = "text", False
    for index, word in enumerate(words):
        following = words[index + 1] if index + 1 < len(words) else ""
        if word in ("binary", "csv", "text") and (index == 0 or words[index - 1] == "format"):
            fmt = word
        elif word == "header":
            header = following not in ("false", "off", "0")
        elif word not in ("format", "true", "on", "1", "false", "off", "0"):
            raise PgError("0A000", f"COPY option {word!r} is not supported: use FORMAT and HEADER")
    return fmt, header


class _CopyOut(pg_mimic.Statement):
    def __init__(
        self,
        session: LakehouseSession,
        sql: str,
        query: str,
        fmt: str,
        header: bool,
        param_oids: list[int],
    ) -> None:
        self.session, self.sql, self.query, self.fmt, self.header = (
            session,
            sql,
            query,
            fmt,
            header,
        )
        self.param_oids = param_oids  # as declared, or as the statement says (the session)

    async def describe(self) -> list[pg_mimic.ResultColumn] | None:
        return None  # COPY answers CopyOutResponse, not rows

    def bind(self, params: list[Any]) -> pg_mimic.Portal:
        return _CopyPortal(self, parameters(self.param_oids, params))


class _CopyPortal(pg_mimic.Portal):
    def __init__(self, copy: _CopyOut, params: list[Any]) -> None:
        self.copy, self.params, self.done = copy, params, False

    async def execute(self, max_rows: int) -> tuple[list[Any], bool]:
        if self.done:
            return [], False
        self.done = True
        copy = self.copy
        answer = await copy.session.start(copy.query, self.params)
        stream = copy.session.stream()
        columns = answer.columns
        compat.copy_out_response(stream, copy.fmt == "binary", len(columns))
        first = BINARY_HEADER if copy.fmt == "binary" else b""
        if copy.fmt == "csv" and copy.header:
            first = _csv([tuple(c.name for c in columns)], [])[0]
        # A row per message, as Postgres sends them (ADBC reads a message as one row); the
        # binary header travels with the first.
        pending = first
        while True:
            rows, more = await answer.take(BATCH_ROWS)
            if rows:
                lines = ENCODERS[copy.fmt](rows, columns)
                lines[0] = pending + lines[0]
                compat.copy_rows(stream, lines)
                pending = b""
                await stream.drain()  # the client's pace: memory stays one batch
            if not more:
                break
        if copy.fmt == "binary":
            pending += struct.pack("!h", -1)
        compat.copy_data(stream, pending)
        compat.copy_done(stream)
        copy.session.tell(answer)
        return compat.Counted(answer.count), False


def _binary(rows: Sequence[tuple[Any, ...]], columns: Sequence[Column]) -> list[bytes]:
    lines = []
    count = struct.pack("!h", len(columns))
    for row in rows:
        out = bytearray(count)
        for value, column in zip(row, columns, strict=True):
            if value is None:
                out += b"\xff\xff\xff\xff"
            else:
                data = encode_value_binary(column.oid, value)
                out += struct.pack("!i", len(data)) + data
        lines.append(bytes(out))
    return lines


def _text(rows: Sequence[tuple[Any, ...]], columns: Sequence[Column]) -> list[bytes]:
    lines = []
    for row in rows:
        fields = [
            "\\N" if v is None else encode_value(c.oid, v).translate(_TEXT_ESCAPES)
            for v, c in zip(row, columns, strict=True)
        ]
        lines.append(("\t".join(fields) + "\n").encode())
    return lines


def _csv(rows: Sequence[tuple[Any, ...]], columns: Sequence[Column]) -> list[bytes]:
    """CSV as Postgres writes it: NULL is an empty field, an empty string is `""`."""
    lines = []
    for row in rows:
        fields = []
        for index, value in enumerate(row):
            if value is None:
                fields.append("")
                continue
            text = encode_value(columns[index].oid, value) if columns else str(value)
            if text == "" or any(ch in text for ch in ',"\n\r'):
                text = '"' + text.replace('"', '""') + '"'
            fields.append(text)
        lines.append((",".join(fields) + "\n").encode())
    return lines


ENCODERS = {"binary": _binary, "text": _text, "csv": _csv}
