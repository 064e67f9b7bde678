import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from lakehouse.settings import Settings, get_settings
from tests.integration.api.conftest import admin_headers

pytestmark = pytest.mark.integration


def test_health_reports_store_and_dagster_ok(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True
    assert body["object_store"]["ok"] is True
    assert body["dagster"]["ok"] is True


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"s3_secret_key": "wrong-secret"}, "refused"),
        ({"s3_access_key": "nobody"}, "refused"),
        ({"s3_bucket": "no-such-bucket"}, "does not exist"),
        ({"s3_endpoint": "http://127.0.0.1:9"}, "unreachable"),
    ],
    ids=["wrong-secret", "unknown-key", "missing-bucket", "nothing-listening"],
)
def test_health_says_the_store_is_not_ok(settings: Settings, change: dict, reason: str) -> None:
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: settings.model_copy(update=change)
    with TestClient(app, headers=admin_headers(settings.model_copy(update=change))) as client:
        response = client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["ok"] is False
    assert body["object_store"]["ok"] is False
    assert reason in body["object_store"]["detail"]
    assert body["dagster"]["ok"] is True
