"""POST /v1/sql over datasets materialized into the instance the API reads."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from lakehouse.settings import Settings
from tests.helpers import materialize_csv

pytestmark = pytest.mark.integration

PEOPLE = "id,name,joined,rate\n1,Ann,2024-01-02,2.5\n2,Zoë,,\n3,Bo,2023-05-06,1.25\n".encode()


def sql(client: TestClient, query: str, **extra) -> dict:
    response = client.post("/v1/sql", json={"sql": query, **extra})
    assert response.status_code == 200, response.text
    return response.json()


def test_count_star_answers_in_the_gates_shape(client: TestClient, settings: Settings) -> None:
    materialize_csv(settings, "people", PEOPLE)
    answer = sql(client, "SELECT count(*) FROM people")
    assert answer["rows"] == [{"count_star()": 3}]
    assert answer["columns"] == [{"name": "count_star()", "type": "BIGINT"}]
    assert answer["row_count"] == 1
    assert answer["truncated"] is False


def test_types_and_nulls_come_back_as_json(client: TestClient, settings: Settings) -> None:
    materialize_csv(settings, "people", PEOPLE)
    answer = sql(client, "SELECT * FROM people ORDER BY id")
    assert [c["type"] for c in answer["columns"]] == ["BIGINT", "VARCHAR", "DATE", "DECIMAL(18,2)"]
    assert answer["rows"][0] == {"id": 1, "name": "Ann", "joined": "2024-01-02", "rate": "2.50"}
    assert answer["rows"][1] == {"id": 2, "name": "Zoë", "joined": None, "rate": None}


def test_a_new_materialization_is_visible_on_the_next_request(
    client: TestClient, settings: Settings
) -> None:
    materialize_csv(settings, "people", PEOPLE)
    assert sql(client, "SELECT count(*) AS n FROM people")["rows"] == [{"n": 3}]
    materialize_csv(settings, "people", b"id,name,joined,rate\n4,Di,2020-01-01,3.25\n")
    assert sql(client, "SELECT count(*) AS n FROM people")["rows"] == [{"n": 4}]


def test_rows_past_the_limit_are_cut_and_flagged(client: TestClient, settings: Settings) -> None:
    materialize_csv(settings, "people", PEOPLE)
    answer = sql(client, "SELECT * FROM people", max_rows=2)
    assert answer["row_count"] == 2 and answer["truncated"] is True


def test_a_header_only_dataset_is_an_empty_view_with_its_columns(
    client: TestClient, settings: Settings
) -> None:
    materialize_csv(settings, "empty", b"a,b\n")
    answer = sql(client, "SELECT * FROM empty")
    assert answer["rows"] == [] and [c["name"] for c in answer["columns"]] == ["a", "b"]


def test_an_unknown_dataset_is_400_naming_it(client: TestClient, settings: Settings) -> None:
    materialize_csv(settings, "people", PEOPLE)
    response = client.post("/v1/sql", json={"sql": "SELECT * FROM no_such_dataset"})
    assert response.status_code == 400
    assert "no_such_dataset" in response.json()["detail"]


@pytest.mark.parametrize(
    ("query", "needle"),
    [("SELEC 1", "syntax error"), ("SELECT nope FROM people", "nope")],
    ids=["syntax", "unknown-column"],
)
def test_user_errors_are_400_with_duckdbs_message(
    client: TestClient, settings: Settings, query: str, needle: str
) -> None:
    materialize_csv(settings, "people", PEOPLE)
    response = client.post("/v1/sql", json={"sql": query})
    assert response.status_code == 400
    assert needle in response.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b'{"query": "SELECT 1"}',
        b'{"sql": ""}',
        b'{"sql": "SELECT 1", "max_rows": 0}',
        b'{"sql": "SELECT 1", "asof": {"people": 1}}',
        b'{"sql": "SELECT 1", "as_of": {"people": true}}',
        b'{"sql": "SELECT 1", "max_rows": true}',
    ],
    ids=[
        "malformed-json",
        "missing-sql",
        "empty-sql",
        "zero-max-rows",
        "misspelt-field",
        "boolean-version",
        "boolean-max-rows",
    ],
)
def test_a_malformed_request_body_is_422(client: TestClient, body: bytes) -> None:
    """Attack class: fields that would be silently dropped or coerced (`asof` read nothing,
    `true` was version 1)."""
    response = client.post("/v1/sql", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"]
