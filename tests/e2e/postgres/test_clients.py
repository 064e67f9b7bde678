"""The Postgres endpoint through each real client a data team uses: psql, psycopg (simple
and extended protocol, text and binary, a server-side cursor), asyncpg (binary), SQLAlchemy
with pandas, the JDBC driver (as DBeaver and Metabase use it) and ADBC. Every type of the
README's list comes back exactly, money as an exact numeric."""

from __future__ import annotations

import asyncio
import subprocess
from datetime import date, datetime
from decimal import Decimal

import asyncpg
import pandas as pd
import psycopg
import pytest
import sqlalchemy as sa

from devstack.stack import Stack
from tests.e2e.postgres.conftest import (
    JDBC_JAR,
    PSQL,
    ROWS,
    SELECT_TYPED,
    dsn,
    jdbc_probe,
    psql_env,
    url,
)

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def psql(stack: Stack, token: str, *commands: str) -> subprocess.CompletedProcess[str]:
    argv = [str(PSQL), "-X", "-v", "ON_ERROR_STOP=1"]
    for command in commands:
        argv += ["-c", command]
    return subprocess.run(
        argv, env=psql_env(stack, token), capture_output=True, text=True, timeout=60
    )


def test_psql_lists_describes_and_queries(stack: Stack, reader_token: str) -> None:
    listed = psql(stack, reader_token, r"\dt", r"\d typed", r"\l", SELECT_TYPED)
    assert listed.returncode == 0, listed.stderr
    out = listed.stdout
    assert "public | typed" in out and "typed__rejects" in out
    assert "secret_sales" not in out  # granted `typed` only: no trace of the other
    for column, pg_type in (
        ("id", "bigint"),
        ("amount", "numeric(18,2)"),
        ("ratio", "double precision"),
        ("day", "date"),
        ("at", "timestamp without time zone"),
        ("ok", "boolean"),
        ("label", "text"),
    ):
        cells = [[cell.strip() for cell in line.split("|")] for line in out.splitlines()]
        assert [column, pg_type] in [row[:2] for row in cells], column
    assert " lakehouse " in out  # \l lists the database
    assert (
        "12.50" in out and "-0.01" in out and "1500" in out and "2024-01-02 03:04:05.123456" in out
    )
    assert 'béta, "quoted"' in out
    assert "(3 rows)" in out


def test_psql_copy_to_stdout_writes_csv(stack: Stack, reader_token: str) -> None:
    copied = psql(stack, reader_token, f"COPY ({SELECT_TYPED}) TO STDOUT WITH (FORMAT csv)")
    assert copied.returncode == 0, copied.stderr
    assert copied.stdout.splitlines() == [
        "1,12.50,1500.0,2024-01-02,2024-01-02 03:04:05.123456,t,alpha",
        '2,-0.01,-0.00225,1999-12-31,1999-12-31 23:59:59,f,"béta, ""quoted"""',
        "3,,,,,,",
    ]


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_psycopg_round_trips_every_type(stack: Stack, reader_token: str, binary: bool) -> None:
    with psycopg.connect(dsn(stack, reader_token)) as conn:
        simple = conn.execute(SELECT_TYPED, prepare=False).fetchall()  # simple protocol
        extended = (
            conn.cursor(binary=binary)
            .execute(
                'SELECT id, amount, ratio, day, "at", ok, label FROM typed '
                "WHERE id >= %s AND (label <> %s OR label IS NULL) ORDER BY id",
                (1, "nobody"),
            )
            .fetchall()
        )
    assert simple == ROWS
    assert extended == ROWS
    assert isinstance(extended[0][1], Decimal) and str(extended[0][1]) == "12.50"


