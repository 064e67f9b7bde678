"""One Postgres connection: it acts as the token it authenticated with, and every query it
sends goes where a `/v1/sql` query goes (`QueryEngine`: the guard, the grants, the limits,
a query process), answered as Postgres rows.

What a client sends besides queries is answered here or by pg_mimic's middleware, never by
DuckDB: transactions, `SET`/`RESET`/`SHOW`, `set_config()` and `current_setting()` of
session settings (`commands`, checked by `settings`), the `pg_catalog` and
`information_schema` queries of psql, JDBC and SQLAlchemy (from the granted datasets only,
`tables()`), `DECLARE`/`FETCH`/`CLOSE` cursors (`commands`), `COPY ... TO STDOUT`
(`copy_out`).
"""

from __future__ import annotations

import asyncio
import json
import weakref
from typing import Any

import pg_mimic
from pg_mimic import PgError
from pg_mimic import middleware as pg_middleware

from api.pgwire import commands, compat, copy_out, settings
from api.pgwire.catalog import CatalogDatabase
from api.pgwire.context import Context
from api.pgwire.errors import pg_error
from api.pgwire.results import Answer, Audited
from api.pgwire.settings import DEFAULT_SETTINGS
from api.pgwire.types import (
    Column,
    columns_of,
    conversions_notice,
    parameter_types,
    parameters,
)
from api.query.views import REJECT_COLUMNS, rejects_view
from lakehouse.auth.grants import Principal
from lakehouse.errors import LakehouseError


class LakehouseSession(pg_mimic.Session):
    # pg_mimic's own catalog middleware (information_schema, pg_catalog) is replaced by
    # the emulated catalog (`api.pgwire.catalog`), which answers what it cannot.
    middleware = (
        commands.session_statements,
        commands.setting_functions,
        commands.cursors,
        copy_out.copy_out,
        pg_middleware.transaction_control,
        pg_middleware.set_show,
        pg_middleware.session_functions,
        pg_middleware.asyncpg_typeinfo,
        commands.catalog_queries,
    )

    def __init__(self, context: Context) -> None:
        self.context = context
        self.principal: Principal | None = None
        self.as_of: dict[str, int] = {}
        self.cursors: dict[str, Answer] = {}
        self.savepoints: list[str] = []  # the transaction's, oldest first
        # Every answer started, until it ends: a portal or cursor left open when the
        # client goes away gives its query process back then.
        self.answers: weakref.WeakSet[Answer] = weakref.WeakSet()
        self.client = ""
        self._catalog: CatalogDatabase | None = None

    async def init(self, connection: Any) -> None:
        await super().init(connection)
        self.principal = self.context.principals.pop(connection.stream, None)
        if self.principal is None:  # the auth plugin always names one; a backstop
            raise PgError("28000", "no token authenticated this connection")
        peer = connection.stream.writer.get_extra_info("peername")
        self.client = f"{peer[0]}:{peer[1]}" if peer else ""
        connection.session_vars.update(DEFAULT_SETTINGS)
        for checked, value in settings.startup(connection.startup_params):
            connection.session_vars[checked.name] = settings.unquoted(value)
            if checked.notice:
                compat.notice(connection.stream, checked.notice)

    async def close(self) -> None:
        for answer in list(self.answers):  # those still open: the client went away
            await asyncio.to_thread(answer.close, 499)
        self.cursors.clear()
        if self._catalog is not None:
            self._catalog.close()

    @property
    def reader(self) -> Principal:
        assert self.principal is not None  # set in init, before any statement
        return self.principal

    def tables(self) -> dict[str, list[Column]]:
        """The granted datasets and their rejects views, with their columns as Postgres
        sees them: all the catalog holds (nothing else exists for this token)."""
        manifests, definitions = self.context.engine.views.for_query(self.reader, {})
        tables: dict[str, list[Column]] = {}
        for name in sorted(definitions):
            manifest = manifests.get(name)
            if manifest is not None:
                tables[name] = [Column.of(c.name, c.type) for c in manifest.columns]
                tables[rejects_view(name)] = [Column.of(n, t) for n, t in REJECT_COLUMNS]
        return tables

    def catalog(self) -> CatalogDatabase:
        """The session's emulated catalog, rebuilt when the granted datasets changed."""
        tables = self.tables()
        if self._catalog is None or self._catalog.tables != tables:
            if self._catalog is not None:
                self._catalog.close()
            connection = self._connection
            user = connection.username if connection is not None else ""
            database = connection.database if connection is not None else "lakehouse"
            self._catalog = CatalogDatabase(tables, user, database or "lakehouse")
        return self._catalog

    async def prepare(self, sql: str, param_oids: list[int | None]) -> pg_mimic.Statement:
        statement = await super().prepare(sql, param_oids)
        if isinstance(statement, pg_mimic.session.CallbackStatement):
            return QueryStatement(self, sql, await self.parameter_types(sql, param_oids))
        return statement

    def catalog_query(self, sql: str, params: list[Any]) -> tuple[list[Any], list[Any]]:
        """A catalog query, answered by the emulated catalog, and audited as any query."""
        audited = Audited(self.context, self.reader, sql, self.client)
        try:
            columns, rows = self.catalog().query(sql, params, self.connection().session_vars)
        except PgError:
            audited.finish(400)
            raise
        audited.finish(200, len(rows))
        return columns, rows

    async def parameter_types(self, sql: str, declared: list[int | None]) -> list[int]:
        """Each parameter's type: as the client declared it, else as the statement says."""
        count = commands.parameter_count(sql)
        types = (list(declared) + [None] * count)[:count]
        if all(types):
            return [t for t in types if t]
        columns = await asyncio.to_thread(self.column_types)
        inferred = parameter_types(sql, count, columns)
        return [given or guess for given, guess in zip(types, inferred, strict=True)]

    def column_types(self) -> dict[str, int]:
        """Column name -> its Postgres type, over the granted tables (where one type holds
        for the name)."""
        seen: dict[str, set[int]] = {}
        for columns in self.tables().values():
            for column in columns:
                seen.setdefault(column.name.lower(), set()).add(column.oid)
        return {name: oids.pop() for name, oids in seen.items() if len(oids) == 1}

    def connection(self) -> Any:
        assert self._connection is not None  # set before any statement
        return self._connection

    def stream(self) -> Any:
        return self.connection().stream

    async def start(self, sql: str, params: list[Any]) -> Answer:
        """Start `sql` as this session's token: admitted under its limits, audited."""
        audited = Audited(self.context, self.reader, sql, self.client)
        try:
            answer = await Answer.start(self.context, audited, sql, self.as_of, params)
        except (LakehouseError, ValueError) as exc:
            audited.failed(exc)
            raise pg_error(exc) from exc
        self.answers.add(answer)
        self._announce(answer)
        return answer

    async def describe_query(self, sql: str, parameters: int) -> list[Column]:
        """The columns `sql` answers (bound in a query process, not run), as checked and
        audited as a query."""
        audited = Audited(self.context, self.reader, sql, self.client)
        try:
            slot = await self.context.slots.take()
            try:
                described, _ = await asyncio.to_thread(
                    self.context.engine.describe, sql, self.as_of, parameters, reader=self.reader
                )
            finally:
                slot()
        except LakehouseError as exc:
            audited.failed(exc)
            raise pg_error(exc) from exc
        return columns_of(described)

    def _announce(self, answer: Answer) -> None:
        """The versions read: `SHOW lakehouse.datasets`, a parameter status the driver
        keeps, and a notice when `lakehouse.as_of` pinned one; a notice naming the columns
        sent in another type than their own (an INTERVAL as text, a list as json)."""
        versions = json.dumps(answer.running.datasets, separators=(",", ":"))
        if self._connection is None:
            return
        self._connection.session_vars["lakehouse.datasets"] = versions
        stream = self._connection.stream
        compat.parameter_status(stream, "lakehouse.datasets", versions)
        pinned = {n: v for n, v in answer.running.datasets.items() if n in self.as_of}
        if pinned:
            said = ", ".join(f"{n} at version {v}" for n, v in pinned.items())
            compat.notice(stream, f"read {said} (lakehouse.as_of)")
        if converted := conversions_notice(answer.columns):
            compat.notice(stream, converted)

    async def close_cursor(self, name: str | None) -> None:
        """CLOSE name (34000 if there is none such), or every cursor (None: CLOSE ALL)."""
        if name is not None and name not in self.cursors:
            raise PgError("34000", f'cursor "{name}" does not exist')
        names = list(self.cursors) if name is None else [name]
        for each in names:
            compat.close_portal(self.connection(), each)
            await asyncio.to_thread(self.cursors.pop(each).close)

    def tell(self, answer: Answer) -> None:
        """Notices the answer has for the client (it was cut short, and why)."""
        if self._connection is not None:
            for message in answer.notices:
                compat.notice(self._connection.stream, message)
        answer.notices.clear()


