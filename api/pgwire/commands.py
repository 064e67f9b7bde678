"""The statements a Postgres session answers itself, ahead of pg_mimic's middleware:
`SET lakehouse.as_of` and a few session statements, savepoints, `DECLARE`/`FETCH`/`CLOSE`
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

from api.pgwire import compat
from api.pgwire.catalog import reads_catalog
from api.pgwire.types import parameters

if TYPE_CHECKING:
    from api.pgwire.session import LakehouseSession

AS_OF = "lakehouse.as_of"
_SET = re.compile(
    r"^\s*(?:SET\s+(?:SESSION\s+)?(lakehouse\.\w+)\s*(?:TO|=)\s*(.*?)|RESET\s+(lakehouse\.\w+))"
    r"\s*;?\s*$",
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
# Savepoints: a read-only session has nothing to roll back to, so they are accepted as is.
_SAVEPOINT = re.compile(
    r"^\s*(SAVEPOINT|RELEASE(?:\s+SAVEPOINT)?|ROLLBACK\s+TO(?:\s+SAVEPOINT)?)\s+\S+\s*;?\s*$",
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
    """`SET lakehouse.as_of = '{"sales": 3}'` (earlier versions to read; `RESET` or `TO
    DEFAULT` for the current ones; `SHOW lakehouse.as_of` and `SHOW lakehouse.datasets`,
    the versions the last query read, are plain session settings), `SELECT version()`,
    and the SHOWs Postgres spells in several words."""
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
    match = _SET.match(ctx.sql)
    if match is None:
        return None
    name = (match[1] or match[3]).lower()
    if name != AS_OF:
        raise PgError("42704", f'unrecognized setting "{name}": the one to set is {AS_OF}')
    text = (match[2] or "DEFAULT").strip()
    as_of = {} if text.upper() == "DEFAULT" or match[3] else parse_as_of(text)
    session = _session(ctx)

    def apply() -> None:
        session.as_of = as_of
        shown = json.dumps(as_of, separators=(",", ":")) if as_of else ""
        ctx.connection.session_vars[AS_OF] = shown

    return pg_mimic.StaticStatement(ctx.sql, None, [], apply)


def parse_as_of(text: str) -> dict[str, int]:
    """`'{"sales": 3}'` (quoted, as SET takes it) -> {"sales": 3}, or 22023 saying what to
    send."""
    unquoted = text[1:-1].replace("''", "'") if text[:1] == text[-1:] == "'" else text
    try:
        value = json.loads(unquoted)
    except ValueError:
        value = None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 1
        for k, v in value.items()
    ):
        raise PgError(
            "22023",
            f"{AS_OF} takes a JSON object of dataset -> version, e.g. "
            f"SET {AS_OF} = '{{\"sales\": 3}}', not {text}",
        )
    return value


async def cursors(ctx: MiddlewareContext) -> pg_mimic.Statement | None:
    """DECLARE name CURSOR FOR query, FETCH [n | ALL] FROM name, CLOSE name | ALL; a
    transaction's end closes its cursors (WITH HOLD ones stay until CLOSE)."""
    session = _session(ctx)
    savepoint = _SAVEPOINT.match(ctx.sql)
    if savepoint:
        tag = savepoint[1].split()[0].upper()

        def resume() -> None:  # ROLLBACK TO ends the failed state, as in Postgres
            if tag == "ROLLBACK" and ctx.connection.tx_status == b"E":
                ctx.connection.tx_status = b"T"

        return pg_mimic.StaticStatement(tag, None, [], resume)
    if _TRANSACTION_END.match(ctx.sql):
        for name in [n for n, a in session.cursors.items() if not a.held]:
            await session.close_cursor(name)
        return None  # the transaction itself: pg_mimic's middleware
    if match := _DECLARE.match(ctx.sql):
        name, held, query = _name(match[1], match[2]), (match[3] or "").upper() == "WITH", match[4]
        oids = await session.parameter_types(query, ctx.param_oids)
        return _declaration(session, name, held, query, oids)
    if match := _FETCH.match(ctx.sql):
        count = 0 if (match[1] or "1").upper() == "ALL" else int(match[1] or 1)
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


def _declaration(
    session: LakehouseSession, name: str, held: bool, query: str, oids: list[int]
) -> _Action:
    async def declare(params: list[Any]) -> None:
        if name in session.cursors:
            raise PgError("42P03", f'cursor "{name}" already exists')
        answer = await session.start(query, parameters(oids, params))
        answer.held = held
        session.cursors[name] = answer
        compat.open_portal(session.connection(), name, _CursorPortal(answer), answer.columns, query)

    return _Action(f"DECLARE {name}", declare, oids)


class _CursorPortal(pg_mimic.Portal):
    """A cursor executed by its portal name (the extended protocol's Execute)."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer

    async def execute(self, max_rows: int) -> tuple[list[Any], bool]:
        rows: list[Any]
        rows, more = await self.answer.take(max_rows)
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
