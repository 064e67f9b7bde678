"""Which SQL /v1/sql runs: one SELECT over the datasets, calling allowed functions only.

On DuckDB's own parse of the statement (never a regex): exactly one statement, of type
SELECT, whose syntax tree reads only dataset views, their `__rejects` views and its own
CTEs, calls only the functions in `api.query.allowlist.ALLOWED_FUNCTIONS` and only the table
functions in `ALLOWED_TABLE_FUNCTIONS`. Both are allowlists: whatever DuckDB adds later is
refused until someone classifies it.

The syntax tree of a long expression is deep (`1+1+...` nests one level per term), so it
is parsed and walked without recursion in Python: no statement DuckDB's parser accepts
makes this module hit Python's recursion limit.

Behind the guard, every query runs in a query process whose DuckDB is locked down (no file
or network access outside the datasets prefix, configuration locked) and holds a read-only
key: DuckDB's security guide calls its settings defence in depth, not a sandbox.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import duckdb

from api.query.allowlist import ALLOWED_FUNCTIONS, ALLOWED_TABLE_FUNCTIONS, DENIED_FUNCTIONS

# The parser lower-cases names; a few functions are listed in mixed case.
_ALLOWED = frozenset(name.lower() for name in ALLOWED_FUNCTIONS)
_DENIED = frozenset(name.lower() for name in DENIED_FUNCTIONS)
_ALLOWED_TABLE = frozenset(name.lower() for name in ALLOWED_TABLE_FUNCTIONS)
# Spelled like functions, bound by DuckDB itself, so `duckdb_functions()` does not list them.
SPECIAL_FORMS = frozenset({"unnest", "unlist", "grouping", "grouping_id"})
# Schemas a function name may be qualified with: DuckDB's own functions live in both.
_FUNCTION_SCHEMAS = frozenset({"", "main", "pg_catalog"})
MAX_SQL_CHARS = 100_000
# Values a query builds from literal sizes are checked here, so that the plain cases
# (`repeat('x', 3000000000)`, `range(300000000)`) are refused at once and never take a
# query slot; sizes computed at run time are bounded by the query process's memory cap.
MAX_LITERAL_VALUE_BYTES = 64 * 1024 * 1024
MAX_LITERAL_LIST_ELEMENTS = 8 * 1024 * 1024

_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\],:]|[^\s{}\[\],:"]+')


class Refused(ValueError):
    """The statement is not one /v1/sql runs; the message says what to send instead."""


class UnknownDataset(Refused):
    """The statement reads a table that is none of the views offered."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown dataset {name!r}: GET /v1/catalog lists the datasets")
        self.name = name


@dataclass(frozen=True)
class Inspection:
    views: frozenset[str]  # the dataset and rejects views the query reads


def inspect(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    views: Collection[str],
    system_views: Collection[str] = (),
) -> Inspection:
    """Refuse anything but one SELECT over `views` (dataset and rejects views) with allowed
    functions; raise duckdb.Error on syntax errors. `system_views` are DuckDB's own views
    (pg_settings, duckdb_tables...), named in refusals and never usable as CTE names."""
    if len(sql) > MAX_SQL_CHARS:
        raise Refused(
            f"the statement is {len(sql):,} characters long: send at most {MAX_SQL_CHARS:,}"
        )
    statements = con.extract_statements(sql)
    if len(statements) != 1:
        raise Refused(f"send exactly one statement, not {len(statements)}")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise Refused(f"only SELECT queries are allowed, not {kind.name}: the API is read-only")
    row = con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()
    tree = loads(row[0]) if row else {"error": True}
    if tree.get("error"):
        # PRAGMA, SHOW, DESCRIBE... parse as SELECT but are no plain query.
        raise Refused("only plain SELECT queries are allowed (no PRAGMA, SHOW or DESCRIBE)")
    tables: set[str] = set()
    ctes: set[str] = set()
    stack: list[Any] = [tree["statements"]]
    while stack:
        value = stack.pop()
        if isinstance(value, list):
            stack.extend(value)
            continue
        if not isinstance(value, dict):
            continue
        kind_of = value.get("type")
        if kind_of == "SHOW_REF":  # DESCRIBE, SHOW, SUMMARIZE parse as SELECT over this
            raise Refused(
                "DESCRIBE, SHOW and SUMMARIZE are not allowed: GET /v1/catalog/<name> "
                "describes a dataset"
            )
        if kind_of == "BASE_TABLE":
            tables.add(_table(value))
        elif kind_of == "TABLE_FUNCTION":
            function = value.get("function") or {}
            _check_table_function(function.get("function_name", ""))
            # Its arguments are expressions like any other; the call itself is checked.
            stack.append(function.get("children", []))
            stack.extend(v for k, v in value.items() if k != "function")
            continue
        elif value.get("class") in ("FUNCTION", "WINDOW"):
            _check_function(value)
        cte_map = value.get("cte_map")
        if isinstance(cte_map, dict):
            ctes.update(entry["key"] for entry in cte_map.get("map", []))
        stack.extend(value.values())
    return Inspection(views=_check_tables(tables, ctes, views, system_views))


