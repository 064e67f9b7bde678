"""JSON Lines and Parquet uploads at the API boundary, against a real S3 server: told by the
content type, the file name or `format=`; the receipt says the format and each column's
type and why; nested values answer as JSON objects and arrays in `/v1/sql`; a file that is
not what it says, or holds a type no Iceberg type holds exactly, is a 400 naming it, and
leaves nothing landed."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
import pytest
from fastapi.testclient import TestClient

from lakehouse.settings import Settings
from lakehouse.store import ObjectStore
from lakehouse.store.layout import LANDING, LOG
from tests.helpers import run_dataset

pytestmark = pytest.mark.integration

JSONL = (
    b'{"id": 1, "tags": ["a", "b"], "addr": {"city": "Oslo", "zip": 150}, "m": 1.5, "v": 1}\n'
    b'{"id": 2, "tags": [], "addr": null, "m": 2.25, "v": "two"}\n'
)


def landed(store: ObjectStore) -> list[str]:
    return sorted([*store.list_keys(LANDING), *store.list_keys(LOG)])


def apply(settings: Settings, name: str) -> None:
    with dg.DagsterInstance.from_config(str(settings.resolved_dagster_home)) as instance:
        run_dataset(instance, settings, name, raise_on_error=True)


def sql(client: TestClient, query: str) -> list[dict]:
    response = client.post("/v1/sql", json={"sql": query})
    assert response.status_code == 200, response.text
    rows: list[dict] = response.json()["rows"]
    return rows


def test_json_lines_by_content_type_keep_their_nesting(
    client: TestClient, settings: Settings
) -> None:
    response = client.post(
        "/v1/ingest?name=events",
        content=JSONL,
        headers={"content-type": "application/x-ndjson"},
    )
    assert response.status_code == 202, response.text
    receipt = response.json()
    assert receipt["format"] == "jsonl"
    columns = {c["name"]: c for c in receipt["inferred_schema"]["columns"]}
    assert columns["addr"]["type"] == "STRUCT(city VARCHAR, zip BIGINT)"
    assert columns["tags"]["type"] == "VARCHAR[]"
    assert columns["m"]["reason"].startswith("double: JSON numbers")
    assert columns["v"]["type"] == "VARCHAR" and "several kinds" in columns["v"]["reason"]
    apply(settings, "events")
    assert sql(client, "SELECT * FROM events ORDER BY id") == [
        {"id": 1, "tags": ["a", "b"], "addr": {"city": "Oslo", "zip": 150}, "m": 1.5, "v": "1"},
        {"id": 2, "tags": [], "addr": None, "m": 2.25, "v": "two"},
    ]
    assert sql(client, "SELECT addr.city AS city, unnest(tags) AS tag FROM events") == [
        {"city": "Oslo", "tag": "a"},
        {"city": "Oslo", "tag": "b"},
    ]


def test_parquet_by_file_name_round_trips_with_its_types(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "rows.parquet"
    duckdb.execute(
        "COPY (SELECT i::SMALLINT AS id, (i / 4)::DECIMAL(9,2) AS price, [i, i + 1] AS pair,"
        f" {{'a': i::DOUBLE}} AS s FROM range(3) t(i)) TO '{path}' (FORMAT parquet)"
    )
    files = {"file": ("rows.parquet", path.read_bytes(), "application/octet-stream")}
    response = client.post("/v1/ingest?name=items", files=files)
    assert response.status_code == 202, response.text
    assert response.json()["format"] == "parquet"
    types = [c["type"] for c in response.json()["inferred_schema"]["columns"]]
    assert types == ["SMALLINT", "DECIMAL(9,2)", "BIGINT[]", "STRUCT(a DOUBLE)"]
    apply(settings, "items")
    assert sql(client, "SELECT * FROM items ORDER BY id") == [
        {"id": 0, "price": "0.00", "pair": [0, 1], "s": {"a": 0.0}},
        {"id": 1, "price": "0.25", "pair": [1, 2], "s": {"a": 1.0}},
        {"id": 2, "price": "0.50", "pair": [2, 3], "s": {"a": 2.0}},
    ]


@pytest.mark.parametrize(
    ("name", "params", "body", "says"),
    [
        ("not_parquet", "format=parquet", b"id,name\n1,a\n", "cannot be read as a Parquet"),
        ("not_json", "format=jsonl", b"{not json\n", "cannot be read as JSON Lines"),
        ("empty_json", "format=jsonl", b"", "the body is empty: send a JSON Lines"),
        ("bad_format", "format=xml", b"<a/>", "format"),
        ("csv_options", "format=jsonl&null=NA&delimiter=;", JSONL, "delimiter, null apply only"),
    ],
)
def test_a_file_that_is_not_what_it_says_is_a_400_and_lands_nothing(
    client: TestClient, store: ObjectStore, name: str, params: str, body: bytes, says: str
) -> None:
    """Attack class: a file sent as another format than it is."""
    before = landed(store)
    response = client.post(f"/v1/ingest?name={name}&{params}", content=body)
    assert response.status_code in (400, 422), response.text
    assert says in str(response.json()["detail"])
    assert landed(store) == before


def test_a_type_no_iceberg_type_holds_is_refused_naming_the_column(
    client: TestClient, store: ObjectStore, tmp_path: Path
) -> None:
    path = tmp_path / "wide.parquet"
    duckdb.execute(f"COPY (SELECT 1 AS id, 18446744073709551615::UBIGINT AS big) TO '{path}'")
    before = landed(store)
    response = client.post(
        "/v1/ingest?name=wide",
        content=path.read_bytes(),
        headers={"content-type": "application/vnd.apache.parquet"},
    )
    assert response.status_code == 400, response.text
    assert "column 'big' is UBIGINT" in response.json()["detail"]
    assert landed(store) == before


def test_a_json_lines_merge_by_key(client: TestClient, settings: Settings) -> None:
    first = client.post(
        "/v1/ingest?name=people&format=jsonl", content=b'{"id": 1, "n": "a"}\n{"id": 2, "n": "b"}\n'
    )
    assert first.status_code == 202, first.text
    apply(settings, "people")
    change = b'{"id": 2, "n": "B"}\n{"id": 1, "_deleted": true}\n{"id": 3, "n": "c"}\n'
    merged = client.post("/v1/ingest?name=people&format=jsonl&mode=merge&key=id", content=change)
    assert merged.status_code == 202, merged.text
    apply(settings, "people")
    receipt = client.get(f"/v1/ingest/{merged.json()['ingest_id']}").json()
    assert receipt["changes"] == {"inserted": 1, "updated": 1, "deleted": 1}
    assert sql(client, "SELECT * FROM people ORDER BY id") == [
        {"id": 2, "n": "B"},
        {"id": 3, "n": "c"},
    ]
