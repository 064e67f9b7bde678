"""What the Postgres endpoint reads from a statement's text before anything runs: its
parameters and their types, `SET lakehouse.as_of`, COPY's options, and DuckDB types as
Postgres types."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest
from pg_mimic import PgError
from pg_mimic import types as pg

from api.pgwire.commands import parameter_count
from api.pgwire.copy_out import _options
from api.pgwire.settings import parse_as_of
from api.pgwire.types import DUCKDB_OIDS, Column, parameter, parameter_types, parameters
from api.query.formats import PG_NATIVE


@pytest.mark.parametrize(
    ("sql", "count"),
    [
        ("SELECT 1", 0),
        ("SELECT * FROM t WHERE a = $1 AND b = $2", 2),
        ("SELECT '$1 is text', \"$2\" FROM t WHERE a = $1", 1),
        ("SELECT $3 -- $9 in a comment\n, /* $8 */ $1", 3),
    ],
)
def test_parameters_are_counted_outside_literals_and_comments(sql: str, count: int) -> None:
    assert parameter_count(sql) == count


def test_parameter_types_come_from_casts_columns_and_limits() -> None:
    sql = "SELECT * FROM t WHERE id = $1 AND x > $2::int AND name IN ($3, $4) LIMIT $5"
    assert parameter_types(sql, 5, {"id": pg.INT8, "name": pg.TEXT}) == [
        pg.INT8,
        pg.INT4,
        pg.TEXT,
        pg.TEXT,
        pg.INT8,
    ]
    assert parameter_types("not sql at all ((", 1, {}) == [pg.TEXT]  # text: DuckDB casts


def test_parameters_are_bound_as_the_type_the_client_declared() -> None:
    assert parameter(pg.INT8, "42") == 42
    assert parameter(pg.NUMERIC, "12.50") == Decimal("12.50")
    assert parameter(pg.DATE, "2024-01-02") == date(2024, 1, 2)
    assert parameter(pg.TIMESTAMP, "2024-01-02 03:04:05") == datetime(2024, 1, 2, 3, 4, 5)
    assert parameter(pg.BOOL, "t") is True
    assert parameter(None, "as is") == "as is"
    with pytest.raises(ValueError, match="not a valid int8"):
        parameter(pg.INT8, "forty-two")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("t", True),
        (" TRUE ", True),
        ("yes", True),
        ("on", True),
        ("1", True),
        ("f", False),
        ("No", False),
        ("off", False),
        ("0", False),
        ("fal", False),
    ],
)
def test_a_boolean_parameter_takes_postgres_spellings(text: str, value: bool) -> None:
    assert parameter(pg.BOOL, text) is value


@pytest.mark.parametrize(
    ("oid", "text", "state"),
    [
        (pg.BOOL, "maybe", "22P02"),
        (pg.BOOL, "o", "22P02"),
        (pg.BOOL, "", "22P02"),
        (pg.INT2, "40000", "22003"),
        (pg.INT4, str(2**31), "22003"),
        (pg.INT8, str(2**63), "22003"),
        (pg.BYTEA, "\\xzz", "22P02"),
        (pg.BYTEA, "a\\9", "22P02"),
    ],
    ids=[
        "maybe",
        "ambiguous-o",
        "empty",
        "int2-past",
        "int4-past",
        "int8-past",
        "bad-hex",
        "bad-escape",
    ],
)
def test_a_parameter_its_type_cannot_hold_is_refused_not_coerced(
    oid: int, text: str, state: str
) -> None:
    """Attack class: coerced parameters (`maybe` was false, 40000 an int2)."""
    with pytest.raises(PgError) as refused:
        parameters([oid], [text])
    assert refused.value.sqlstate == state


def test_a_bytea_parameter_is_its_bytes_not_its_text() -> None:
    assert parameter(pg.BYTEA, "\\x0102ff") == b"\x01\x02\xff"
    assert parameter(pg.BYTEA, "a\\001\\\\b") == b"a\x01\\b"


def test_as_of_takes_a_json_object_of_versions_or_says_what_to_send() -> None:
    assert parse_as_of("""'{"sales": 3, "orders": 1}'""") == {"sales": 3, "orders": 1}
    for wrong in ("'yesterday'", """'{"sales": "3"}'""", """'{"sales": 0}'""", "'[1]'"):
        with pytest.raises(PgError, match="takes a JSON object of dataset -> version"):
            parse_as_of(wrong)


def test_copy_options() -> None:
    assert _options("(FORMAT binary)") == ("binary", False)
    assert _options("(FORMAT csv, HEADER true)") == ("csv", True)
    assert _options("csv") == ("csv", False)
    assert _options("") == ("text", False)
    with pytest.raises(PgError, match="not supported"):
        _options("(FORMAT csv, DELIMITER ';')")


@pytest.mark.parametrize(
    ("duckdb_type", "oid", "modifier"),
    [
        ("BIGINT", pg.INT8, -1),
        ("DECIMAL(18,2)", pg.NUMERIC, (18 << 16 | 2) + 4),
        ("DOUBLE", pg.FLOAT8, -1),
        ("DATE", pg.DATE, -1),
        ("TIMESTAMP", pg.TIMESTAMP, -1),
        ("BOOLEAN", pg.BOOL, -1),
        ("VARCHAR", pg.TEXT, -1),
        ("HUGEINT", pg.NUMERIC, -1),
        ("INTEGER[]", pg.JSON, -1),
        ("STRUCT(a INTEGER)", pg.JSON, -1),
        ("INTERVAL", pg.TEXT, -1),
    ],
)
def test_duckdb_types_as_postgres_types(duckdb_type: str, oid: int, modifier: int) -> None:
    column = Column.of("c", duckdb_type)
    assert (column.oid, column.type_modifier) == (oid, modifier)


def test_the_query_process_sends_natively_exactly_the_types_with_a_postgres_type() -> None:
    spelled = {t.lower() for t in DUCKDB_OIDS} - {"json"}
    assert spelled == set(PG_NATIVE) - {"enum"}