class Verdicts:
    """The guard's verdicts on statements it let through, remembered: a dashboard sends the
    same few statements again and again, and the guard (DuckDB's parse, the syntax tree as
    JSON, its walk) is a fixed ~0.5 ms of each. A verdict depends on the statement and the
    names of the views offered, nothing else, so it holds for as long as the same mapping of
    views is offered: `api.query.views` makes one per catalog snapshot and grant, and a new
    snapshot starts afresh. Refusals are not remembered: they are cheap and rare.

    Bounded: the verdicts of the last MAX_VIEW_SETS mappings (the catalog holds them
    anyway), MAX_ENTRIES each, statements of at most MAX_SQL_CHARS."""

    MAX_VIEW_SETS = 8
    MAX_ENTRIES = 256
    MAX_SQL_CHARS = 4096

    def __init__(self) -> None:
        # id(views) -> (views, {sql: verdict}); the views held so that the id stays theirs.
        self._sets: OrderedDict[int, tuple[Mapping[str, str], OrderedDict[str, Inspection]]]
        self._sets = OrderedDict()
        self._lock = threading.Lock()

    def get(self, sql: str, views: Mapping[str, str]) -> Inspection | None:
        with self._lock:
            known = self._known(views, create=False)
            verdict = known.get(sql) if known is not None else None
            if verdict is not None:
                known.move_to_end(sql)  # type: ignore[union-attr]
            return verdict

    def put(self, sql: str, views: Mapping[str, str], verdict: Inspection) -> None:
        if len(sql) > self.MAX_SQL_CHARS:
            return
        with self._lock:
            known = self._known(views, create=True)
            assert known is not None
            known[sql] = verdict
            if len(known) > self.MAX_ENTRIES:
                known.popitem(last=False)

    def _known(
        self, views: Mapping[str, str], *, create: bool
    ) -> OrderedDict[str, Inspection] | None:
        found = self._sets.get(id(views))
        if found is not None and found[0] is views:
            self._sets.move_to_end(id(views))
            return found[1]
        if not create:
            return None
        known: OrderedDict[str, Inspection] = OrderedDict()
        self._sets[id(views)] = (views, known)
        if len(self._sets) > self.MAX_VIEW_SETS:
            self._sets.popitem(last=False)
        return known


def _table(node: dict[str, Any]) -> str:
    name: str = node["table_name"]
    if any(mark in name for mark in "/\\:") or "." in name:
        raise Refused(f"reading files is not allowed ({name!r}): query the datasets by name")
    if node.get("catalog_name") or node.get("schema_name") not in ("", "main"):
        raise Refused(f"only the datasets can be queried, not {name!r} in another schema")
    return name


def _check_tables(
    tables: set[str], ctes: set[str], views: Collection[str], system_views: Collection[str]
) -> frozenset[str]:
    system = {name.lower() for name in system_views}
    for name in sorted(ctes):
        if name.lower() in system:
            raise Refused(f"{name!r} is the name of a system view: give the CTE another name")
    known = {name.lower(): name for name in views}
    local = {name.lower() for name in ctes}  # identifiers are case-insensitive
    read: set[str] = set()
    for name in sorted(tables):
        if name.lower() in local:
            continue
        if name.lower() in known:
            read.add(known[name.lower()])
        elif name.lower() in system:
            raise Refused(
                f"{name!r} is a system view, not a dataset: only the datasets and their "
                "__rejects views can be queried (GET /v1/catalog lists them)"
            )
        else:
            raise UnknownDataset(name)
    return frozenset(read)


