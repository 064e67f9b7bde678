"""Which SQL /v1/sql runs: one SELECT that reads datasets and nothing else.

First line of defence, on DuckDB's own parse (never a regex): exactly one statement, of
type SELECT, whose syntax tree names no table function but harmless generators, no
function that reads settings or the environment, and no file path as a table. Behind it,
the engine's DuckDB is locked down (no file or network access outside the datasets
prefix, configuration locked) and holds a read-only key: DuckDB's security guide calls
its settings defence in depth, not a sandbox.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import duckdb

# Table functions that only compute: everything else (read_csv, read_parquet, glob,
# read_text, duckdb_secrets, duckdb_settings, ...) reaches beyond the datasets.
ALLOWED_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest"})
DENIED_FUNCTIONS = frozenset({"current_setting", "getenv", "getvariable", "current_query"})


class Refused(ValueError):
    """The statement is not one /v1/sql runs; the message says what to send instead."""


@dataclass(frozen=True)
class Inspection:
    tables: frozenset[str]  # every table or view name the query reads (CTE names too)


def inspect(con: duckdb.DuckDBPyConnection, sql: str) -> Inspection:
    """Refuse anything but one read-only SELECT over tables; raise duckdb.Error on syntax."""
    statements = con.extract_statements(sql)
    if len(statements) != 1:
        raise Refused(f"send exactly one statement, not {len(statements)}")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise Refused(f"only SELECT queries are allowed, not {kind.name}: the API is read-only")
    row = con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()
    tree = json.loads(row[0]) if row else {"error": True}
    if tree.get("error"):
        # PRAGMA, SHOW, DESCRIBE... parse as SELECT but are no plain query.
        raise Refused("only plain SELECT queries are allowed (no PRAGMA, SHOW or DESCRIBE)")
    tables: set[str] = set()
    for node in _nodes(tree["statements"]):
        kind_of = node.get("type")
        if kind_of == "BASE_TABLE":
            tables.add(_table(node))
        elif kind_of == "TABLE_FUNCTION":
            name = node["function"]["function_name"].lower()
            if name not in ALLOWED_TABLE_FUNCTIONS:
                raise Refused(
                    f"table function {name}() is not allowed: query the datasets by name "
                    "(GET /v1/catalog lists them)"
                )
        elif node.get("class") == "FUNCTION":
            name = node["function_name"].lower()
            if name in DENIED_FUNCTIONS or name.startswith("duckdb_"):
                raise Refused(f"function {name}() is not allowed")
    return Inspection(tables=frozenset(tables))


def _table(node: dict[str, Any]) -> str:
    name: str = node["table_name"]
    if node.get("catalog_name") or node.get("schema_name") not in ("", "main"):
        raise Refused(f"only the datasets can be queried, not {name!r} in another schema")
    if any(mark in name for mark in "/\\:") or "." in name:
        raise Refused(f"reading files is not allowed ({name!r}): query the datasets by name")
    return name


def _nodes(value: Any) -> Iterator[dict[str, Any]]:
    """Every dict in the syntax tree, depth first."""
    if isinstance(value, dict):
        yield value
        for child in value.values():
            yield from _nodes(child)
    elif isinstance(value, list):
        for child in value:
            yield from _nodes(child)
