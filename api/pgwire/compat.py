"""What the Postgres endpoint needs of pg_mimic beyond its documented API, in one place.

pg_mimic documents sessions, statements, portals, middleware and auth plugins; what here
reaches past them is pinned by tests/unit/api/pgwire/test_compat.py, so an upgrade that
moves it fails there, not in front of a client:

- TLS: pg_mimic answers every SSLRequest with 'N'. `TlsServer` overrides its startup
  negotiation (`PgServer._negotiate_startup`) to answer 'S' and upgrade the stream.
- Workers: `TlsServer` starts its backend ids at a worker's own (`PgServer._next_pid`) and
  routes a cancel request by them (`PgServer._connections`).
- Type modifiers: RowDescription is built by `pg_mimic.connection._field_specs` from a
  column's name and OID only; `numeric(p,s)` needs the modifier too.
- Streaming: pg_mimic's Connection writes a whole answer before it waits for the client;
  `install` replaces its two row-writing steps with ones that write a batch, then drain.
- Messages a session sends on its own (a notice, a parameter status, COPY's messages),
  and DECLAREd cursors made protocol portals (`Connection.portals`).
"""

from __future__ import annotations

import ssl
import struct
from collections.abc import Callable
from typing import Any

import pg_mimic
from pg_mimic import PgError, messages
from pg_mimic import connection as pg_connection
from pg_mimic.errors import FEATURE_NOT_SUPPORTED, IN_FAILED_SQL_TRANSACTION
from pg_mimic.middleware import is_transaction_end
from pg_mimic.results import encode_row
from pg_mimic.stream import PgStream

from api.pgwire.types import Column

TLS_REQUIRED = (
    "this server accepts encrypted connections only: connect with sslmode=require "
    "(or verify-full with the server's certificate)"
)