def _check_table_function(name: str) -> None:
    if name.lower() not in _ALLOWED_TABLE:
        allowed = ", ".join(sorted(_ALLOWED_TABLE))
        raise Refused(
            f"table function {name}() is not allowed: query the datasets by name (GET "
            f"/v1/catalog lists them); the table functions allowed are {allowed}"
        )


def _check_function(node: dict[str, Any]) -> None:
    name = str(node.get("function_name", "")).lower()
    schema = node.get("schema") or ""
    if node.get("catalog") or schema not in _FUNCTION_SCHEMAS:
        raise Refused(f"function {schema}.{name}() is not allowed: call functions by name")
    if name in _ALLOWED or name in SPECIAL_FORMS:
        _check_literal_sizes(name, node.get("children") or [])
        return
    if name in _DENIED:
        raise Refused(f"function {name}() is not allowed: it reaches beyond the query's values")
    raise Refused(
        f"function {name}() is not allowed: it is not on the list of functions /v1/sql "
        "may call (api/query/allowlist.py)"
    )


def _literal(node: Any) -> Any:
    """The value of a constant argument (a number or a string), else None."""
    if isinstance(node, dict) and node.get("class") == "CONSTANT":
        value = node.get("value") or {}
        if not value.get("is_null"):
            return value.get("value")
    return None


def _check_literal_sizes(name: str, args: list[Any]) -> None:
    values = [_literal(arg) for arg in args]
    numbers = [
        v if isinstance(v, int | float) and not isinstance(v, bool) else None for v in values
    ]
    size = 0
    if name == "repeat" and len(args) == 2 and numbers[1] is not None:
        unit = len(values[0]) if isinstance(values[0], str) else 1
        size = int(numbers[1]) * max(unit, 1)
    elif name in ("lpad", "rpad") and len(args) >= 2 and numbers[1] is not None:
        size = int(numbers[1])
    if size > MAX_LITERAL_VALUE_BYTES:
        raise Refused(
            f"{name}() would build a value of {size:,} bytes; one value may hold at most "
            f"{MAX_LITERAL_VALUE_BYTES:,}: build smaller values"
        )
    elements = 0
    known = [n for n in numbers if n is not None]
    if name in ("range", "generate_series") and args and len(known) == len(args) <= 3:
        start, stop, step = ([0.0, *known, 1.0] if len(known) == 1 else [*known, 1.0])[:3]
        elements = int((stop - start) / step) if step else 0
    elif name in ("list_resize", "array_resize") and len(args) >= 2 and numbers[1] is not None:
        elements = int(numbers[1])
    if elements > MAX_LITERAL_LIST_ELEMENTS:
        streams = name in ("range", "generate_series")
        raise Refused(
            f"{name}() would build a list of {elements:,} elements; one list may hold at most "
            f"{MAX_LITERAL_LIST_ELEMENTS:,}: build smaller lists"
            + (f", or read rows from the table function (FROM {name}(...))" if streams else "")
        )


def loads(text: str) -> Any:
    """`json.loads`, but without recursion when the document nests deeper than Python's
    recursion limit allows (a statement with hundreds of terms)."""
    try:
        return json.loads(text)
    except RecursionError:
        return _loads_iteratively(text)


def _loads_iteratively(text: str) -> Any:
    """Parse JSON written by DuckDB (well-formed) with an explicit stack."""
    root: Any = None
    stack: list[list[Any]] = []  # [container, key awaiting its value]
    expect_key = False
    for match in _TOKEN.finditer(text):
        token = match.group(0)
        if token == ":":
            expect_key = False
            continue
        if token == ",":
            expect_key = bool(stack) and isinstance(stack[-1][0], dict)
            continue
        if token in ("}", "]"):
            stack.pop()
            expect_key = False
            continue
        value: Any = {} if token == "{" else [] if token == "[" else json.loads(token)
        if expect_key:
            stack[-1][1] = value
            expect_key = False
            continue
        if not stack:
            root = value
        elif isinstance(stack[-1][0], list):
            stack[-1][0].append(value)
        else:
            stack[-1][0][stack[-1][1]] = value
        if token == "{":
            stack.append([value, None])
            expect_key = True
        elif token == "[":
            stack.append([value, None])
    return root
