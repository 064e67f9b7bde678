"""Iceberg types of the DuckDB column types a version may have (`formats.structured`): each
maps to exactly one, a STRUCT to a `struct`, a LIST to a `list`, with field ids assigned
in order; and a type's shape without its ids, what two schemas are compared by."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Sequence

import duckdb
from pyiceberg.schema import Schema
from pyiceberg.types import (
    BinaryType,
    BooleanType,
    DateType,
    DecimalType,
    DoubleType,
    FloatType,
    IcebergType,
    IntegerType,
    ListType,
    LongType,
    NestedField,
    StringType,
    StructType,
    TimestampType,
    TimestamptzType,
    TimeType,
    UUIDType,
)

from lakehouse.formats.csv.types import Column


class IcebergError(RuntimeError):
    """The Iceberg table cannot be brought to the version (the version stays unpublished)."""


_SIMPLE_TYPES: dict[str, IcebergType] = {
    "BOOLEAN": BooleanType(),
    "TINYINT": IntegerType(),
    "SMALLINT": IntegerType(),
    "INTEGER": IntegerType(),
    "BIGINT": LongType(),
    "FLOAT": FloatType(),
    "DOUBLE": DoubleType(),
    "DATE": DateType(),
    "TIME": TimeType(),
    "TIMESTAMP": TimestampType(),
    "TIMESTAMP WITH TIME ZONE": TimestamptzType(),
    "VARCHAR": StringType(),
    "BLOB": BinaryType(),
    "UUID": UUIDType(),
}
_DECIMAL = re.compile(r"DECIMAL\((\d+),\s*(\d+)\)")


def iceberg_type(duckdb_type: str, ids: Iterator[int] | None = None) -> IcebergType:
    """The Iceberg type that holds a DuckDB column type exactly (DuckDB writes TIMESTAMP as
    microseconds without a zone: Iceberg `timestamp`; WITH TIME ZONE: `timestamptz`). A
    STRUCT is a `struct`, a LIST a `list`; their fields take ids from `ids`."""
    found = _SIMPLE_TYPES.get(duckdb_type.upper())
    if found is not None:
        return found
    if decimal := _DECIMAL.fullmatch(duckdb_type.upper()):
        return DecimalType(int(decimal[1]), int(decimal[2]))
    parsed = duckdb.sqltype(duckdb_type)
    ids = ids if ids is not None else itertools.count(1)
    if parsed.id == "struct":
        return StructType(
            *(
                NestedField(next(ids), name, iceberg_type(str(child), ids), required=False)
                for name, child in parsed.children
            )
        )
    if parsed.id == "list":
        element_id = next(ids)
        element = iceberg_type(str(parsed.children[0][1]), ids)
        return ListType(element_id, element, element_required=False)
    raise IcebergError(f"no exact Iceberg type for the DuckDB type {duckdb_type}")


def iceberg_schema(columns: Sequence[Column]) -> Schema:
    nested = itertools.count(len(columns) + 1)  # ids of nested fields follow the columns'
    return Schema(
        *(
            NestedField(i, c.name, iceberg_type(c.type, nested), required=False)
            for i, c in enumerate(columns, start=1)
        )
    )


def shape(type_: IcebergType) -> object:
    """A type without its nested field ids: what two schemas' columns are compared by."""
    if isinstance(type_, StructType):
        return ("struct", tuple((f.name, shape(f.field_type)) for f in type_.fields))
    if isinstance(type_, ListType):
        return ("list", shape(type_.element_type))
    return str(type_)