class TlsServer(pg_mimic.PgServer):
    """A PgServer that answers SSLRequest with TLS when it has a certificate, and then
    refuses connections that did not ask for it (a token must not cross in the clear); one
    of several workers (`api.pgwire.workers`): its backend ids start at `first_pid`, and a
    cancel request for a connection it does not hold goes `elsewhere`. `check_startup`
    reads the startup packet's settings: its PgError refuses the connection (FATAL), as
    Postgres refuses a setting it cannot take."""

    def __init__(
        self,
        *args: Any,
        tls: ssl.SSLContext | None = None,
        first_pid: int = 10_000,
        elsewhere: Callable[[int, int], None] = lambda pid, secret: None,
        check_startup: Callable[[dict[str, str]], object] = lambda params: None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.tls = tls
        self.elsewhere = elsewhere
        self.check_startup = check_startup
        self._next_pid = first_pid

    def cancel(self, pid: int, secret: int) -> None:
        if pid in self._connections:
            super().cancel(pid, secret)
        else:
            self.elsewhere(pid, secret)

    async def _negotiate_startup(self, stream: PgStream) -> dict[str, str] | None:
        code, payload = await stream.read_startup_packet()
        encrypted = False
        if code == messages.SSL_REQUEST_CODE and self.tls is not None:
            stream.write(b"S")
            await stream.drain()
            await stream.writer.start_tls(self.tls)
            encrypted = True
            code, payload = await stream.read_startup_packet()
        elif code in (messages.SSL_REQUEST_CODE, messages.GSSENC_REQUEST_CODE):
            stream.write(b"N")
            await stream.drain()
            code, payload = await stream.read_startup_packet()
        if code == messages.CANCEL_REQUEST_CODE:
            pid, secret = messages.parse_cancel_request(payload)
            self.cancel(pid, secret)
            await stream.close()
            return None
        if self.tls is not None and not encrypted:
            stream.write(
                messages.make_error_response({"S": "FATAL", "C": "28000", "M": TLS_REQUIRED})
            )
            await stream.drain()
            await stream.close()
            return None
        params: dict[str, str] = messages.parse_startup_message(payload)
        try:
            self.check_startup(params)
        except PgError as exc:
            fields = {"S": "FATAL", "V": "FATAL", "C": exc.sqlstate, "M": exc.message}
            stream.write(messages.make_error_response(fields))
            await stream.drain()
            await stream.close()
            return None
        return params


def _field_specs(
    columns: list[pg_mimic.ResultColumn], format_codes: list[int] | None = None
) -> list[messages.FieldSpec]:
    codes = format_codes or []
    return [
        messages.FieldSpec(
            name=c.name,
            oid=c.oid,
            type_modifier=c.type_modifier if isinstance(c, Column) else -1,
            format_code=codes[0] if len(codes) == 1 else (codes[i] if codes else 0),
        )
        for i, c in enumerate(columns)
    ]


def install() -> None:
    """Make RowDescription carry each column's type modifier (numeric(p,s)), and answers
    go out a batch at a time, at the client's pace."""
    pg_connection._field_specs = _field_specs
    pg_connection.Connection._execute_one_simple_statement = _simple_statement
    pg_connection.Connection._handle_execute = _execute


def notice(stream: PgStream, message: str) -> None:
    """A NoticeResponse (psql prints it; drivers hand it to a notice handler)."""
    stream.write(
        messages.make_notice_response({"S": "NOTICE", "V": "NOTICE", "C": "00000", "M": message})
    )


def parameter_status(stream: PgStream, name: str, value: str) -> None:
    """A ParameterStatus: the client's view of a server parameter, sent at any time."""
    stream.write(messages.make_parameter_status(name, value))


def _message(tag: bytes, payload: bytes) -> bytes:
    return tag + struct.pack("!i", len(payload) + 4) + payload


def copy_out_response(stream: PgStream, binary: bool, columns: int) -> None:
    """CopyOutResponse: a COPY TO STDOUT begins (every column in one format)."""
    code = 1 if binary else 0
    payload = struct.pack("!bh", code, columns) + struct.pack("!h", code) * columns
    stream.write(_message(b"H", payload))


def copy_data(stream: PgStream, data: bytes) -> None:
    if data:
        stream.write(_message(b"d", data))


def copy_done(stream: PgStream) -> None:
    stream.write(_message(b"c", b""))


class Counted(list[Any]):
    """No rows, but a length: pg_mimic tags a statement's CommandComplete with the length
    of what Execute returned, and a COPY's rows went out as CopyData ("COPY n")."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.rows = count

    def __len__(self) -> int:
        return self.rows


def open_portal(
    connection: Any, name: str, portal: pg_mimic.Portal, columns: list[Column], sql: str
) -> None:
    """Make a DECLAREd cursor a protocol portal too, as Postgres does: psycopg describes
    its server-side cursors by portal name (Describe 'P')."""
    connection.portals[name] = pg_connection.PortalEntry(portal, columns, sql, [])


def close_portal(connection: Any, name: str) -> None:
    connection.portals.pop(name, None)


def copy_rows(stream: PgStream, rows: list[bytes]) -> None:
    """CopyData messages, one per row, written at once."""
    stream.write(b"".join(_message(b"d", row) for row in rows))


# Rows written per batch of an answer, between which the connection waits for the client
# (pg_mimic writes a whole answer before it drains: memory would grow with the answer).
STREAM_ROWS = 10_000


async def _simple_statement(self: Any, sql: str) -> None:
    """Connection._execute_one_simple_statement, writing the rows a batch at a time."""
    if self.tx_status == b"E" and not is_transaction_end(sql):
        raise PgError(IN_FAILED_SQL_TRANSACTION, "current transaction is aborted, commands ignored")
    if not sql.strip():
        self.stream.write(messages.make_empty_query_response())
        return
    statement = await self.session.prepare(sql, [])
    portal = statement.bind([])  # then describe, as pg_mimic's Bind does: one trip
    columns = await statement.describe()
    if columns is not None:
        self.stream.write(messages.make_row_description(_field_specs(columns)))
    total = 0
    while True:
        rows, suspended = await portal.execute(STREAM_ROWS)
        total += len(rows)
        if columns is not None:
            await _write_rows(self.stream, rows, columns, [])
        if not suspended:
            break
    self.stream.write(messages.make_command_complete(pg_connection.command_tag(sql, total)))


async def _execute(self: Any, parsed: Any) -> None:
    """Connection._handle_execute, writing the rows a batch at a time."""
    entry = self._get_portal(parsed.portal_name)
    if self.tx_status == b"E" and not is_transaction_end(entry.sql):
        raise PgError(IN_FAILED_SQL_TRANSACTION, "current transaction is aborted, commands ignored")
    limit, sent = parsed.max_rows, 0
    while True:
        want = STREAM_ROWS if limit <= 0 else min(STREAM_ROWS, limit - sent)
        rows, suspended = await entry.portal.execute(want)
        entry.rows_returned += len(rows)
        sent += len(rows)
        if entry.columns is not None:
            await _write_rows(self.stream, rows, entry.columns, entry.result_format_codes)
        if not suspended:
            tag = pg_connection.command_tag(entry.sql, entry.rows_returned)
            self.stream.write(messages.make_command_complete(tag))
            return
        if 0 < limit <= sent:
            self.stream.write(messages.make_portal_suspended())
            return


async def _write_rows(
    stream: PgStream, rows: list[Any], columns: list[Any], format_codes: list[int]
) -> None:
    try:
        stream.write(
            b"".join(messages.make_data_row(encode_row(r, columns, format_codes)) for r in rows)
        )
    except ValueError as exc:
        raise PgError(FEATURE_NOT_SUPPORTED, str(exc)) from None
    await stream.drain()
