"""What the metrics are labelled by, and the times they read from ingest ids."""

from __future__ import annotations

from datetime import UTC, datetime

from api.metrics import route_of
from lakehouse.ingest.records import new_ingest_id, received_at_of


def test_an_ingest_id_says_when_it_was_received() -> None:
    now = datetime(2026, 12, 5, 18, 40, 1, 123456, tzinfo=UTC)
    assert received_at_of(new_ingest_id(now)) == now


def test_requests_are_labelled_by_route_template_never_by_path() -> None:
    class Route:
        path = "/catalog/{name}"  # as FastAPI's nested routers have it

    scope = {"route": Route(), "path": "/v1/catalog/sales", "path_params": {"name": "sales"}}
    assert route_of(scope) == "/v1/catalog/{name}"  # the prefix its routers add, too
    assert route_of({"path": "/no/such/thing"}) == "unmatched"  # any path: one label
