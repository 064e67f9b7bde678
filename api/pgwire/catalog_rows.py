"""The rows of the emulated Postgres catalog (`api.pgwire.catalog`): Postgres's own
OIDs, names and flags for the types, the database, the role and the granted tables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import duckdb

from api.pgwire.settings import DEFAULT_SETTINGS
from api.pgwire.types import Column, pg_type_name

INFORMATION = "lh_information"
PUBLIC_OID, CATALOG_OID, INFORMATION_OID, OWNER_OID = 2200, 11, 13000, 10
FIRST_TABLE_OID = 16384
_KEYWORD_CODES = {"reserved": "R", "unreserved": "U", "type_function": "T", "column_name": "C"}

# Postgres types the catalog describes: oid -> (typname, typlen, typcategory).
PG_TYPES = {
    16: ("bool", 1, "B"),
    17: ("bytea", -1, "U"),
    18: ("char", 1, "Z"),
    19: ("name", 64, "S"),
    20: ("int8", 8, "N"),
    21: ("int2", 2, "N"),
    23: ("int4", 4, "N"),
    25: ("text", -1, "S"),
    26: ("oid", 4, "N"),
    114: ("json", -1, "U"),
    700: ("float4", 4, "N"),
    701: ("float8", 8, "N"),
    1042: ("bpchar", -1, "S"),
    1043: ("varchar", -1, "S"),
    1082: ("date", 4, "D"),
    1083: ("time", 8, "D"),
    1114: ("timestamp", 8, "D"),
    1184: ("timestamptz", 8, "D"),
    1186: ("interval", 16, "T"),
    1700: ("numeric", -1, "N"),
    2950: ("uuid", 16, "U"),
    3802: ("jsonb", -1, "U"),
}
# Postgres's receive functions not spelled `<type>recv` (drivers such as ADBC read them).
RECEIVE = {
    n: f"{n}_recv"
    for n in (
        "json",
        "jsonb",
        "date",
        "time",
        "timestamp",
        "timestamptz",
        "interval",
        "numeric",
        "uuid",
    )
}


def insert(con: duckdb.DuckDBPyConnection, table: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    names = list(rows[0])
    marks = ", ".join("?" for _ in names)
    con.executemany(
        f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})",
        [[row[n] for n in names] for row in rows],
    )


def fill(
    con: duckdb.DuckDBPyConnection,
    tables: Mapping[str, Sequence[Column]],
    user: str,
    database: str,
) -> None:
    insert(
        con,
        "pg_namespace",
        [
            {"oid": oid, "nspname": name, "nspowner": OWNER_OID}
            for oid, name in (
                (CATALOG_OID, "pg_catalog"),
                (PUBLIC_OID, "public"),
                (INFORMATION_OID, "information_schema"),
            )
        ],
    )
    insert(con, "pg_type", [_type_row(oid, *row) for oid, row in PG_TYPES.items()])
    insert(con, "pg_database", [_database_row(database)])
    insert(con, "pg_roles", [_role_row(user)])
    insert(con, "pg_user", [{"usename": user, "usesysid": OWNER_OID, "usesuper": False}])
    insert(con, "pg_am", [{"oid": 2, "amname": "heap", "amhandler": "heap", "amtype": "t"}])
    insert(con, "pg_tablespace", [{"oid": 1663, "spcname": "pg_default", "spcowner": 10}])
    insert(con, "pg_settings", settings_rows(DEFAULT_SETTINGS))
    keywords = con.execute("SELECT * FROM duckdb_keywords()").fetchall()
    insert(
        con,
        "pg_keywords",
        [{"word": w, "catcode": _KEYWORD_CODES.get(c, "U"), "catdesc": c} for w, c, *_ in keywords],
    )
    insert(
        con,
        f"{INFORMATION}.schemata",
        [
            {"catalog_name": database, "schema_name": s, "schema_owner": user}
            for s in ("public", "pg_catalog", "information_schema")
        ],
    )
    for index, (name, columns) in enumerate(sorted(tables.items())):
        _table(con, FIRST_TABLE_OID + index, name, columns, user, database)


# pg_settings beyond a session's own settings (`settings_rows`): what else tools read there.
SERVER_SETTINGS = {
    "max_index_keys": "32",
    "block_size": "8192",
    "lc_collate": "C.UTF-8",
    "lc_ctype": "C.UTF-8",
    "default_transaction_isolation": "read committed",
    # What SQLAlchemy's reflection and other tools read through current_setting().
    "default_table_access_method": "heap",
    "default_tablespace": "",
    "max_connections": "100",
}


def settings_rows(session: Mapping[str, str]) -> list[dict[str, Any]]:
    """pg_settings as Postgres shows it to a session: the session's own values (custom
    `prefix.name` settings among them), and the server's."""
    merged = {**SERVER_SETTINGS, **session}
    return [{"name": n, "setting": merged[n]} for n in sorted(merged)]  # as Postgres lists them


def _table(
    con: duckdb.DuckDBPyConnection,
    oid: int,
    name: str,
    columns: Sequence[Column],
    user: str,
    database: str,
) -> None:
    insert(con, "pg_class", [_class_row(oid, name, len(columns))])
    insert(
        con,
        "pg_tables",
        [{"schemaname": "public", "tablename": name, "tableowner": user, "hasindexes": False}],
    )
    insert(
        con,
        f"{INFORMATION}.tables",
        [
            {
                "table_catalog": database,
                "table_schema": "public",
                "table_name": name,
                "table_type": "BASE TABLE",
                "is_insertable_into": "NO",
                "is_typed": "NO",
            }
        ],
    )
    insert(con, "pg_attribute", [_attribute_row(oid, i, c) for i, c in enumerate(columns, 1)])
    insert(
        con,
        f"{INFORMATION}.columns",
        [_information_column(database, name, i, c) for i, c in enumerate(columns, 1)],
    )


