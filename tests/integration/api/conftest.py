from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.deps import close_engines
from api.main import create_app
from lakehouse.settings import Settings, get_settings


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: settings
    with TestClient(app) as client:
        yield client


@pytest.fixture(autouse=True)
def _stop_query_processes() -> Iterator[None]:
    """Each test's engine starts query processes of its own: stop them when it ends."""
    yield
    close_engines()
