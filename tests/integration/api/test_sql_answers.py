"""/v1/sql answers: formats that keep types, time travel, the versions a query read."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime
from decimal import Decimal

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from api.query.engine import QueryEngine
from lakehouse.auth.grants import EVERYTHING
from lakehouse.settings import Settings
from lakehouse.store import ObjectStore, StoreUnavailable
from tests.helpers import materialize_csv

pytestmark = pytest.mark.integration

SHIFTS = (
    b"id,day,started_at,paid,ok,note\n1,2024-01-02,2024-01-02 08:30:00,12.50,true,first\n2,,,,,\n"
)
QUERY = "SELECT id, day, started_at, CAST(paid AS DECIMAL(10,2)) AS paid, ok, note FROM shifts"
EXPECTED = [
    (1, date(2024, 1, 2), datetime(2024, 1, 2, 8, 30), Decimal("12.50"), True, "first"),
    (2, None, None, None, None, None),
]


@pytest.fixture
def shifts(client: TestClient, settings: Settings) -> TestClient:
    materialize_csv(settings, "shifts", SHIFTS)
    return client


def post(client: TestClient, fmt: str | None = None, **body) -> bytes:
    response = client.post(
        "/v1/sql",
        params={"format": fmt} if fmt else {},
        json={"sql": QUERY + " ORDER BY id", **body},
    )
    assert response.status_code == 200, response.text
    return response.content


def test_json_keeps_types_as_exact_text(shifts: TestClient) -> None:
    answer = json.loads(post(shifts))
    assert [c["type"] for c in answer["columns"]] == [
        "BIGINT", "DATE", "TIMESTAMP", "DECIMAL(10,2)", "BOOLEAN", "VARCHAR",
    ]  # fmt: skip
    assert answer["rows"] == [
        {"id": 1, "day": "2024-01-02", "started_at": "2024-01-02T08:30:00", "paid": "12.50",
         "ok": True, "note": "first"},
        {"id": 2, "day": None, "started_at": None, "paid": None, "ok": None, "note": None},
    ]  # fmt: skip
    assert answer["datasets"] == {"shifts": 1}


def test_arrow_round_trip(shifts: TestClient) -> None:
    table = pa.ipc.open_stream(post(shifts, "arrow")).read_all()
    assert [tuple(r.values()) for r in table.to_pylist()] == EXPECTED
    assert str(table.schema.field("paid").type) == "decimal128(10, 2)"


def test_parquet_round_trip(shifts: TestClient) -> None:
    table = pq.read_table(io.BytesIO(post(shifts, "parquet")))
    assert [tuple(r.values()) for r in table.to_pylist()] == EXPECTED


def test_csv_round_trip(shifts: TestClient) -> None:
    rows = list(csv.reader(io.StringIO(post(shifts, "csv").decode())))
    assert rows == [
        ["id", "day", "started_at", "paid", "ok", "note"],
        ["1", "2024-01-02", "2024-01-02 08:30:00.000000", "12.50", "true", "first"],
        ["2", "", "", "", "", ""],
    ]


def test_ndjson_round_trip(shifts: TestClient) -> None:
    lines = [json.loads(line) for line in post(shifts, "ndjson").decode().splitlines()]
    assert lines[0] == {
        "id": 1, "day": "2024-01-02", "started_at": "2024-01-02T08:30:00", "paid": "12.50",
        "ok": True, "note": "first",
    }  # fmt: skip
    assert lines[1] == dict.fromkeys(lines[0]) | {"id": 2}


def test_format_by_accept_header_and_versions_in_a_header(shifts: TestClient) -> None:
    response = shifts.post(
        "/v1/sql", json={"sql": QUERY}, headers={"accept": "application/vnd.apache.arrow.stream"}
    )
    assert response.headers["content-type"] == "application/vnd.apache.arrow.stream"
    assert json.loads(response.headers["x-lakehouse-datasets"]) == {"shifts": 1}
    assert pa.ipc.open_stream(response.content).read_all().num_rows == 2


def test_streamed_formats_stop_at_the_row_limit(shifts: TestClient) -> None:
    rows = post(shifts, "ndjson", max_rows=1).decode().splitlines()
    assert len(rows) == 1


def test_an_unknown_format_is_406(shifts: TestClient) -> None:
    response = shifts.post("/v1/sql", params={"format": "xlsx"}, json={"sql": "SELECT 1"})
    assert response.status_code == 406
    assert "csv" in response.json()["detail"]


@pytest.mark.parametrize(
    ("accept", "status"),
    [
        ("application/xml", 406),
        ("text/tab-separated-values", 406),
        ("text/html, application/xhtml+xml;q=0.9, */*;q=0.8", 200),
        ("application/*", 200),
        ("text/csv", 200),
    ],
    ids=["xml", "tsv", "browser", "any-application", "csv"],
)
def test_an_accept_header_no_format_meets_is_406_not_json(
    shifts: TestClient, accept: str, status: int
) -> None:
    """Attack class: a format asked for and another silently given."""
    response = shifts.post("/v1/sql", json={"sql": "SELECT 1"}, headers={"accept": accept})
    assert response.status_code == status, response.text
    if status == 406:
        assert f"unknown Accept: {accept}" in response.json()["detail"]


def test_as_of_reads_an_earlier_version(client: TestClient, settings: Settings) -> None:
    materialize_csv(settings, "people", b"id\n1\n2\n")
    materialize_csv(settings, "people", b"id\n3\n")
    materialize_csv(settings, "teams", b"team\nA\n")
    count = "SELECT count(*) AS n FROM people"
    now = client.post("/v1/sql", json={"sql": count}).json()
    then = client.post("/v1/sql", json={"sql": count, "as_of": {"people": 1}}).json()
    assert (now["rows"], now["datasets"]) == ([{"n": 3}], {"people": 2})
    assert (then["rows"], then["datasets"]) == ([{"n": 2}], {"people": 1})
    join = "SELECT count(*) AS n FROM people, teams"
    both = client.post("/v1/sql", json={"sql": join, "as_of": {"people": 1}}).json()
    assert both["datasets"] == {"people": 1, "teams": 1}
    again = client.post("/v1/sql", json={"sql": count}).json()  # as_of stayed in its request
    assert again["rows"] == [{"n": 3}]


def test_as_of_an_unknown_version_is_400(client: TestClient, settings: Settings) -> None:
    materialize_csv(settings, "people", b"id\n1\n")
    response = client.post("/v1/sql", json={"sql": "SELECT * FROM people", "as_of": {"people": 7}})
    assert response.status_code == 400
    assert "no version 7" in response.json()["detail"]
    assert "GET /v1/catalog/people/versions" in response.json()["detail"]


def test_as_of_naming_a_dataset_the_query_does_not_read_is_400(
    client: TestClient, settings: Settings
) -> None:
    """A pin on another dataset than the one read (a name mistaken for the one meant) used
    to be ignored: the query read the current version, unsaid. Each format refuses it."""
    materialize_csv(settings, "people", b"id\n1\n2\n")
    materialize_csv(settings, "people", b"id\n3\n")
    materialize_csv(settings, "teams", b"team\nA\n")
    for fmt in ("json", "csv", "arrow"):
        response = client.post(
            f"/v1/sql?format={fmt}",
            json={"sql": "SELECT count(*) AS n FROM people", "as_of": {"teams": 1}},
        )
        assert response.status_code == 400, (fmt, response.text)
        assert "as_of pins 'teams', which the query does not read" in response.json()["detail"]
    # A pin on a dataset read through its rejects view alone is read.
    rejects = {"sql": "SELECT count(*) AS n FROM people__rejects", "as_of": {"people": 1}}
    answer = client.post("/v1/sql", json=rejects)
    assert (answer.status_code, answer.json()["rows"]) == (200, [{"n": 0}]), answer.text
    current = client.post("/v1/sql", json={"sql": "SELECT count(*) AS n FROM people"}).json()
    assert (current["rows"], current["datasets"]) == ([{"n": 3}], {"people": 2})


def test_as_of_a_version_with_nothing_to_read_is_400_not_the_current_one(
    client: TestClient, settings: Settings
) -> None:
    """Version 1 of a dataset whose first ingest failed has no columns: it used to answer
    with the current version's rows while saying version 1."""
    failing = b"n\n" + b"1\n" * 1200 + b"oops,1\n" * 20  # 1.6% of its rows rejected
    materialize_csv(settings, "counts", failing, raise_on_error=False)
    materialize_csv(settings, "counts", b"n\n7\n")
    pinned = {"sql": "SELECT * FROM counts", "as_of": {"counts": 1}}
    response = client.post("/v1/sql", json=pinned)
    assert response.status_code == 400, response.text
    assert "version 1 of 'counts' has nothing to read" in response.json()["detail"]
    current = client.post("/v1/sql", json={"sql": "SELECT * FROM counts"}).json()
    assert (current["rows"], current["datasets"]) == ([{"n": 7}], {"counts": 2})


