"""GET /metrics in one API process against a real S3 server: who may read it, and the
backlog it reads from the store (pending ingests, the oldest one's age)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from lakehouse.auth.grants import Role
from lakehouse.auth.tokens import TokenStore
from lakehouse.settings import Settings

pytestmark = pytest.mark.integration


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for m in text_string_to_metric_families(text)
        for s in m.samples
    }


def test_metrics_need_an_admin_token(client: TestClient, settings: Settings) -> None:
    _, reader = TokenStore.for_settings(settings).create("watcher", Role.READER)
    assert client.get("/metrics", headers={"authorization": ""}).status_code == 401
    refused = client.get("/metrics", headers={"authorization": f"Bearer {reader}"})
    assert refused.status_code == 403
    assert "admin" in refused.json()["detail"]


def test_pending_ingests_and_the_oldest_ones_age_are_counted(client: TestClient) -> None:
    for i in range(3):  # no run in this test: all three stay pending
        assert client.post("/v1/ingest?name=waiting", content=b"n\n%d\n" % i).status_code == 202
    assert client.post("/v1/sql", json={"sql": "x" * 2_000_000}).status_code == 413
    found = samples(client.get("/metrics").text)
    assert found["lakehouse_ingests_pending", (("dataset", "waiting"),)] == 3
    assert found["lakehouse_ingest_oldest_pending_age_seconds", (("dataset", "waiting"),)] >= 0
    answered = ("lakehouse_http_requests_total",
                (("method", "POST"), ("route", "/v1/ingest"), ("status", "202")))  # fmt: skip
    assert found[answered] >= 3
    too_large = ("lakehouse_http_requests_total",
                 (("method", "POST"), ("route", "unmatched"), ("status", "413")))  # fmt: skip
    assert found[too_large] >= 1  # refused before routing
    assert found["lakehouse_upload_bytes_total", ()] >= 3 * len(b"n\n0\n")
