"""The emulated Postgres catalog, in process: what psql, JDBC and SQLAlchemy ask, over the
tables a token is granted, in Postgres's own shapes; and nothing of DuckDB's own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pg_mimic import PgError

from api.pgwire.catalog import CatalogDatabase, reads_catalog, rewrite
from api.pgwire.settings import DEFAULT_SETTINGS
from api.pgwire.types import Column


@pytest.fixture
def catalog() -> Iterator[CatalogDatabase]:
    tables = {
        "sales": [Column.of("id", "BIGINT"), Column.of("amount", "DECIMAL(18,2)")],
        "sales__rejects": [Column.of("line", "UBIGINT")],
    }
    database = CatalogDatabase(tables, "analyst", "lakehouse")
    yield database
    database.close()


def rows(catalog: CatalogDatabase, sql: str, *params: object) -> list[tuple[object, ...]]:
    return catalog.query(sql, params)[1]


def test_catalog_queries_are_told_apart_from_dataset_queries() -> None:
    assert reads_catalog("SELECT * FROM pg_catalog.pg_class")
    assert reads_catalog("select table_name from information_schema.tables")
    assert reads_catalog("SELECT c.relname FROM pg_class c")
    assert reads_catalog("SELECT 'sales'::regclass")
    assert reads_catalog("SELECT word FROM pg_get_keywords()")
    assert not reads_catalog("SELECT * FROM sales WHERE note = 'pg_catalog.pg_class'")
    assert not reads_catalog("SELECT count(*) FROM sales")


def test_names_are_rewritten_and_nothing_else() -> None:
    assert rewrite("SELECT 'pg_class'::regclass", "a") == "SELECT lh_catalog.regclass('pg_class')"
    assert rewrite("x OPERATOR(pg_catalog.~) 'y' COLLATE pg_catalog.default", "a") == "x ~ 'y'"
    assert rewrite("SELECT pg_catalog.lower(current_user)", "o'k") == "SELECT lower('o''k')"


def test_psql_lists_the_granted_tables(catalog: CatalogDatabase) -> None:
    listed = rows(
        catalog,
        "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c "
        "LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r','p','') AND n.nspname !~ '^pg_toast' "
        "AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY 1, 2",
    )
    assert listed == [("public", "sales"), ("public", "sales__rejects")]


def test_types_are_postgres_types_with_their_modifiers(catalog: CatalogDatabase) -> None:
    described = rows(
        catalog,
        "SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), t.typname "
        "FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid "
        "WHERE a.attrelid = 'sales'::regclass ORDER BY a.attnum",
    )
    assert described == [("id", "bigint", "int8"), ("amount", "numeric(18,2)", "numeric")]
    info = rows(
        catalog,
        "SELECT column_name, data_type, numeric_precision, numeric_scale "
        "FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position",
        "sales",
    )
    assert info == [("id", "bigint", 64, 0), ("amount", "numeric", 18, 2)]


def test_postgres_dialect_is_answered(catalog: CatalogDatabase) -> None:
    assert rows(catalog, "SELECT 'sales'::regclass, 'int8'::pg_catalog.regtype") == [(16384, 20)]
    keywords = rows(catalog, "SELECT count(*) FROM pg_catalog.pg_get_keywords()")
    assert keywords[0][0] > 100
    assert rows(catalog, "SELECT pg_catalog.version()")[0][0].startswith("PostgreSQL 16")


def test_a_cast_to_regclass_or_regtype_names_what_is_there_or_fails(
    catalog: CatalogDatabase,
) -> None:
    """Postgres's casts fail for a name it does not have (to_regclass answers NULL):
    never a NULL that reads as a missing row."""
    assert rows(catalog, "SELECT 'public.sales'::regclass, 'sales'::regclass") == [(16384, 16384)]
    assert rows(catalog, "SELECT 'integer'::regtype, 'double precision'::regtype") == [(23, 701)]
    assert rows(catalog, "SELECT to_regclass('nosuch'), to_regtype('nosuch')") == [(None, None)]
    for cast, state in (("'nosuch'::regclass", "42P01"), ("'nosuch'::regtype", "42704")):
        with pytest.raises(PgError) as refused:
            catalog.query(f"SELECT {cast}")
        assert refused.value.sqlstate == state, refused.value.message


def test_duckdbs_own_catalog_and_settings_stay_hidden(catalog: CatalogDatabase) -> None:
    with pytest.raises(PgError, match="not part of the Postgres catalog"):
        catalog.query("SELECT * FROM duckdb_settings()")
    with pytest.raises(PgError, match="one SELECT"):
        catalog.query("SET threads = 8")
    with pytest.raises(PgError) as unknown:  # DuckDB's own setting, as Postgres answers
        catalog.query("SELECT current_setting('memory_limit') FROM pg_catalog.pg_class")
    assert unknown.value.sqlstate == "42704"
    assert 'unrecognized configuration parameter "memory_limit"' in unknown.value.message
    missing_ok = "SELECT current_setting('memory_limit', true) FROM pg_class LIMIT 1"
    assert rows(catalog, missing_ok) == [(None,)]
    names = rows(catalog, "SELECT nspname FROM pg_catalog.pg_namespace ORDER BY 1")
    assert names == [("information_schema",), ("pg_catalog",), ("public",)]


def test_pg_settings_and_current_setting_give_the_sessions_values(
    catalog: CatalogDatabase,
) -> None:
    # Postgres's pg_settings shows the asking session's values, as current_setting() does:
    # a catalog query must not answer the defaults after the session set something else.
    session = {**DEFAULT_SETTINGS, "application_name": "report", "myapp.region": "eu"}
    query = "SELECT current_setting('application_name'), current_setting('myapp.region')"
    assert catalog.query(f"{query} FROM pg_class LIMIT 1", (), session)[1] == [("report", "eu")]
    listed = "SELECT name, setting FROM pg_settings WHERE name LIKE 'application%' OR name = ?"
    assert catalog.query(listed, ("block_size",), session)[1] == [
        ("application_name", "report"),
        ("block_size", "8192"),
    ]
    one = "SELECT current_setting('application_name') FROM pg_class LIMIT 1"
    assert rows(catalog, one) == [("report",)]  # kept until the session's settings change
    assert catalog.query(one, (), DEFAULT_SETTINGS)[1] == [("",)]


def test_what_is_not_emulated_is_an_error_that_names_it(catalog: CatalogDatabase) -> None:
    with pytest.raises(PgError) as missing:
        catalog.query("SELECT * FROM pg_catalog.pg_stat_replication")
    assert missing.value.sqlstate == "42P01"
    assert "pg_catalog.pg_stat_replication" in missing.value.message
