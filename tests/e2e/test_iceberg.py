"""Another engine reads the datasets: a separate process with pyiceberg alone (no project
code), configured only as docs/ICEBERG.md says, gets exactly the rows `/v1/sql` returns, for the
current version and for an earlier snapshot after a replace; through the catalog, and
through the metadata file alone (an engine without catalog access)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from devstack.stack import Stack
from lakehouse.duck import attach_s3
from lakehouse.publish.iceberg import IcebergTables
from lakehouse.store import ObjectStore
from tests.e2e.conftest import ONE_OF_EACH, http, start_stack

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

# What a user writes from docs/ICEBERG.md: nothing here imports the project.
READER = textwrap.dedent(
    """
    import json, sys
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.table import StaticTable

    args = json.loads(sys.argv[1])
    s3 = {
        "s3.endpoint": args["endpoint"],
        "s3.access-key-id": args["access_key"],
        "s3.secret-access-key": args["secret_key"],
        "s3.region": "us-east-1",
    }

    def rows(table, snapshot_id=None):
        found = table.scan(snapshot_id=snapshot_id).to_arrow().to_pylist()
        return sorted((json.loads(json.dumps(r, default=str)) for r in found),
                      key=lambda r: json.dumps(r, sort_keys=True))

    catalog = SqlCatalog("lakehouse", uri=args["catalog_uri"], **s3)
    table = catalog.load_table("lakehouse." + args["name"])
    static = StaticTable.from_metadata(args["metadata_location"], s3)
    print(json.dumps({
        "current": rows(table),
        "earlier": rows(table, args["earlier_snapshot_id"]),
        "static_current": rows(static),
        "static_earlier": rows(static, args["earlier_snapshot_id"]),
        "snapshot_id": table.current_snapshot().snapshot_id,
    }))
    """
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = start_stack(tmp_path_factory.mktemp("iceberg"), **ONE_OF_EACH)
    yield stack
    stack.stop()


def ingest(api: str, name: str, body: bytes, mode: str = "append") -> dict:
    response = http.post(
        f"{api}/v1/ingest",
        params={"name": name, "mode": mode, "wait": "true"},
        content=body,
        timeout=300,
    )
    assert response.status_code == 200, response.text
    return response.json()


def sql(api: str, query: str, as_of: dict | None = None) -> list[dict]:
    body: dict = {"sql": query, **({"as_of": as_of} if as_of else {})}
    response = http.post(f"{api}/v1/sql", json=body, timeout=60)
    assert response.status_code == 200, response.text
    return sorted(response.json()["rows"], key=lambda r: json.dumps(r, sort_keys=True))


def test_pyiceberg_alone_reads_what_the_sql_api_answers(stack: Stack, tmp_path: Path) -> None:
    api = stack.api_url
    ingest(api, "shifts", b"id,worker,hours,day\n1,ann,8.50,2024-01-02\n2,bo,4,2024-01-03\n")
    ingest(api, "shifts", b"id,worker,hours,day\n3,cy,6.25,2024-01-04\n")
    ingest(api, "shifts", b"id,worker,hours,day\n9,zed,1.50,2025-06-30\n", mode="replace")

    manifest = http.get(f"{api}/v1/catalog/shifts", timeout=10).json()
    assert manifest["version"] == 3
    iceberg = manifest["iceberg"]
    bucket = stack.settings.s3_bucket
    assert iceberg["table"] == "lakehouse.shifts"
    assert iceberg["metadata_location"].startswith(f"s3://{bucket}/iceberg/shifts/metadata/")
    assert iceberg["metadata_location"].endswith(".metadata.json")
    versions = http.get(f"{api}/v1/catalog/shifts/versions", timeout=10).json()["versions"]
    snapshot_ids = {v["version"]: v["iceberg"]["snapshot_id"] for v in versions}
    assert sorted(snapshot_ids) == [1, 2, 3] and len(set(snapshot_ids.values())) == 3
    assert snapshot_ids[3] == iceberg["snapshot_id"]

    settings = stack.settings
    args = {
        "name": "shifts",
        "endpoint": settings.s3_endpoint,
        "access_key": settings.s3_access_key,
        "secret_key": settings.s3_secret_key,
        "catalog_uri": f"sqlite:///{settings.state_dir.absolute()}/iceberg/catalog.db",
        "metadata_location": iceberg["metadata_location"],
        "earlier_snapshot_id": snapshot_ids[2],
    }
    script = tmp_path / "reader.py"
    script.write_text(READER)
    read = subprocess.run(
        [sys.executable, str(script), json.dumps(args)],
        cwd=tmp_path,  # not the project: nothing of it is importable by path
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert read.returncode == 0, read.stderr
    seen = json.loads(read.stdout)

    current = sql(api, "SELECT * FROM shifts")
    earlier = sql(api, "SELECT * FROM shifts", as_of={"shifts": 2})
    # hours: DECIMAL(18,2) throughout (exact strings in JSON)
    assert current == [{"id": 9, "worker": "zed", "hours": "1.50", "day": "2025-06-30"}]
    assert len(earlier) == 3
    assert seen["snapshot_id"] == iceberg["snapshot_id"]
    assert seen["current"] == seen["static_current"] == current
    assert seen["earlier"] == seen["static_earlier"] == earlier


def test_a_merge_a_delete_and_a_purge_through_the_stack(stack: Stack, tmp_path: Path) -> None:
    """Real stack: a merge of updates, inserts and `_deleted` rows gives the table DuckDB's
    own MERGE INTO gives on the same files; pyiceberg alone reads the merged version; a
    delete of one key then a purge leave it in no object, upload or snapshot."""
    api = stack.api_url
    base = "id,email,score\n" + "".join(f"{i},c{i}@example.com,{i * 10}\n" for i in range(1, 201))
    change = "id,email,score,_deleted\n" + "".join(
        f"{i},new{i}@example.com,{i},{'true' if i % 7 == 0 else ''}\n" for i in range(150, 260)
    )
    (tmp_path / "base.csv").write_text(base)
    (tmp_path / "change.csv").write_text(change)
    ingest(api, "customers", base.encode())
    merged = http.post(
        f"{api}/v1/ingest",
        params={"name": "customers", "mode": "merge", "key": "id", "wait": "true"},
        content=change.encode(),
        timeout=300,
    ).json()
    assert merged["status"] == "materialized", merged
    with duckdb.connect() as duck:
        duck.execute(f"CREATE TABLE t AS FROM read_csv('{tmp_path / 'base.csv'}')")
        duck.execute(f"CREATE TABLE s AS FROM read_csv('{tmp_path / 'change.csv'}')")
        duck.execute(
            "MERGE INTO t USING s ON t.id = s.id "
            "WHEN MATCHED AND coalesce(s._deleted, false) THEN DELETE "
            "WHEN MATCHED THEN UPDATE SET email = s.email, score = s.score "
            "WHEN NOT MATCHED AND NOT coalesce(s._deleted, false) "
            "THEN INSERT (id, email, score) VALUES (s.id, s.email, s.score)"
        )
        expected = [
            {"id": i, "email": e, "score": n} for i, e, n in duck.execute("FROM t").fetchall()
        ]
    assert sql(api, "SELECT * FROM customers") == sorted(
        expected, key=lambda r: json.dumps(r, sort_keys=True)
    )
    assert merged["changes"] == {"inserted": 50, "updated": 44, "deleted": 7}

    erase = http.post(
        f"{api}/v1/ingest",
        params={"name": "customers", "mode": "delete", "wait": "true"},
        content=b"id\n3\n",
        timeout=300,
    ).json()
    assert erase["changes"] == {"inserted": 0, "updated": 0, "deleted": 1}
    assert sql(api, "SELECT * FROM customers WHERE id = 3") == []
    assert sql(api, "SELECT id FROM customers WHERE id = 3", as_of={"customers": 2}) != []

    purged = http.post(f"{api}/v1/datasets/customers/purge", timeout=120)
    assert purged.status_code == 200, purged.text
    assert purged.json()["snapshots_expired"] == 2
    settings = stack.settings
    with duckdb.connect() as con:
        attach_s3(con, settings.s3())
        store = ObjectStore(settings.s3())
        holding = [
            key
            for key in store.list_keys("datasets/customers/")
            if con.execute(
                "SELECT count(*) FROM read_parquet(?) WHERE email = 'c3@example.com'",
                [store.url(key)],
            ).fetchone()[0]  # type: ignore[index]
        ]
    assert holding == []
    assert not any(
        b"c3@example.com" in b"".join(store.stream(k))
        for k in store.list_keys("landing/customers/")
    )
    table = IcebergTables(settings.iceberg_catalog_url, settings.s3()).load("customers")
    assert table is not None and len(table.snapshots()) == 1
    assert 3 not in table.scan().to_arrow()["id"].to_pylist()


def read_with_pyiceberg_alone(stack: Stack, tmp_path: Path, name: str, earlier: int) -> dict:
    """The READER script, in a process that cannot import the project."""
    api, settings = stack.api_url, stack.settings
    manifest = http.get(f"{api}/v1/catalog/{name}", timeout=10).json()
    versions = http.get(f"{api}/v1/catalog/{name}/versions", timeout=10).json()["versions"]
    args = {
        "name": name,
        "endpoint": settings.s3_endpoint,
        "access_key": settings.s3_access_key,
        "secret_key": settings.s3_secret_key,
        "catalog_uri": f"sqlite:///{settings.state_dir.absolute()}/iceberg/catalog.db",
        "metadata_location": manifest["iceberg"]["metadata_location"],
        "earlier_snapshot_id": next(
            v["iceberg"]["snapshot_id"] for v in versions if v["version"] == earlier
        ),
    }
    script = tmp_path / "reader.py"
    script.write_text(READER)
    read = subprocess.run(
        [sys.executable, str(script), json.dumps(args)],
        cwd=tmp_path,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert read.returncode == 0, read.stderr
    seen: dict = json.loads(read.stdout)
    return seen


def test_evolved_columns_read_right_in_every_snapshot_and_version(
    stack: Stack, tmp_path: Path
) -> None:
    """widen (DECIMAL(18,2) -> DECIMAL(38,2), its field id kept) then add_columns: pyiceberg
    alone reads the old and the new snapshots with their values, and `/v1/sql` `as_of` the
    first version reads it with its own columns."""
    api = stack.api_url
    ingest(api, "ledger", b"id,amount\n1,1.50\n2,2.25\n")
    big = "12345678901234567890.25"
    response = http.post(
        f"{api}/v1/ingest",
        params={"name": "ledger", "evolve": "widen", "wait": "true"},
        content=f"id,amount\n3,{big}\n".encode(),
        timeout=300,
    )
    assert response.status_code == 200, response.text
    response = http.post(
        f"{api}/v1/ingest",
        params={"name": "ledger", "evolve": "add_columns", "wait": "true"},
        content=b"id,amount,memo\n4,0.01,tip\n",
        timeout=300,
    )
    assert response.status_code == 200, response.text

    current = sql(api, "SELECT * FROM ledger")
    assert current == sorted(
        [
            {"id": 1, "amount": "1.50", "memo": None},
            {"id": 2, "amount": "2.25", "memo": None},
            {"id": 3, "amount": big, "memo": None},
            {"id": 4, "amount": "0.01", "memo": "tip"},
        ],
        key=lambda r: json.dumps(r, sort_keys=True),
    )
    first = sql(api, "SELECT * FROM ledger", as_of={"ledger": 1})
    assert first == [{"id": 1, "amount": "1.50"}, {"id": 2, "amount": "2.25"}]
    seen = read_with_pyiceberg_alone(stack, tmp_path, "ledger", earlier=1)
    assert seen["current"] == seen["static_current"] == current
    assert (
        seen["earlier"]
        == seen["static_earlier"]
        == [
            {"id": 1, "amount": "1.50"},
            {"id": 2, "amount": "2.25"},
        ]
    )


def test_json_lines_and_parquet_round_trip_with_their_types(stack: Stack, tmp_path: Path) -> None:
    """Real stack: a Parquet file (nested columns too) comes back from `/v1/sql` as Parquet
    with the same types and values; a JSON Lines file answers what DuckDB reads of it; and
    pyiceberg alone reads both as `/v1/sql` answers them."""
    api = stack.api_url
    source = tmp_path / "items.parquet"
    duckdb.execute(
        "COPY (SELECT i::INTEGER AS id, (i * 1.25)::DECIMAL(12,2) AS price,"
        " DATE '2024-02-29' + i::INTEGER AS day,"
        " {'name': 'n' || i, 'sizes': [i, i * 2]} AS item, ['x', NULL] AS tags"
        f" FROM range(100) t(i)) TO '{source}' (FORMAT parquet)"
    )
    response = http.post(
        f"{api}/v1/ingest",
        params={"name": "items", "wait": "true"},
        content=source.read_bytes(),
        headers={"content-type": "application/vnd.apache.parquet"},
        timeout=300,
    )
    assert response.status_code == 200, response.text
    answer = http.post(f"{api}/v1/sql?format=parquet", json={"sql": "SELECT * FROM items"})
    assert answer.status_code == 200, answer.text
    back = tmp_path / "back.parquet"
    back.write_bytes(answer.content)
    describe = "DESCRIBE SELECT * FROM '{}'"
    assert (
        duckdb.execute(describe.format(back)).fetchall()
        == duckdb.execute(describe.format(source)).fetchall()
    )
    assert (
        duckdb.execute(f"FROM '{back}' ORDER BY id").fetchall()
        == duckdb.execute(f"FROM '{source}' ORDER BY id").fetchall()
    )

    lines = tmp_path / "events.jsonl"
    lines.write_text(
        '{"id": 1, "addr": {"city": "Oslo"}, "tags": ["a"], "m": 0.5}\n'
        '{"id": 2, "addr": null, "tags": [], "m": 3}\n'
    )
    response = http.post(
        f"{api}/v1/ingest",
        params={"name": "events", "wait": "true"},
        files={"file": ("events.jsonl", lines.read_bytes())},
        timeout=300,
    )
    assert response.status_code == 200, response.text
    assert response.json()["format"] == "jsonl"
    expected = [
        {"id": 1, "addr": {"city": "Oslo"}, "tags": ["a"], "m": 0.5},
        {"id": 2, "addr": None, "tags": [], "m": 3.0},
    ]
    assert sql(api, "SELECT * FROM events") == sorted(
        expected, key=lambda r: json.dumps(r, sort_keys=True)
    )
    seen = read_with_pyiceberg_alone(stack, tmp_path, "events", earlier=1)
    assert seen["current"] == sql(api, "SELECT * FROM events")
