"""/v1/tokens refuses what it cannot keep: grants that would silently widen, expiries past any
date, and a revoke whose `ending` names no single token."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "body",
    [
        {"role": "reader", "datasets": []},
        {"role": "reader", "datasets": [""]},
        {"role": "reader", "datasets": [" ", ","]},
        {"role": "reader", "dataset": ["sales_*"]},
        {"role": "admin", "datasets": ["sales_*"]},
    ],
    ids=["no-pattern", "empty-pattern", "blank-patterns", "misspelt-field", "narrowed-admin"],
)
def test_grants_that_would_widen_silently_are_refused(
    client: TestClient, body: dict[str, Any]
) -> None:
    """Attack class: widened grants. A token meant for some datasets never quietly becomes
    one for every dataset (nor an admin's look narrower than it is)."""
    response = client.post("/v1/tokens", json={"name": "team", **body})
    assert response.status_code in (400, 422), response.text
    assert "dataset" in response.text
    assert "team" not in {t["name"] for t in client.get("/v1/tokens").json()["tokens"]}


def test_patterns_and_an_admin_without_them_are_kept(client: TestClient) -> None:
    reader = client.post(
        "/v1/tokens", json={"name": "team", "role": "reader", "datasets": ["sales_*"]}
    )
    admin = client.post("/v1/tokens", json={"name": "ops", "role": "admin"})
    assert reader.json()["datasets"] == ["sales_*"]
    assert admin.json()["datasets"] == ["*"]


@pytest.mark.parametrize("days", [3_000_000, 1e308, 36_501], ids=["3m-days", "1e308", "just-past"])
def test_an_expiry_past_any_date_is_a_422_and_stores_nothing(
    client: TestClient, days: float
) -> None:
    """Attack class: out-of-range dates. Stored, such a token made every later listing a
    500; it is refused before anything is written."""
    body = {"name": "far", "role": "reader", "expires_in_days": days}
    response = client.post("/v1/tokens", json=body)
    assert response.status_code == 422, response.text
    listing = client.get("/v1/tokens")
    assert listing.status_code == 200
    assert "far" not in {t["name"] for t in listing.json()["tokens"]}


def test_an_empty_ending_revokes_nothing(client: TestClient) -> None:
    """Attack class: destructive defaults. `?ending=` used to mean every token of the name."""
    first = client.post("/v1/tokens", json={"name": "ci", "role": "reader"}).json()
    client.post("/v1/tokens", json={"name": "ci", "role": "reader"})
    assert client.delete("/v1/tokens/ci", params={"ending": ""}).status_code == 422
    assert client.delete("/v1/tokens/ci", params={"ending": "abcde"}).status_code == 422
    assert len([t for t in client.get("/v1/tokens").json()["tokens"] if t["name"] == "ci"]) == 2
    revoked = client.delete("/v1/tokens/ci", params={"ending": first["ending"]})
    assert revoked.json() == {"revoked": 1}