def _type_row(oid: int, name: str, length: int, category: str) -> dict[str, Any]:
    return {
        "oid": oid,
        "typname": name,
        "typnamespace": CATALOG_OID,
        "typowner": OWNER_OID,
        "typlen": length,
        "typbyval": 0 < length <= 8,
        "typtype": "b",
        "typcategory": category,
        "typisdefined": True,
        "typdelim": ",",
        "typinput": f"{name}in",
        "typoutput": f"{name}out",
        "typreceive": RECEIVE.get(name, f"{name}recv"),
        "typsend": RECEIVE.get(name, f"{name}recv")[:-4] + "send",
        "typrelid": 0,
        "typelem": 0,
        "typarray": 0,
        "typnotnull": False,
        "typbasetype": 0,
        "typtypmod": -1,
        "typndims": 0,
        "typcollation": 100 if category == "S" else 0,
    }


def _database_row(database: str) -> dict[str, Any]:
    return {
        "oid": 16383,
        "datname": database,
        "datdba": OWNER_OID,
        "encoding": 6,
        "datlocprovider": "c",
        "datistemplate": False,
        "datallowconn": True,
        "datconnlimit": -1,
        "dattablespace": 1663,
        "datcollate": "C.UTF-8",
        "datctype": "C.UTF-8",
    }


def _role_row(user: str) -> dict[str, Any]:
    return {
        "rolname": user,
        "rolsuper": False,
        "rolinherit": True,
        "rolcreaterole": False,
        "rolcreatedb": False,
        "rolcanlogin": True,
        "rolreplication": False,
        "rolconnlimit": -1,
        "rolbypassrls": False,
        "oid": OWNER_OID,
    }


def _class_row(oid: int, name: str, columns: int) -> dict[str, Any]:
    return {
        "oid": oid,
        "relname": name,
        "relnamespace": PUBLIC_OID,
        "reltype": 0,
        "reloftype": 0,
        "relowner": OWNER_OID,
        "relam": 2,
        "relfilenode": oid,
        "reltablespace": 0,
        "relpages": 0,
        "reltuples": -1,
        "relallvisible": 0,
        "reltoastrelid": 0,
        "relhasindex": False,
        "relisshared": False,
        "relpersistence": "p",
        "relkind": "r",
        "relnatts": columns,
        "relchecks": 0,
        "relhasrules": False,
        "relhastriggers": False,
        "relhassubclass": False,
        "relrowsecurity": False,
        "relforcerowsecurity": False,
        "relispopulated": True,
        "relreplident": "d",
        "relispartition": False,
        "relrewrite": 0,
    }


def _attribute_row(table_oid: int, number: int, column: Column) -> dict[str, Any]:
    length = PG_TYPES[column.oid][1]
    return {
        "attrelid": table_oid,
        "attname": column.name,
        "atttypid": column.oid,
        "attlen": length,
        "attnum": number,
        "attcacheoff": -1,
        "atttypmod": column.type_modifier,
        "attndims": 0,
        "attbyval": 0 < length <= 8,
        "attalign": "d",
        "attstorage": "p" if length > 0 else "x",
        "attcompression": "",
        "attnotnull": False,
        "atthasdef": False,
        "atthasmissing": False,
        "attidentity": "",
        "attgenerated": "",
        "attisdropped": False,
        "attislocal": True,
        "attinhcount": 0,
        "attstattarget": -1,
        "attcollation": 100 if PG_TYPES[column.oid][2] == "S" else 0,
    }


_INTEGER_BITS = {21: 16, 23: 32, 20: 64}
_FLOAT_BITS = {700: 24, 701: 53}


def _information_column(database: str, table: str, number: int, column: Column) -> dict[str, Any]:
    precision = scale = radix = None
    if column.oid in _INTEGER_BITS:
        precision, scale, radix = _INTEGER_BITS[column.oid], 0, 2
    elif column.oid in _FLOAT_BITS:
        precision, radix = _FLOAT_BITS[column.oid], 2
    elif column.oid == 1700 and column.type_modifier >= 4:
        typmod = column.type_modifier - 4
        precision, scale, radix = typmod >> 16, typmod & 0xFFFF, 10
    data_type = pg_type_name(column)
    long_names = {
        "timestamp": "timestamp without time zone",
        "timestamptz": "timestamp with time zone",
        "time": "time without time zone",
    }
    return {
        "table_catalog": database,
        "table_schema": "public",
        "table_name": table,
        "column_name": column.name,
        "ordinal_position": number,
        "is_nullable": "YES",
        "data_type": long_names.get(data_type, data_type),
        "numeric_precision": precision,
        "numeric_precision_radix": radix,
        "numeric_scale": scale,
        "udt_catalog": database,
        "udt_schema": "pg_catalog",
        "udt_name": PG_TYPES[column.oid][0],
        "is_self_referencing": "NO",
        "is_identity": "NO",
        "is_generated": "NEVER",
        "is_updatable": "NO",
    }