def test_psycopg_server_side_cursor_streams_a_million_rows(stack: Stack, reader_token: str) -> None:
    with psycopg.connect(dsn(stack, reader_token)) as conn, conn.cursor(name="big") as cursor:
        cursor.itersize = 50_000
        cursor.execute("SELECT range AS n FROM range(1000000)")
        count = total = 0
        for (n,) in cursor:
            count += 1
            total += n
    assert (count, total) == (1_000_000, 999_999 * 1_000_000 // 2)


def test_asyncpg_decodes_binary_types(stack: Stack, reader_token: str) -> None:
    async def fetch() -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
        conn = await asyncpg.connect(url(stack, reader_token))
        try:
            everything = await conn.fetch(SELECT_TYPED)
            one = await conn.fetch("SELECT id, amount FROM typed WHERE id = $1", 2)
            return everything, one
        finally:
            await conn.close()

    everything, one = asyncio.run(fetch())
    assert [tuple(r.values()) for r in everything] == ROWS
    assert [tuple(r.values()) for r in one] == [(2, Decimal("-0.01"))]


def test_sqlalchemy_reflects_and_pandas_reads(stack: Stack, reader_token: str) -> None:
    engine = sa.create_engine(url(stack, reader_token, "postgresql+psycopg"))
    try:
        inspector = sa.inspect(engine)
        assert set(inspector.get_table_names()) == {"typed", "typed__rejects"}
        types = {c["name"]: str(c["type"]) for c in inspector.get_columns("typed")}
        assert types == {
            "id": "BIGINT",
            "amount": "NUMERIC(18, 2)",
            "ratio": "DOUBLE PRECISION",
            "day": "DATE",
            "at": "TIMESTAMP",
            "ok": "BOOLEAN",
            "label": "TEXT",
        }
        table = sa.Table("typed", sa.MetaData(), autoload_with=engine)
        frame = pd.read_sql(sa.select(table).order_by(table.c.id), engine, coerce_float=False)
    finally:
        engine.dispose()
    assert list(frame["amount"][:2]) == [Decimal("12.50"), Decimal("-0.01")]
    assert list(frame["id"]) == [1, 2, 3]
    assert frame["at"][0].to_pydatetime() == datetime(2024, 1, 2, 3, 4, 5, 123456)
    assert frame["day"][1] == date(1999, 12, 31)
    assert frame.iloc[2].isna().sum() == 6  # every column but id is NULL


def test_jdbc_metadata_and_query_as_bi_tools_use_them(stack: Stack, reader_token: str) -> None:
    probe = subprocess.run(
        [
            "java",
            "-cp",
            str(JDBC_JAR),
            str(jdbc_probe()),
            f"jdbc:postgresql://127.0.0.1:{stack.settings.pg_port}/lakehouse",
            reader_token,
            "typed",
            'SELECT id, amount, ratio, day, "at", ok, label FROM typed WHERE id >= ? ORDER BY id',
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    lines = [line.split("\t") for line in probe.stdout.splitlines()]
    assert ["schema", "public"] in lines
    assert [line[2] for line in lines if line[0] == "table"] == ["typed", "typed__rejects"]
    columns = {line[1]: line[2:] for line in lines if line[0] == "column"}
    assert columns["amount"] == ["numeric", "2", "18", "2"]  # java.sql.Types.NUMERIC
    assert columns["id"][:2] == ["int8", "-5"]  # BIGINT
    assert columns["ratio"][:2] == ["float8", "8"]  # DOUBLE
    assert columns["at"][:2] == ["timestamp", "93"]
    rows = [line[1:] for line in lines if line[0] == "row"]
    assert rows[0] == [
        "id=Long:1",
        "amount=BigDecimal:12.50",
        "ratio=Double:1500.0",
        "day=Date:2024-01-02",
        "at=Timestamp:2024-01-02 03:04:05.123456",
        "ok=Boolean:t",
        "label=String:alpha",
    ]
    assert rows[2][1:] == [
        "amount=NULL",
        "ratio=NULL",
        "day=NULL",
        "at=NULL",
        "ok=NULL",
        "label=NULL",
    ]


def test_adbc_reads_into_arrow(stack: Stack, reader_token: str) -> None:
    import adbc_driver_postgresql.dbapi as adbc

    with adbc.connect(url(stack, reader_token)) as conn, conn.cursor() as cursor:
        cursor.execute(SELECT_TYPED)
        table = cursor.fetch_arrow_table()
    assert table.column("id").to_pylist() == [1, 2, 3]
    # ADBC hands Postgres numerics over as their exact text (as it does from Postgres).
    assert table.column("amount").to_pylist() == ["12.50", "-0.01", None]
    assert table.column("ratio").to_pylist() == [1500.0, -0.00225, None]
    assert table.column("day").to_pylist() == [date(2024, 1, 2), date(1999, 12, 31), None]
    assert table.column("at").to_pylist()[0] == datetime(2024, 1, 2, 3, 4, 5, 123456)
    assert table.column("ok").to_pylist() == [True, False, None]
    assert table.column("label").to_pylist() == ["alpha", 'béta, "quoted"', None]
