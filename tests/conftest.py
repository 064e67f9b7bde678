"""Fixtures: a real S3 server (SeaweedFS `weed mini`) for the session, a fresh bucket and
Dagster home per test, and the workers fixture file."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from lakehouse.settings import Settings
from lakehouse.stack import Stack, free_port, write_instance_yaml
from lakehouse.storage import ObjectStore
from lakehouse.workers import write_workers_csv


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings of a real S3 server started for this test session on a free port."""
    settings = Settings(
        state_dir=tmp_path_factory.mktemp("s3-server"),
        s3_endpoint=f"http://127.0.0.1:{free_port()}",
        s3_bucket="lakehouse",
        s3_access_key="test-access",
        s3_secret_key="test-secret-key",
    )
    stack = Stack(settings, with_webserver=False)
    stack.start_s3()
    yield settings
    stack.stop()


@pytest.fixture
def settings(s3_server: Settings, tmp_path: Path) -> Settings:
    """Settings for one test: its own bucket and Dagster home, so tests never see each other."""
    return isolated_settings(s3_server, tmp_path)


def isolated_settings(s3_server: Settings, tmp_path: Path) -> Settings:
    """Settings with a new bucket and a new Dagster home under `tmp_path`."""
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    ObjectStore(s3_server.s3()).client.create_bucket(Bucket=bucket)
    (tmp_path / "dagster").mkdir()
    write_instance_yaml(tmp_path / "dagster")
    # The server's read-only query key is granted on its own bucket only (see
    # test_query_key_reads_datasets_only): a per-test bucket is read with the main key.
    return s3_server.model_copy(
        update={
            "s3_bucket": bucket,
            "s3_query_access_key": "",
            # In-process API tests have no webserver of their own: never push runs to one
            # (a developer's `make up` listens on the default port). e2e tests push.
            "push_runs": False,
            "state_dir": tmp_path,
            "dagster_home": tmp_path / "dagster",
        }
    )


@pytest.fixture
def store(settings: Settings) -> ObjectStore:
    return ObjectStore(settings.s3())


@pytest.fixture(scope="session")
def workers_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """workers_500k.csv, generated once per session (about 70 MB)."""
    return write_workers_csv(tmp_path_factory.mktemp("data") / "workers_500k.csv")
