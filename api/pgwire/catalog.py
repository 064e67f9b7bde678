"""The Postgres system catalog, as a client of the endpoint sees it: `pg_catalog` and
`information_schema` over the datasets its token is granted, and nothing else.

What psql (`\\dt`, `\\d`, `\\l`), JDBC's DatabaseMetaData, SQLAlchemy's reflection and BI
tools send on connect are ordinary SQL over the catalog, with joins, window functions and
Postgres's own functions. They run here, in a small in-memory DuckDB of the session's own
(no data, no files, no network, settings locked) holding catalog tables in Postgres's shape
(`catalog_tables`), filled from the granted datasets' columns: the SQL is rewritten only
as far as names go (`pg_catalog.` -> the emulation's schema, `'x'::regclass` -> a lookup).
A catalog table or function this emulation does not have is an error that names it
(DuckDB's), never an empty answer.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import duckdb
import pg_mimic
from pg_mimic import PgError
from pg_mimic.arrays import ARRAY_OID

from api.pgwire import catalog_tables as shape
from api.pgwire.catalog_rows import INFORMATION, fill, insert, settings_rows
from api.pgwire.errors import duckdb_state
from api.pgwire.settings import DEFAULT_SETTINGS
from api.pgwire.types import DUCKDB_OIDS, Column

CATALOG = "lh_catalog"  # the schema standing in for pg_catalog (DuckDB reserves the name)
TIMEOUT_SECONDS = 10
# Postgres type names DuckDB lacks, for the casts catalog queries write (`x::name`).
TYPE_ALIASES = {
    "name": "VARCHAR",
    "int2vector": "SMALLINT[]",
    "oidvector": "BIGINT[]",
    "pg_node_tree": "VARCHAR",
    "xid": "BIGINT",
    "aclitem": "VARCHAR",
    "regclass": "BIGINT",
    "regtype": "BIGINT",
}
_SCHEMA_OF_TYPE = re.compile(r'::\s*"?pg_catalog"?\s*\.\s*', re.IGNORECASE)
_PG_CATALOG = re.compile(r'(?<![\w.])"?pg_catalog"?\s*\.\s*("?)(\w+)\1(\s*\()?', re.IGNORECASE)
_COLLATE = re.compile(r'\s+COLLATE\s+(?:"?pg_catalog"?\.)?(?:"[^"]+"|\w+)', re.IGNORECASE)
_INFORMATION = re.compile(r'(?<![\w.])"?information_schema"?\s*\.\s*', re.IGNORECASE)
_OPERATOR = re.compile(r'OPERATOR\s*\(\s*(?:"?pg_catalog"?\.)?([^)\s]+)\s*\)', re.IGNORECASE)
_REG_CAST = re.compile(
    r"""('(?:[^']|'')*'|[\w."]+|\([^()]*\))\s*::\s*"""
    r"(regclass|regtype|regnamespace|regprocedure|regproc|regrole)\b",
    re.IGNORECASE,
)
# `FROM generate_series(...) s` names the column s too, in Postgres.
_SERIES_ALIAS = re.compile(
    r"(generate_series\s*\((?:[^()]|\([^()]*\))*\))\s+(?:AS\s+)?(\w+)\b(?!\s*\()",
    re.IGNORECASE,
)
# ADBC compares `typreceive` (a function name here, an OID in Postgres) with 0.
_FUNCTION_OID = re.compile(r"\b(typreceive|typsend|typinput|typoutput)\s*(!=|<>|=)\s*0\b")
_USER = re.compile(r"\b(current_user|session_user)\b(?!\s*\()", re.IGNORECASE)
_REFUSED = re.compile(
    r"\b(duckdb_\w+|pragma_\w+|which_secret|read_\w+|glob|getenv)\s*\(",
    re.IGNORECASE,
)
_FUNCTIONS = frozenset(
    signature.split("(")[0] for signature in [*shape.MACROS, *shape.TABLE_MACROS]
)


def reads_catalog(sql: str) -> bool:
    """Whether `sql` is a catalog query: it names pg_catalog, information_schema or one of
    Postgres's catalog functions."""
    text = _strip_literals(sql)
    if _PG_CATALOG.search(text) or _INFORMATION.search(text):
        return True
    names = {m.lower() for m in re.findall(r"\b(pg_\w+)\b", text)}
    if names & (set(shape.PG_CATALOG) | _FUNCTIONS):
        return True
    calls = {m.lower() for m in re.findall(r"\b(\w+)\s*\(", text)}
    if calls & {"current_schemas", "has_table_privilege", "obj_description", "format_type"}:
        return True
    return bool(_REG_CAST.search(text))  # 'name'::regclass


def _in_catalog(match: re.Match[str]) -> str:
    """`pg_catalog.x` -> the emulation's `x`; a function it does not define is DuckDB's."""
    name, call = match[2], match[3] or ""
    if call and name.lower() not in _FUNCTIONS:
        return f"{name}{call}"
    return f"{CATALOG}.{name}{call}"


def _strip_literals(sql: str) -> str:
    return re.sub(r"'(?:[^']|'')*'", "''", sql)