def test_two_engines_on_one_catalog_give_the_same_answers(settings: Settings) -> None:
    materialize_csv(settings, "people", b"id,name\n1,Ann\n2,Bo\n")
    with dg.DagsterInstance.from_config(str(settings.resolved_dagster_home)) as instance:
        first, second = QueryEngine(settings, instance), QueryEngine(settings, instance)
        sql = "SELECT name FROM people ORDER BY id"

        def answers(engine: QueryEngine) -> tuple[list, dict]:
            result = engine.execute(sql, 10, {}, reader=EVERYTHING)
            return result.rows, result.datasets

        assert (
            answers(first) == answers(second) == ([{"name": "Ann"}, {"name": "Bo"}], {"people": 1})
        )
        materialize_csv(settings, "people", b"id,name\n3,Cy\n")
        assert answers(first) == answers(second)
        assert answers(first)[1] == {"people": 2} and len(answers(first)[0]) == 3


def test_the_query_key_reads_datasets_only(s3_server: Settings) -> None:
    admin = ObjectStore(s3_server.s3())
    admin.put_bytes("datasets/keytest/part.parquet", b"parquet bytes")
    admin.put_bytes("landing/keytest/x.csv", b"a\n1\n")
    reader = ObjectStore(s3_server.query_s3())
    body = reader.client.get_object(Bucket=reader.bucket, Key="datasets/keytest/part.parquet")
    assert body["Body"].read() == b"parquet bytes"
    with pytest.raises(StoreUnavailable, match="AccessDenied"):
        reader.get_json("landing/keytest/x.csv")
    with pytest.raises(StoreUnavailable, match="AccessDenied"):
        reader.put_bytes("datasets/keytest/evil.parquet", b"x")
