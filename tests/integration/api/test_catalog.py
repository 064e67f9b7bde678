"""GET /v1/catalog: read from the Dagster instance."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from lakehouse.settings import Settings
from tests.helpers import materialize_csv

pytestmark = pytest.mark.integration


def test_list_get_and_versions(client: TestClient, settings: Settings) -> None:
    assert client.get("/v1/catalog").json() == {"datasets": []}
    first = materialize_csv(settings, "people", b"id,name\n1,Ann\n")
    listed = client.get("/v1/catalog").json()["datasets"]
    assert [(d["name"], d["version"]) for d in listed] == [("people", 1)]
    # Listed from the process's views of the catalog: what is published next is in the
    # next listing.
    second = materialize_csv(settings, "people", b"id,name\n2,Bo\n3,Cy\n")
    materialize_csv(settings, "items", b"sku\nA1\n")

    listing = client.get("/v1/catalog").json()["datasets"]
    assert [(d["name"], d["version"], d["row_count"]) for d in listing] == [
        ("items", 1, 1),
        ("people", 2, 3),
    ]

    manifest = client.get("/v1/catalog/people").json()
    for field in ("dataset_id", "name", "schema_fingerprint", "objects", "created_at"):
        assert manifest[field]
    assert manifest["updated_at"] >= manifest["created_at"]
    assert manifest["row_count"] == 3 and manifest["version"] == 2
    assert manifest["location"] == f"s3://{settings.s3_bucket}/datasets/people/"
    assert [(c["name"], c["type"]) for c in manifest["columns"]] == [
        ("id", "BIGINT"),
        ("name", "VARCHAR"),
    ]
    assert manifest["added_ingest_ids"] == [second.ingest_id]
    assert (manifest["base_seq"], manifest["applied_through"]) == (first.seq, second.seq)
    assert [o["rows"] for o in manifest["objects"]] == [1, 2]

    versions = client.get("/v1/catalog/people/versions").json()
    assert [(v["version"], v["row_count"]) for v in versions["versions"]] == [(2, 3), (1, 1)]
    assert {v["dataset_id"] for v in versions["versions"]} == {manifest["dataset_id"]}
    assert versions["next_cursor"] is None


def test_versions_come_a_page_at_a_time(client: TestClient, settings: Settings) -> None:
    for i in range(3):
        materialize_csv(settings, "events", f"n\n{i}\n".encode())
    first = client.get("/v1/catalog/events/versions?limit=2").json()
    assert [v["version"] for v in first["versions"]] == [3, 2]
    rest = client.get(f"/v1/catalog/events/versions?limit=2&cursor={first['next_cursor']}")
    assert [v["version"] for v in rest.json()["versions"]] == [1]
    assert rest.json()["next_cursor"] is None


def test_unknown_dataset_is_404(client: TestClient) -> None:
    response = client.get("/v1/catalog/nothing_here")
    assert response.status_code == 404
    assert "nothing_here" in response.json()["detail"]


def test_invalid_name_is_422_with_a_suggestion(client: TestClient) -> None:
    response = client.get("/v1/catalog/Bad-Name")
    assert response.status_code == 422
    assert response.json()["detail"]["suggested_name"] == "bad_name"


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "e30=",
        "eyJ4IjoxfQ==",
        "%%%",
        "MTIz",
        "W10=",
        "bnVsbA==",
        "\u00e9" * 50,
        "eyJ0eXBlIjoiT0ZGU0VUIiwidmFsdWUiOjB9",
        "eyJ0eXBlIjoiU1RPUkFHRV9JRCIsInZhbHVlIjoxZTk5OX0=",
        str(10**23),
        "0",
        "-1",
        "\u0663",
    ],
    ids=[
        "not-base64",
        "empty-object",
        "no-type",
        "not-json",
        "a-number",
        "a-list",
        "null",
        "non-ascii",
        "dagster-offset-cursor",
        "dagster-cursor-past-float-range",
        "storage-id-past-64-bits",
        "storage-id-zero",
        "negative",
        "arabic-indic-digit",
    ],
)
def test_a_malformed_versions_cursor_is_a_400_not_a_500(
    client: TestClient, settings: Settings, cursor: str
) -> None:
    """Attack class: forged pagination cursors. Each is refused, saying what to send."""
    materialize_csv(settings, "paged", b"n\n1\n")
    response = client.get("/v1/catalog/paged/versions", params={"cursor": cursor})
    assert response.status_code == 400, response.text
    assert "next_cursor" in response.json()["detail"]
