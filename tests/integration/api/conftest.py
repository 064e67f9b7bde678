from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.deps import close_engines
from api.main import create_app
from lakehouse.auth.grants import Role
from lakehouse.auth.tokens import TokenStore
from lakehouse.settings import Settings, get_settings


def admin_headers(settings: Settings) -> dict[str, str]:
    """The header of a new admin token in the store `settings` name."""
    _, secret = TokenStore.for_settings(settings).create(
        f"admin-{uuid.uuid4().hex[:8]}", Role.ADMIN
    )
    return {"authorization": f"Bearer {secret}"}


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: settings
    with TestClient(app, headers=admin_headers(settings)) as client:
        yield client


@pytest.fixture(autouse=True)
def _stop_query_processes() -> Iterator[None]:
    """Each test's engine starts query processes of its own: stop them when it ends."""
    yield
    close_engines()
