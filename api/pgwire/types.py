"""DuckDB's types as Postgres sees them, and values both ways.

A column's Postgres type is chosen from its DuckDB type before any row exists (a client
reads the RowDescription first). Each DuckDB type maps to the Postgres type that holds
its values exactly; what Postgres has no type for (intervals with months, unsigned 128-bit
integers, unions, bit strings...) is sent as text, and nested values (lists, structs,
maps) as `json`: the query process converts them before they leave it (`PG_AS_TEXT`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import pyarrow as pa
import sqlglot
from pg_mimic import PgError, ResultColumn
from pg_mimic import types as pg
from sqlglot import exp

# DuckDB type (upper case, without arguments) -> Postgres type OID.
DUCKDB_OIDS = {
    "BOOLEAN": pg.BOOL,
    "TINYINT": pg.INT2,
    "SMALLINT": pg.INT2,
    "UTINYINT": pg.INT2,
    "INTEGER": pg.INT4,
    "USMALLINT": pg.INT4,
    "BIGINT": pg.INT8,
    "UINTEGER": pg.INT8,
    "UBIGINT": pg.NUMERIC,
    "HUGEINT": pg.NUMERIC,
    "DECIMAL": pg.NUMERIC,
    "FLOAT": pg.FLOAT4,
    "DOUBLE": pg.FLOAT8,
    "VARCHAR": pg.TEXT,
    "BLOB": pg.BYTEA,
    "DATE": pg.DATE,
    "TIME": pg.TIME,
    "TIMESTAMP": pg.TIMESTAMP,
    "TIMESTAMP_MS": pg.TIMESTAMP,
    "TIMESTAMP_S": pg.TIMESTAMP,
    "TIMESTAMP WITH TIME ZONE": pg.TIMESTAMPTZ,
    "UUID": pg.UUID,
    "JSON": pg.JSON,
}
_NESTED = re.compile(r"\[\]$|\[\d+\]$|^(STRUCT|MAP|UNION)\(")
_DECIMAL = re.compile(r"^DECIMAL\((\d+),\s*(\d+)\)$")


class OutOfRange(ValueError):
    """A parameter's value is past what its declared type holds (22003)."""


def _integer(bits: int) -> Callable[[str], int]:
    def convert(text: str) -> int:
        value = int(text)
        if not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
            raise OutOfRange(f"parameter {text!r} is out of range for a {bits}-bit integer")
        return value

    return convert


# Postgres's spellings of a boolean (and, as it accepts, any unique prefix of the words).
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def _boolean(text: str) -> bool:
    word = text.strip().lower()
    true = bool(word) and any(t.startswith(word) for t in _TRUE)
    false = bool(word) and any(f.startswith(word) for f in _FALSE)
    if true == false:  # neither, or both (`o`)
        raise ValueError(f"parameter {text!r} is not a boolean: send true or false")
    return true


def _bytea(text: str) -> bytes:
    """Postgres's text form of bytea: hex (`\\x0102`), or the escape form (`a\\001\\\\`)."""
    if text.startswith("\\x"):
        return bytes.fromhex(text[2:])
    out, i = bytearray(), 0
    while i < len(text):
        if text[i] != "\\":
            out += text[i].encode()
            i += 1
        elif text[i + 1 : i + 2] == "\\":
            out.append(0x5C)
            i += 2
        elif re.fullmatch(r"[0-3][0-7]{2}", text[i + 1 : i + 4]):
            out.append(int(text[i + 1 : i + 4], 8))
            i += 4
        else:
            raise ValueError(f"parameter {text[:40]!r} is not bytea: send \\x and hex digits")
    return bytes(out)


# Parameter OIDs a client may declare -> how the value becomes what DuckDB binds.
_PARAMETERS: dict[int, Callable[[str], Any]] = {
    pg.INT2: _integer(16),
    pg.INT4: _integer(32),
    pg.INT8: _integer(64),
    pg.OID: _integer(33),  # 0 .. 2^32 - 1 in Postgres; the sign is DuckDB's to refuse
    pg.FLOAT4: float,
    pg.FLOAT8: float,
    pg.NUMERIC: Decimal,
    pg.BOOL: _boolean,
    pg.BYTEA: _bytea,
    pg.DATE: date.fromisoformat,
    pg.TIME: time.fromisoformat,
    pg.TIMESTAMP: datetime.fromisoformat,
    pg.TIMESTAMPTZ: datetime.fromisoformat,
}


@dataclass
class Column(ResultColumn):
    """A result column: its Postgres type, the type modifier that carries a numeric's
    precision and scale (numeric(p,s) is ((p << 16) | s) + 4, as Postgres writes it), and
    the DuckDB type it came from."""

    type_modifier: int = -1
    duckdb_type: str = ""

    @classmethod
    def of(cls, name: str, duckdb_type: str) -> Column:
        kind = duckdb_type.upper()
        if _NESTED.search(kind):
            return cls(name, pg.JSON, duckdb_type=duckdb_type)
        decimal = _DECIMAL.match(kind)
        if decimal:
            precision, scale = int(decimal[1]), int(decimal[2])
            modifier = ((precision << 16) | scale) + 4
            return cls(name, pg.NUMERIC, modifier, duckdb_type)
        return cls(name, DUCKDB_OIDS.get(kind, pg.TEXT), duckdb_type=duckdb_type)

    @property
    def converted(self) -> str | None:
        """How a value of a type Postgres has no counterpart of here is sent ("text",
        "json"); None when it is sent as its own type."""
        kind = self.duckdb_type.upper()
        if self.oid == pg.JSON and kind != "JSON":
            return "json"
        if self.oid == pg.TEXT and kind not in ("VARCHAR", "TEXT", ""):
            return "text"
        return None