def rewrite(sql: str, user: str) -> str:
    """Postgres's catalog SQL as the emulation runs it (names only; see the module)."""
    sql = _OPERATOR.sub(r"\1", sql)
    sql = _SCHEMA_OF_TYPE.sub("::", sql)
    sql = _COLLATE.sub("", sql)  # one collation here: C
    sql = _PG_CATALOG.sub(_in_catalog, sql)
    sql = _INFORMATION.sub(f"{INFORMATION}.", sql)
    sql = _FUNCTION_OID.sub(r"\1 \2 '-'", sql)
    sql = _SERIES_ALIAS.sub(r"\1 AS \2(\2)", sql)
    sql = _REG_CAST.sub(lambda m: f"{CATALOG}.{m[2].lower()}({m[1]})", sql)
    return _USER.sub("'" + user.replace("'", "''") + "'", sql)


class CatalogDatabase:
    """One session's emulated catalog over `tables` (name -> columns)."""

    def __init__(self, tables: Mapping[str, Sequence[Column]], user: str, database: str):
        self.tables = dict(tables)
        self.user = user
        self._con = duckdb.connect(
            ":memory:",
            config={
                "threads": 1,
                "memory_limit": "128MB",
                "enable_external_access": False,
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
            },
        )
        self._lock = threading.Lock()
        _build(self._con, self.tables, user, database)
        self._settings: Mapping[str, str] = dict(DEFAULT_SETTINGS)  # what pg_settings lists
        self._con.execute("SET lock_configuration = true")

    def close(self) -> None:
        self._con.close()

    def query(
        self, sql: str, params: Sequence[Any] = (), settings: Mapping[str, str] | None = None
    ) -> tuple[list[pg_mimic.ResultColumn], list[tuple[Any, ...]]]:
        """Run a catalog query: its columns and rows, or a PgError that says what is not
        there. `settings`: the session's, which pg_settings and current_setting() then
        give (None: those given last; at first, the defaults a session starts with)."""
        text = rewrite(sql, self.user)
        refused = _REFUSED.search(_strip_literals(text))
        if refused:
            raise PgError(
                "42501", f"{refused[1]}() is not part of the Postgres catalog this server offers"
            )
        with self._lock:  # one query at a time: a session sends one at a time anyway
            if settings is not None and settings != self._settings:
                self._con.execute("DELETE FROM pg_settings")
                insert(self._con, "pg_settings", settings_rows(settings))
                self._settings = dict(settings)
            timer = threading.Timer(TIMEOUT_SECONDS, self._con.interrupt)
            timer.start()
            try:
                statements = self._con.extract_statements(text)
                if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
                    raise PgError("25006", "a catalog query is one SELECT: the server is read-only")
                self._con.execute(text, list(params) or None)
                description = self._con.description or []
                rows = self._con.fetchall()
            except duckdb.Error as exc:
                said = str(exc).replace(f"{CATALOG}.", "pg_catalog.")
                said = said.replace(f"{INFORMATION}.", "information_schema.")
                raise PgError(_state(exc), f"catalog query failed: {said}") from exc
            finally:
                timer.cancel()
        return [_column(d[0], str(d[1])) for d in description], rows


def _column(name: str, duckdb_type: str) -> pg_mimic.ResultColumn:
    if duckdb_type.endswith("[]"):
        element = DUCKDB_OIDS.get(duckdb_type[:-2].upper())
        if element in ARRAY_OID:
            return pg_mimic.ResultColumn(name, ARRAY_OID[element])
    return Column.of(name, duckdb_type)


def _state(exc: duckdb.Error) -> str:
    return duckdb_state(str(exc), "XX000")


def _build(
    con: duckdb.DuckDBPyConnection,
    tables: Mapping[str, Sequence[Column]],
    user: str,
    database: str,
) -> None:
    con.execute("ATTACH ':memory:' AS lakehouse")
    for schema in (CATALOG, INFORMATION, "public"):
        con.execute(f"CREATE SCHEMA lakehouse.{schema}")
    for name, columns in shape.PG_CATALOG.items():
        con.execute(f"CREATE TABLE lakehouse.{CATALOG}.{name} ({columns})")
    for name, columns in shape.INFORMATION_SCHEMA.items():
        con.execute(f"CREATE TABLE lakehouse.{INFORMATION}.{name} ({columns})")
    for alias, definition in TYPE_ALIASES.items():
        con.execute(f"CREATE TYPE lakehouse.{CATALOG}.{alias} AS {definition}")
    con.execute(f"USE lakehouse.{CATALOG}")
    fill(con, tables, user, database)
    _macros(con, user, database)
    con.execute("USE lakehouse.public")
    con.execute(f"SET search_path = 'lakehouse.{CATALOG},lakehouse.public'")


def _macros(con: duckdb.DuckDBPyConnection, user: str, database: str) -> None:
    overloads: dict[str, list[str]] = {}
    for signature, body in shape.MACROS.items():
        name, arguments = signature.split("(", 1)
        text = body.replace("{user}", user.replace("'", "''"))
        text = text.replace("{database}", database.replace("'", "''"))
        overloads.setdefault(name, []).append(f"({arguments} AS {text}")
    for name, bodies in overloads.items():
        con.execute(f"CREATE MACRO {name}{', '.join(bodies)}")
    for signature, body in shape.TABLE_MACROS.items():
        con.execute(f"CREATE MACRO {signature} AS TABLE {body}")