class QueryStatement(pg_mimic.Statement):
    """A query: described (its columns) before it runs, run at Execute. Described while a
    portal of it waits to run (pg_mimic binds, then describes; so does the simple
    protocol here), a query without parameters starts there and then, and that portal's
    Execute reads it: one trip to a query process. Described with no portal waiting
    (Describe of a statement), it is only bound in a query process, never left running."""

    def __init__(self, session: LakehouseSession, sql: str, param_oids: list[int]) -> None:
        self.session = session
        self.sql = sql
        self.param_oids = param_oids  # as the client declared them, or as inferred
        self._columns: list[Column] | None = None
        self._waiting: QueryPortal | None = None  # bound, not run yet

    async def describe(self) -> list[Any] | None:
        if self._columns is None:
            portal, self._waiting = self._waiting, None
            if portal is not None and not self.param_oids and portal.answer is None:
                portal.answer = await self.session.start(self.sql, [])
                self._columns = portal.answer.columns
            else:
                self._columns = await self.session.describe_query(self.sql, len(self.param_oids))
        return list(self._columns)

    def bind(self, params: list[str | None]) -> pg_mimic.Portal:
        self._waiting = QueryPortal(self, parameters(self.param_oids, params))
        return self._waiting


class QueryPortal(pg_mimic.Portal):
    def __init__(self, statement: QueryStatement, params: list[Any]):
        self.statement = statement
        self.params = params
        self.answer: Answer | None = None

    async def execute(self, max_rows: int) -> tuple[list[Any], bool]:
        session = self.statement.session
        if self.answer is None:
            self.answer = await session.start(self.statement.sql, self.params)
        rows, suspended = await self.answer.take(max_rows)
        session.tell(self.answer)
        return rows, suspended