def conversions_notice(columns: Sequence[Column]) -> str | None:
    """What the answer sends in another type than its own: said, never silent."""
    said = [f"{c.name} ({c.duckdb_type}) as {c.converted}" for c in columns if c.converted]
    if not said:
        return None
    return f"sent in another type than their own: {'; '.join(said)}"


# The Postgres name of each type a column may have (the catalog's `data_type`).
_NAMES = {
    pg.BOOL: "boolean",
    pg.INT2: "smallint",
    pg.INT4: "integer",
    pg.INT8: "bigint",
    pg.NUMERIC: "numeric",
    pg.FLOAT4: "real",
    pg.FLOAT8: "double precision",
    pg.TEXT: "text",
    pg.BYTEA: "bytea",
    pg.DATE: "date",
    pg.TIME: "time",
    pg.TIMESTAMP: "timestamp",
    pg.TIMESTAMPTZ: "timestamptz",
    pg.UUID: "uuid",
    pg.JSON: "json",
}


def pg_type_name(column: Column) -> str:
    return _NAMES[column.oid]


def columns_of(described: Sequence[dict[str, str]]) -> list[Column]:
    return [Column.of(c["name"], c["type"]) for c in described]


def parameter(oid: int | None, value: Any) -> Any:
    """A bound parameter as DuckDB should bind it: typed where the client declared the
    type, else the text itself (DuckDB casts it where the statement's context says)."""
    if value is None or not isinstance(value, str):
        return value
    convert: Callable[[str], Any] | None = _PARAMETERS.get(oid or 0)
    if convert is None:
        return value
    try:
        return convert(value)
    except OutOfRange:
        raise
    except ValueError as exc:
        raise ValueError(f"parameter {value!r} is not a valid {_type_name(oid)}") from exc


def parameters(oids: Sequence[int], values: Sequence[Any]) -> list[Any]:
    """A statement's bound values as DuckDB binds them (`parameter`), or 22P02 naming the
    one that is not of its type."""
    try:
        return [parameter(oid, value) for oid, value in zip(oids, values, strict=False)]
    except OutOfRange as exc:
        raise PgError("22003", str(exc)) from exc
    except ValueError as exc:
        raise PgError("22P02", str(exc)) from exc


def _type_name(oid: int | None) -> str:
    return {v: k.lower() for k, v in vars(pg).items() if k.isupper() and isinstance(v, int)}.get(
        oid or 0, "value"
    )


def rows_of(batch: pa.RecordBatch, columns: Sequence[Column]) -> Iterator[tuple[Any, ...]]:
    """The batch's rows as Python values the Postgres encoders take (integers of a
    numeric column as Decimal)."""
    values = []
    for array, column in zip(batch.columns, columns, strict=True):
        python = array.to_pylist()
        if column.oid == pg.NUMERIC:
            python = [v if v is None or isinstance(v, Decimal) else Decimal(v) for v in python]
        values.append(python)
    return zip(*values, strict=True)


# Postgres type names a parameter may be cast to (`$1::int`) -> OID.
_CAST_OIDS = {
    "INT": pg.INT4,
    "INTEGER": pg.INT4,
    "INT4": pg.INT4,
    "BIGINT": pg.INT8,
    "INT8": pg.INT8,
    "SMALLINT": pg.INT2,
    "INT2": pg.INT2,
    "DOUBLE": pg.FLOAT8,
    "DOUBLE PRECISION": pg.FLOAT8,
    "FLOAT": pg.FLOAT8,
    "REAL": pg.FLOAT4,
    "DECIMAL": pg.NUMERIC,
    "NUMERIC": pg.NUMERIC,
    "BOOLEAN": pg.BOOL,
    "DATE": pg.DATE,
    "TIMESTAMP": pg.TIMESTAMP,
    "TIMESTAMPTZ": pg.TIMESTAMPTZ,
}


def parameter_types(sql: str, count: int, columns: Mapping[str, int]) -> list[int]:
    """The type of each of a statement's `count` parameters, for a client that did not
    say (asyncpg asks the server, and encodes its arguments as told): a cast's type
    (`$1::int`), the column a parameter is compared with (`id = $1`, `id IN ($1, $2)`,
    given `columns`: column name -> type, where one type holds for the name), bigint for
    LIMIT and OFFSET, and text otherwise (DuckDB casts text where the statement says)."""
    types = [pg.TEXT] * count
    try:
        tree = sqlglot.parse_one(sql, dialect="postgres")
    except sqlglot.errors.SqlglotError:
        return types
    for node in tree.find_all(exp.Parameter):
        number = int(node.this.this) if isinstance(node.this, exp.Literal) else 0
        if 1 <= number <= count:
            types[number - 1] = _parameter_type(node, columns)
    return types


def _parameter_type(node: exp.Expression, columns: Mapping[str, int]) -> int:
    parent = node.parent
    if isinstance(parent, exp.Cast):
        return _CAST_OIDS.get(parent.to.sql(dialect="postgres").upper().split("(")[0], pg.TEXT)
    if isinstance(parent, exp.Limit | exp.Offset):
        return pg.INT8
    if isinstance(parent, exp.In):
        parent = parent if parent.this is not node else None
        other = parent.this if parent is not None else None
    elif isinstance(parent, exp.Binary):
        other = parent.expression if parent.this is node else parent.this
    else:
        other = None
    if isinstance(other, exp.Column):
        return columns.get(other.name.lower(), pg.TEXT)
    return pg.TEXT
