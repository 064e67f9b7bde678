"""TPC-H's tables uploaded as CSV: every money column is an exact DECIMAL(p,2) with p <= 18
(one 64-bit integer per value), and its sum is the exact decimal sum that TPC-H's own
generator (DuckDB's dbgen, DECIMAL(15,2)) gives. A DOUBLE would have summed l_extendedprice
at SF 0.1 to ...880.68998 instead of ...880.69."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import duckdb
import duckdb_extension_tpch
import pytest

from lakehouse.duck import extension_path, sql_string
from lakehouse.formats.csv.convert import csv_to_parquet
from lakehouse.formats.csv.schema import infer_schema

MIB = 1024 * 1024
MONEY = {
    "lineitem": ["l_extendedprice", "l_discount", "l_tax"],
    "orders": ["o_totalprice"],
    "customer": ["c_acctbal"],
    "supplier": ["s_acctbal"],
    "part": ["p_retailprice"],
    "partsupp": ["ps_supplycost"],
}


@pytest.fixture(scope="module")
def tpch() -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect()
    con.execute(f"LOAD {sql_string(str(extension_path('tpch', duckdb_extension_tpch.__file__)))}")
    con.execute("CALL dbgen(sf = 0.01)")
    yield con
    con.close()


@pytest.mark.parametrize("table", list(MONEY))
def test_tpch_money_is_an_exact_fast_decimal_and_sums_exactly(
    tpch: duckdb.DuckDBPyConnection, tmp_path: Path, table: str
) -> None:
    source, target = tmp_path / f"{table}.csv", tmp_path / f"{table}.parquet"
    tpch.execute(f"COPY {table} TO {sql_string(str(source))} (HEADER)")
    with source.open("rb") as file:
        sample = file.read(MIB)
    schema = infer_schema(sample, complete=len(sample) < MIB)
    types = {c.name: c.type for c in schema.columns}
    converted = csv_to_parquet(duckdb.connect(), str(source), str(target), schema)
    assert converted.rejected == 0
    for column in MONEY[table]:
        precision, scale = map(int, re.findall(r"\d+", types[column]))
        assert types[column].startswith("DECIMAL") and scale == 2 and precision <= 18, types
        [(ours,)] = duckdb.sql(f"SELECT sum({column}) FROM '{target}'").fetchall()
        [(theirs,)] = tpch.execute(f"SELECT sum({column}) FROM {table}").fetchall()
        assert ours == theirs
