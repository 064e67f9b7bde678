"""The Iceberg side's pure parts: type mapping, catalog URLs, keys (no server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lakehouse.formats.csv.types import Column
from lakehouse.publish.iceberg_types import IcebergError, iceberg_schema, iceberg_type
from lakehouse.settings import Settings, sqlalchemy_url
from lakehouse.store.layout import key_of


@pytest.mark.parametrize(
    ("duckdb_type", "iceberg"),
    [
        ("BOOLEAN", "boolean"),
        ("INTEGER", "int"),
        ("BIGINT", "long"),
        ("FLOAT", "float"),
        ("DOUBLE", "double"),
        ("DECIMAL(38,2)", "decimal(38, 2)"),
        ("DECIMAL(18, 0)", "decimal(18, 0)"),
        ("DATE", "date"),
        ("TIME", "time"),
        ("TIMESTAMP", "timestamp"),
        ("TIMESTAMP WITH TIME ZONE", "timestamptz"),
        ("VARCHAR", "string"),
        ("BLOB", "binary"),
        ("UUID", "uuid"),
    ],
)
def test_each_duckdb_type_has_one_exact_iceberg_type(duckdb_type: str, iceberg: str) -> None:
    assert str(iceberg_type(duckdb_type)) == iceberg


@pytest.mark.parametrize("duckdb_type", ["HUGEINT", "UBIGINT", "TIMESTAMP_NS", "INTERVAL"])
def test_a_type_iceberg_cannot_hold_exactly_is_refused(duckdb_type: str) -> None:
    with pytest.raises(IcebergError, match=duckdb_type):
        iceberg_type(duckdb_type)


def test_the_schema_keeps_the_columns_order_and_ids() -> None:
    schema = iceberg_schema([Column("b", "BIGINT", ""), Column("a", "VARCHAR", "")])
    assert [(f.field_id, f.name, str(f.field_type), f.required) for f in schema.fields] == [
        (1, "b", "long", False),
        (2, "a", "string", False),
    ]


def test_the_catalog_lives_beside_the_dagster_instance(tmp_path: Path) -> None:
    sqlite = Settings(state_dir=tmp_path).iceberg_catalog_url
    assert sqlite == f"sqlite:///{tmp_path.absolute()}/iceberg/catalog.db"
    url = "postgresql://u:p@db:5432/dagster"
    assert Settings(state_dir=tmp_path, postgres_url=url).iceberg_catalog_url == url
    # SQLAlchemy 2.1 would read a bare postgresql:// as psycopg 3; psycopg2 is installed.
    assert sqlalchemy_url(url) == "postgresql+psycopg2://u:p@db:5432/dagster"
    assert sqlalchemy_url("postgres://db/x") == "postgresql+psycopg2://db/x"
    assert sqlalchemy_url(sqlite) == sqlite


def test_keys_of_urls_in_the_bucket_only() -> None:
    assert key_of("s3://lakehouse/datasets/a/v1.parquet", "lakehouse") == "datasets/a/v1.parquet"
    assert key_of("s3://other/datasets/a/v1.parquet", "lakehouse") is None
    assert key_of("file:///tmp/x.parquet", "lakehouse") is None
