"""JSON Lines and Parquet through the one commit path (real S3 server and Iceberg catalog):
their rows round-trip exactly with their types, nested values included, and an upload of
each dying at each step of a run, then recovering, is applied once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest

from lakehouse.formats.structured import Format
from lakehouse.ingest.contract import SchemaConflict
from lakehouse.ingest.landing import Landing
from lakehouse.manifest import Manifest
from lakehouse.publish.iceberg import IcebergTables
from lakehouse.store import ObjectStore
from lakehouse.versions.commit import Published, Unchanged
from tests.integration.lakehouse.versions.harness import (
    STEP_IDS,
    STEPS,
    Died,
    ListCatalog,
    assert_consistent,
    con,
    dies,
    run,
    tables,
)

pytestmark = pytest.mark.integration
__all__ = ["con", "tables"]  # fixtures

JSONL = (
    b'{"id": 1, "tags": ["a", "b"], "addr": {"city": "Oslo", "zip": 150}, "m": 1.5, "ok": true}\n'
    b'{"id": 2, "tags": [], "addr": null, "m": 2.25, "ok": false}\n'
    b'{"id": 3, "addr": {"city": "Rome", "zip": null}, "m": null, "ok": null}\n'
)
PARQUET_ROWS = (
    "SELECT i::INTEGER AS id, (i * 1.25)::DECIMAL(10,2) AS price,"
    " DATE '2024-01-01' + i::INTEGER AS day,"
    " TIMESTAMPTZ '2024-01-01 00:00:00+00' + to_seconds(i) AS at,"
    " {'name': 'n' || i, 'sizes': [i, i + 1]} AS item, ['x', NULL, 'z'] AS tags"
    " FROM range(1, 6) t(i)"
)


def land(store: ObjectStore, data: bytes, fmt: Format, current: Manifest | None = None) -> None:
    Landing(store, "events", current=current, fmt=fmt).finish(data)


def parquet_bytes(tmp_path: Path, query: str = PARQUET_ROWS) -> bytes:
    path = tmp_path / "rows.parquet"
    duckdb.execute(f"COPY ({query}) TO '{path}' (FORMAT parquet)")
    return path.read_bytes()


def version_rows(con: duckdb.DuckDBPyConnection, store: ObjectStore, m: Manifest | None) -> list:
    assert m is not None
    urls = [store.url(o.key) for o in m.objects]
    return con.execute("SELECT * FROM read_parquet(?) ORDER BY id", [urls]).fetchall()


def test_json_lines_round_trip_with_nested_types(
    store: ObjectStore, tables: IcebergTables, con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    catalog = ListCatalog()
    land(store, JSONL, "jsonl")
    run(store, tables, catalog, con, tmp_path)
    manifest = catalog.latest("events")
    assert manifest is not None
    assert [(c.name, c.type) for c in manifest.columns] == [
        ("id", "BIGINT"),
        ("tags", "VARCHAR[]"),
        ("addr", "STRUCT(city VARCHAR, zip BIGINT)"),
        ("m", "DOUBLE"),
        ("ok", "BOOLEAN"),
    ]
    source = tmp_path / "rows.jsonl"
    source.write_bytes(JSONL)
    expected = duckdb.execute(
        f"SELECT * FROM read_json('{source}', format = 'newline_delimited') ORDER BY id"
    ).fetchall()
    assert version_rows(con, store, manifest) == expected
    assert_consistent(store, tables, catalog)
    table = tables.load("events")
    assert table is not None
    iceberg = sorted(table.scan().to_arrow().to_pylist(), key=lambda r: r["id"])
    assert iceberg[0]["addr"] == {"city": "Oslo", "zip": 150} and iceberg[0]["tags"] == ["a", "b"]
    # whole numbers appended to the DOUBLE column: read with the dataset's type
    land(store, b'{"id": 4, "tags": ["c"], "addr": null, "m": 7, "ok": true}\n', "jsonl", manifest)
    run(store, tables, catalog, con, tmp_path)
    assert version_rows(con, store, catalog.latest("events"))[-1] == (4, ["c"], None, 7.0, True)
    assert_consistent(store, tables, catalog)


def test_parquet_round_trips_exactly_with_its_types(
    store: ObjectStore, tables: IcebergTables, con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    catalog = ListCatalog()
    land(store, parquet_bytes(tmp_path), "parquet")
    run(store, tables, catalog, con, tmp_path)
    manifest = catalog.latest("events")
    assert manifest is not None
    original = tmp_path / "rows.parquet"
    described = duckdb.execute(f"DESCRIBE SELECT * FROM '{original}'").fetchall()
    assert [(c.name, c.type) for c in manifest.columns] == [(n, t) for n, t, *_ in described]
    expected = duckdb.execute(f"SELECT * FROM '{original}' ORDER BY id").fetchall()
    assert version_rows(con, store, manifest) == expected
    assert_consistent(store, tables, catalog)
    with pytest.raises(SchemaConflict):  # other columns, whatever the format: a 409
        land(store, b'{"id": 9, "price": 1.5}\n', "jsonl", current=manifest)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
@pytest.mark.parametrize(
    ("module", "step", "after"),
    STEPS,
    ids=STEP_IDS,
)
def test_a_json_or_parquet_upload_dying_at_each_step_then_recovering_applies_once(
    store: ObjectStore,
    tables: IcebergTables,
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fmt: Format,
    module: Any,
    step: str,
    after: bool,
) -> None:
    if step == "csv_to_parquet":  # a JSON or Parquet file converts in `structured`
        from lakehouse.versions import reading

        module, step = reading, "to_parquet"
    catalog = ListCatalog()
    data = JSONL if fmt == "jsonl" else parquet_bytes(tmp_path)
    land(store, data, fmt)
    with monkeypatch.context() as patch, pytest.raises(Died):
        patch.setattr(module, step, dies(getattr(module, step), after=after))
        run(store, tables, catalog, con, tmp_path)
    for _ in range(2):
        assert isinstance(run(store, tables, catalog, con, tmp_path), Published | Unchanged)
    manifest = catalog.latest("events")
    assert manifest is not None and manifest.version == 1 and manifest.row_count in (3, 5)
    assert_consistent(store, tables, catalog)
