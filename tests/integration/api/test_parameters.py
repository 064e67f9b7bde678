"""Query parameters are taken as each route declares them (api/parameters.py): one it does
not take, or a single one sent twice, is a 400 naming it, and nothing is landed."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from lakehouse.store import ObjectStore
from lakehouse.store.layout import LANDING

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("path", "params", "says"),
    [
        ("/v1/sql", "max_rows=10", "takes no query parameter 'max_rows' (it takes: format"),
        (
            "/v1/ingest",
            "name=people&delimeter=%3B",
            "parameter 'delimeter' (it takes: comment, dedup, delimiter",
        ),
        ("/v1/ingest", "name=people&name=other", "'name' sent more than once"),
    ],
    ids=["body-field-in-the-url", "misspelt-parameter", "repeated-parameter"],
)
def test_a_query_parameter_the_route_does_not_take_is_a_400_naming_it(
    client: TestClient, store: ObjectStore, path: str, params: str, says: str
) -> None:
    """Attack class: parameters silently not applied. Nothing is landed."""
    before = sorted(store.list_keys(LANDING))
    response = client.post(f"{path}?{params}", content=b"id\n1\n")
    assert response.status_code == 400, response.text
    assert says in response.json()["detail"]
    assert sorted(store.list_keys(LANDING)) == before


def test_a_list_parameter_may_repeat(client: TestClient) -> None:
    params = "name=nulls&null=NA&null=-"
    response = client.post(f"/v1/ingest?{params}", content=b"id,v\n1,NA\n2,-\n3,x\n")
    assert response.status_code == 202, response.text
