"""The contract `api/pgwire/compat.py` relies on: what of pg_mimic it uses beyond the
documented API is still there, and does what compat expects. An upgrade that moves any of
it fails here, not in front of a client."""

from __future__ import annotations

import inspect

import pg_mimic
from pg_mimic import connection, messages

from api.pgwire import compat
from api.pgwire.types import Column


def test_startup_negotiation_is_a_method_compat_can_override() -> None:
    negotiate = pg_mimic.PgServer._negotiate_startup
    assert inspect.iscoroutinefunction(negotiate)
    assert list(inspect.signature(negotiate).parameters) == ["self", "stream"]
    for name in ("SSL_REQUEST_CODE", "GSSENC_REQUEST_CODE", "CANCEL_REQUEST_CODE"):
        assert isinstance(getattr(messages, name), int)
    for name in ("parse_cancel_request", "parse_startup_message", "make_error_response"):
        assert callable(getattr(messages, name))
    assert "self.cancel(pid, secret)" in inspect.getsource(pg_mimic.PgServer._negotiate_startup)


def test_row_descriptions_are_built_by_the_function_compat_replaces() -> None:
    source = inspect.getsource(connection.Connection)
    assert "_field_specs(" in source
    compat.install()
    specs = connection._field_specs([Column.of("amount", "DECIMAL(18,2)")], [1])
    assert (specs[0].type_modifier, specs[0].format_code) == ((18 << 16 | 2) + 4, 1)
    assert "type_modifier" in messages.FieldSpec.__dataclass_fields__


def test_cursors_can_be_made_portals_and_copy_counts_rows() -> None:
    assert list(inspect.signature(connection.PortalEntry).parameters)[:4] == [
        "portal",
        "columns",
        "sql",
        "result_format_codes",
    ]
    source = inspect.getsource(connection.Connection)
    assert "self.portals" in source and "self.session_vars" in source
    # A statement's CommandComplete counts what Execute returned: COPY says its rows so.
    assert "entry.rows_returned += len(rows)" in source
    assert len(compat.Counted(7)) == 7 and list(compat.Counted(7)) == []


def test_messages_compat_writes() -> None:
    for name in ("make_notice_response", "make_parameter_status"):
        assert callable(getattr(messages, name))
    assert messages.make_parameter_status("a", "b")[:1] == b"S"


def test_the_row_writing_steps_compat_replaces_keep_their_signatures() -> None:
    source = inspect.getsource(connection.Connection)
    assert "await self._execute_one_simple_statement(stmt_sql)" in source
    assert "await self._handle_execute(messages.parse_execute(payload))" in source
    compat.install()
    assert connection.Connection._execute_one_simple_statement is compat._simple_statement
    assert connection.Connection._handle_execute is compat._execute
    for name in ("def _get_portal(", "self.tx_status", "self.stream", "self.session"):
        assert name in source


def test_backend_ids_and_connections_are_where_workers_route_cancels() -> None:
    source = inspect.getsource(pg_mimic.PgServer)
    assert "self._next_pid" in source and "def _allocate_pid" in source
    assert "self._connections[pid] = connection" in source
    server = compat.TlsServer(session_factory=lambda: None, first_pid=1_010_000)
    assert server._allocate_pid() == 1_010_000
    routed: list[tuple[int, int]] = []
    server.elsewhere = lambda pid, secret: routed.append((pid, secret))
    server.cancel(10_001, 42)  # not one of its connections: to the worker that has it
    assert routed == [(10_001, 42)]
