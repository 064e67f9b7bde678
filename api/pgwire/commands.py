"""The statements a Postgres session answers itself, ahead of pg_mimic's middleware:
`SET`/`RESET` and a few session statements, savepoints, `DECLARE`/`FETCH`/`CLOSE`
cursors (how psycopg's server-side cursors, and any client that pages a large answer, read
one a batch at a time), and catalog queries (`api.pgwire.catalog`).

Each is a middleware link (`async (ctx) -> Statement | None`, None: not ours).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import pg_mimic
from pg_mimic import PgError
from pg_mimic.middleware import MiddlewareContext

from api.pgwire import compat, settings
from api.pgwire.catalog import reads_catalog
from api.pgwire.types import parameters

if TYPE_CHECKING:
    from api.pgwire.session import LakehouseSession

AS_OF = settings.AS_OF
_SETTING = r'(?:"(?P<quoted>(?:[^"]|"")+)"|(?P<bare>[\w.]+))'
_SET = re.compile(
    rf"^\s*SET\s+(?:SESSION\s+|LOCAL\s+)?(?:{_SETTING}\s*(?:TO|=)|TIME\s+ZONE)\s*"
    r"(?P<value>.*?)\s*;?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_RESET = re.compile(rf"^\s*RESET\s+(?:(?P<all>ALL)|{_SETTING})\s*;?\s*$", re.IGNORECASE)
# A transaction's modes: BEGIN / START TRANSACTION with modes, SET TRANSACTION, and SET
# SESSION CHARACTERISTICS AS TRANSACTION.
_MODES = re.compile(
    r"^\s*(?:BEGIN(?:\s+WORK|\s+TRANSACTION)?|START\s+TRANSACTION"
    r"|(?P<set>SET\s+(?:SESSION\s+CHARACTERISTICS\s+AS\s+)?TRANSACTION))"
    r"\s+(?P<modes>\w.*?)\s*;?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_VERSION = re.compile(r"^\s*SELECT\s+(?:pg_catalog\.)?version\(\)\s*;?\s*$", re.IGNORECASE)
VERSION = "PostgreSQL 16.0 (lakehouse: DuckDB over the datasets, read-only)"
# SHOW of the settings Postgres spells in several words (`SHOW TRANSACTION ISOLATION LEVEL`).
_SHOW_WORDS = re.compile(r"^\s*SHOW\s+(TRANSACTION\s+ISOLATION\s+LEVEL|TIME\s+ZONE)\s*;?\s*$", re.I)
_SHOW = re.compile(r'^\s*SHOW\s+"?([\w.]+)"?\s*;?\s*$', re.IGNORECASE)
_NAME = r'(?:"((?:[^"]|"")+)"|(\w+))'
_DECLARE = re.compile(
    rf"^\s*DECLARE\s+{_NAME}\s+(?:BINARY\s+)?(?:INSENSITIVE\s+|ASENSITIVE\s+)?(?:NO\s+)?"
    r"(?:SCROLL\s+)?CURSOR\s+(?:(WITH|WITHOUT)\s+HOLD\s+)?FOR\s+(.*?)\s*;?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_FETCH = re.compile(
    rf"^\s*FETCH\s+(?:(?:FORWARD|NEXT)\s+)?(?:(\d+|ALL)\s+)?(?:(?:FROM|IN)\s+)?{_NAME}\s*;?\s*$",
    re.IGNORECASE,
)
_CLOSE = re.compile(rf"^\s*CLOSE\s+(?:(ALL)|{_NAME})\s*;?\s*$", re.IGNORECASE)
# Savepoints: a read-only session has nothing to roll back to, but their names are kept as
# Postgres keeps them (25P01 outside a transaction, 3B001 for one there is not).
_SAVEPOINT = re.compile(
    rf"^\s*(SAVEPOINT|RELEASE(?:\s+SAVEPOINT)?|ROLLBACK\s+TO(?:\s+SAVEPOINT)?)\s+{_NAME}"
    r"\s*;?\s*$",
    re.IGNORECASE,
)
_TRANSACTION_END = re.compile(r"^\s*(COMMIT|END|ROLLBACK|ABORT)\b", re.IGNORECASE)
# Literals, quoted names and comments (no parameter inside them), or a parameter.
_PLACEHOLDER = re.compile(
    r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/|\$(\d+)", re.DOTALL
)


def parameter_count(sql: str) -> int:
    """How many parameters ($1, $2...) a statement takes: the highest number it names."""
    numbers = [int(m[1]) for m in _PLACEHOLDER.finditer(sql) if m[1]]
    return max(numbers, default=0)


def _session(ctx: MiddlewareContext) -> LakehouseSession:
    session: LakehouseSession = ctx.connection.session
    return session


def _name(quoted: str | None, bare: str | None) -> str:
    return quoted.replace('""', '"') if quoted else (bare or "").lower()


async def session_statements(ctx: MiddlewareContext) -> pg_mimic.Statement | None:
    """`SELECT version()`, the SHOWs Postgres spells in several words, `SHOW` of a setting
    the server does not have (42704), and every `SET`/`RESET`, checked as Postgres checks
    them (`settings`): `SET lakehouse.as_of = '{"sales": 3}'` pins earlier versions
    (`RESET` or `TO DEFAULT`: the current ones); `SHOW lakehouse.as_of` and `SHOW
    lakehouse.datasets`, the versions the last query read, are plain session settings."""
    if _VERSION.match(ctx.sql):
        column = pg_mimic.ResultColumn("version", pg_mimic.TEXT)
        return pg_mimic.StaticStatement(ctx.sql, [column], [(VERSION,)])
    words = _SHOW_WORDS.match(ctx.sql)
    if words:
        name = "timezone" if words[1].upper().startswith("TIME") else "transaction_isolation"
        value = ctx.connection.session_vars.get(name, "")
        return pg_mimic.StaticStatement(
            ctx.sql, [pg_mimic.ResultColumn(name, pg_mimic.TEXT)], [(value,)]
        )
    show = _SHOW.match(ctx.sql)
    if show and show[1].lower() not in ctx.connection.session_vars:
        # Never an empty value for a name the server does not have (as pg_mimic would):
        # Postgres's own answer.
        raise PgError("42704", f'unrecognized configuration parameter "{show[1]}"')
    if modes := _MODES.match(ctx.sql):
        settings.check_modes(modes["modes"])
        if modes["set"]:
            return pg_mimic.StaticStatement(ctx.sql, None, [])
        return None  # BEGIN / START TRANSACTION: pg_middleware.transaction_control
    if match := _SET.match(ctx.sql):
        named = match["bare"] or match["quoted"]
        name = _name(match["quoted"], match["bare"]) if named else "timezone"  # SET TIME ZONE
        value = match["value"]
        return set_statement(ctx, name, None if _is_default(value) else value)
    if match := _RESET.match(ctx.sql):
        if match["all"]:
            return set_statement(ctx, None, None)
        return set_statement(ctx, _name(match["quoted"], match["bare"]), None)
    return None


def set_statement(
    ctx: MiddlewareContext,
    name: str | None,
    value: str | None,
    answer: pg_mimic.ResultColumn | None = None,
) -> pg_mimic.StaticStatement:
    """`SET name = value`, `RESET name` (value None) or `RESET ALL` (name None), checked
    now and applied when executed (a Parse must not change the session); with `answer`,
    as `SELECT set_config(...)`, whose one row is the value set."""
    names = [n for n in ctx.connection.session_vars if n not in settings.SERVER_SET]
    checked = [settings.check(n, value) for n in ([name] if name is not None else names)]
    as_of = None
    if name is not None and checked[0].name == AS_OF and value is not None:
        as_of = settings.parse_as_of(value)
    session = _session(ctx)

    def apply() -> None:
        for one in checked:
            if one.name == AS_OF:
                session.as_of = as_of or {}
                shown = json.dumps(as_of, separators=(",", ":")) if as_of else ""
                ctx.connection.session_vars[AS_OF] = shown
            elif value is None:
                settings.reset(ctx.connection.session_vars, one.name)
            else:
                ctx.connection.session_vars[one.name] = settings.unquoted(value)
            if one.notice:
                compat.notice(ctx.connection.stream, one.notice)

    if answer is None:
        return pg_mimic.StaticStatement(ctx.sql, None, [], apply)
    return pg_mimic.StaticStatement(ctx.sql, [answer], [(settings.unquoted(value or ""),)], apply)


async def setting_functions(ctx: MiddlewareContext) -> pg_mimic.Statement | None:
    """`SELECT current_setting(name [, missing_ok])` and `SELECT set_config(name, value,
    is_local)` alone, answered as Postgres answers them (42704 for a name the session does
    not have, unless missing_ok: NULL); `set_config` checked as `SET` is. Inside a larger
    table-less SELECT their names are checked the same way, and pg_mimic answers (the
    catalog, where one is missing_ok's NULL: pg_mimic would answer '')."""
    select = ctx.select_without_tables()
    calls = settings.calls(select) if select is not None else []
    if not calls:
        return None
    kept = ctx.connection.session_vars
    alone = select is not None and len(select.expressions) == 1 and len(calls) == 1
    missing = False
    for call in calls:
        if call.function == "current_setting":
            value = settings.current(kept, call.name, call.flag)
            if alone:
                column = pg_mimic.ResultColumn(call.column, pg_mimic.TEXT)
                return pg_mimic.StaticStatement(ctx.sql, [column], [(value,)])
            missing = missing or value is None
        elif alone:
            column = pg_mimic.ResultColumn(call.column, pg_mimic.TEXT)
            return set_statement(ctx, call.name, call.value, column)
        elif settings.check(call.name, call.value).name == AS_OF:
            raise PgError("0A000", f"set {AS_OF} with SET, or set_config() alone in a SELECT")
    if not missing:
        return None
    if any(call.function == "set_config" for call in calls):
        raise PgError("0A000", "send set_config() and current_setting(name, true) apart")
    return _CatalogQuery(_session(ctx), ctx.sql, ctx.param_oids)


def _is_default(value: str) -> bool:
    return value.strip().upper() == "DEFAULT"


async def cursors(ctx: MiddlewareContext) -> pg_mimic.Statement | None:
    """DECLARE name CURSOR FOR query, FETCH [n | ALL] FROM name, CLOSE name | ALL; a
    transaction's end closes its cursors (WITH HOLD ones stay until CLOSE)."""
    session = _session(ctx)
    savepoint = _SAVEPOINT.match(ctx.sql)
    if savepoint:
        return _savepoint(ctx, savepoint[1].split()[0].upper(), _name(savepoint[2], savepoint[3]))
    if _TRANSACTION_END.match(ctx.sql):
        session.savepoints.clear()
        for name in [n for n, a in session.cursors.items() if not a.held]:
            await session.close_cursor(name)
        return None  # the transaction itself: pg_mimic's middleware
    if match := _DECLARE.match(ctx.sql):
        name, held, query = _name(match[1], match[2]), (match[3] or "").upper() == "WITH", match[4]
        oids = await session.parameter_types(query, ctx.param_oids)
        return _declaration(session, name, held, query, oids)
    if match := _FETCH.match(ctx.sql):
        count = 0 if (match[1] or "1").upper() == "ALL" else int(match[1] or 1)
        if match[1] and match[1].upper() != "ALL" and count == 0:
            # Postgres re-fetches the current row; 0 here would mean ALL.
            raise PgError("0A000", "FETCH 0 (the current row again) is not supported: FETCH n")
        return _Fetch(session, _name(match[2], match[3]), count)
    if match := _CLOSE.match(ctx.sql):
        closing = None if match[1] else _name(match[2], match[3])
        return _Action(ctx.sql, lambda params: session.close_cursor(closing))
    return None


class _Action(pg_mimic.Statement):
    """A statement that answers no rows and does `run` at Execute."""

    def __init__(
        self,
        sql: str,
        run: Callable[[list[Any]], Awaitable[None]],
        param_oids: Sequence[int] = (),
    ) -> None:
        self.sql = sql
        self.run = run
        self.param_oids = list(param_oids)

    async def describe(self) -> list[pg_mimic.ResultColumn] | None:
        return None

    def bind(self, params: list[Any]) -> pg_mimic.Portal:
        return _ActionPortal(self.run, params)


class _ActionPortal(pg_mimic.Portal):
    def __init__(self, run: Callable[[list[Any]], Awaitable[None]], params: list[Any]) -> None:
        self.run, self.params, self.done = run, params, False

    async def execute(self, max_rows: int) -> tuple[list[Any], bool]:
        if not self.done:
            self.done = True
            await self.run(self.params)
        return [], False


def _savepoint(ctx: MiddlewareContext, tag: str, name: str) -> pg_mimic.StaticStatement:
    """SAVEPOINT, RELEASE or ROLLBACK TO `name`, as Postgres checks them."""
    connection, kept = ctx.connection, _session(ctx).savepoints
    if connection.tx_status == b"I":
        raise PgError("25P01", f"{tag} can only be used in transaction blocks")
    if tag != "SAVEPOINT" and name not in kept:
        raise PgError("3B001", f'savepoint "{name}" does not exist')

    def apply() -> None:
        if tag == "SAVEPOINT":
            kept.append(name)
            return
        last = len(kept) - 1 - kept[::-1].index(name)  # the latest of that name
        del kept[last + (tag == "ROLLBACK") :]  # ROLLBACK TO keeps it; RELEASE does not
        if tag == "ROLLBACK" and connection.tx_status == b"E":
            connection.tx_status = b"T"  # ROLLBACK TO ends the failed state, as in Postgres

    return pg_mimic.StaticStatement(tag, None, [], apply)


def _declaration(
    session: LakehouseSession, name: str, held: bool, query: str, oids: list[int]
) -> _Action:
    async def declare(params: list[Any]) -> None:
        if name in session.cursors:
            raise PgError("42P03", f'cursor "{name}" already exists')
        answer = await session.start(query, parameters(oids, params))
        answer.held = held
        session.cursors[name] = answer
        portal = _CursorPortal(session, answer)
        compat.open_portal(session.connection(), name, portal, answer.columns, query)

    return _Action(f"DECLARE {name}", declare, oids)


class _CursorPortal(pg_mimic.Portal):
    """A cursor executed by its portal name (the extended protocol's Execute)."""

    def __init__(self, session: LakehouseSession, answer: Any) -> None:
        self.session, self.answer = session, answer

    async def execute(self, max_rows: int) -> tuple[list[Any], bool]:
        rows: list[Any]
        rows, more = await self.answer.take(max_rows)
        self.session.tell(self.answer)  # a cut at a limit, said as FETCH says it
        return rows, more


class _Fetch(pg_mimic.Statement):
    def __init__(self, session: LakehouseSession, name: str, count: int) -> None:
        self.session, self.name, self.count = session, name, count
        self.sql = f"FETCH {count or 'ALL'} FROM {name}"
        self.param_oids: list[int | None] = []

    def _cursor(self) -> Any:
        answer = self.session.cursors.get(self.name)
        if answer is None:
            raise PgError("34000", f'cursor "{self.name}" does not exist')
        return answer

    async def describe(self) -> list[pg_mimic.ResultColumn] | None:
        return list(self._cursor().columns)

    def bind(self, params: list[Any]) -> pg_mimic.Portal:
        return _FetchPortal(self)


class _FetchPortal(pg_mimic.Portal):
    def __init__(self, fetch: _Fetch) -> None:
        self.fetch, self.done = fetch, False

    async def execute(self, max_rows: int) -> tuple[list[Any], bool]:
        if self.done:
            return [], False
        self.done = True
        answer = self.fetch._cursor()
        rows, _ = await answer.take(self.fetch.count)
        self.fetch.session.tell(answer)
        return rows, False


async def catalog_queries(ctx: MiddlewareContext) -> pg_mimic.Statement | None:
    """Queries of `pg_catalog` and `information_schema`: answered by the session's
    emulated catalog (`api.pgwire.catalog`), never by a query process."""
    if not reads_catalog(ctx.sql):
        return None
    return _CatalogQuery(_session(ctx), ctx.sql, ctx.param_oids)


class _CatalogQuery(pg_mimic.Statement):
    """A catalog query. Its Describe runs it (with NULL parameters, if it has any: the
    catalog is small); without parameters, the Execute that follows takes those rows."""

    def __init__(self, session: LakehouseSession, sql: str, param_oids: list[int | None]) -> None:
        self.session = session
        self.sql = sql
        count = parameter_count(sql)
        # Catalog columns are not the datasets': an undeclared parameter is text.
        self.param_oids = [oid or pg_mimic.TEXT for oid in (param_oids + [None] * count)[:count]]
        self._columns: list[pg_mimic.ResultColumn] | None = None
        self._fresh: list[tuple[Any, ...]] | None = None  # rows for the next Execute

    async def run(self, params: list[Any]) -> tuple[list[Any], list[tuple[Any, ...]]]:
        return await asyncio.to_thread(self.session.catalog_query, self.sql, params)

    async def describe(self) -> list[pg_mimic.ResultColumn] | None:
        if self._columns is None:
            self._columns, rows = await self.run([None] * len(self.param_oids))
            self._fresh = None if self.param_oids else rows
        return list(self._columns)

    def bind(self, params: list[Any]) -> pg_mimic.Portal:
        return _CatalogPortal(self, parameters(self.param_oids, params))

    async def rows(self, params: list[Any]) -> list[tuple[Any, ...]]:
        fresh, self._fresh = self._fresh, None
        return fresh if fresh is not None else (await self.run(params))[1]


class _CatalogPortal(pg_mimic.Portal):
    def __init__(self, query: _CatalogQuery, params: list[Any]) -> None:
        self.query, self.params, self.at = query, params, 0
        self.answer: list[tuple[Any, ...]] | None = None

    async def execute(self, max_rows: int) -> tuple[list[Any], bool]:
        if self.answer is None:
            self.answer = await self.query.rows(self.params)
        rows = self.answer
        end = len(rows) if max_rows <= 0 else min(len(rows), self.at + max_rows)
        taken, self.at = rows[self.at : end], end
        return taken, self.at < len(rows)
