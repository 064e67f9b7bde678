"""Fixtures: a real S3 server (SeaweedFS `weed mini`) and, for the tests that ask, a real
Postgres server, both started for the session by the tests themselves; a fresh bucket,
Dagster home and database per test; and the workers fixture file."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
import psycopg2
import pytest

from devstack.instance import write_instance_yaml
from devstack.ports import free_port
from devstack.sample_data import write_sample_csv
from devstack.stack import Stack
from lakehouse.settings import Settings
from lakehouse.store import ObjectStore

# Fixtures that start a process: a test that uses one must be marked `integration`, so
# `make test-fast` (`-m "not integration"`) never starts a server.
PROCESS_FIXTURES = frozenset({"s3_server", "postgres_server"})


# The slowest files first (whole stacks, then in-process runs), so that the two xdist
# workers finish together rather than one idling while the other runs the last long file.
# The Makefile turns off xdist's own order, which puts the files with the most tests first.
SLOWEST_FIRST = ("tests/e2e/", "tests/integration/lakehouse_assets/", "tests/integration/")


def _slowness_rank(item: pytest.Item) -> int:
    path = item.nodeid
    return next((i for i, prefix in enumerate(SLOWEST_FIRST) if path.startswith(prefix)), 99)


# A package whose files share one package-scoped stack: one unit of work for xdist, as a
# file is under `--dist loadfile` (the Makefile's), so that one worker starts that stack,
# not each worker for its share of the files.
SHARED_STACK_PACKAGES = ("tests/e2e/postgres/",)


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") != "loadfile":
        return None  # xdist's own
    from xdist.scheduler import LoadFileScheduling

    class LoadFileOrSharedStack(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return next((p for p in SHARED_STACK_PACKAGES if path.startswith(p)), path)

    return LoadFileOrSharedStack(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_slowness_rank)  # stable: a file's tests keep their order
    for item in items:
        started = PROCESS_FIXTURES.intersection(getattr(item, "fixturenames", ()))
        if started and item.get_closest_marker("integration") is None:
            raise pytest.UsageError(
                f"{item.nodeid} uses {sorted(started)}: mark it `pytest.mark.integration`"
            )


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
    stack = Stack(settings, with_webserver=False)  # generates the read-only key's secret
    stack.start_s3()
    yield stack.settings
    stack.stop()


@pytest.fixture(scope="session")
def dagster_home_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty Dagster home with its SQLite storage created: a test copies it in 0.1 s
    rather than creating its own in 1.5 s."""
    home = tmp_path_factory.mktemp("dagster-template")
    write_instance_yaml(home, Settings())
    with dg.DagsterInstance.from_config(str(home)):
        pass
    return home


@pytest.fixture
def settings(
    s3_server: Settings, tmp_path: Path, dagster_home_template: Path
) -> Iterator[Settings]:
    """Settings for one test: its own bucket and Dagster home, so tests never see each other.
    The bucket goes afterwards: SeaweedFS gives each bucket volumes of its own, and a
    server that keeps hundreds of buckets runs out of them."""
    settings = isolated_settings(s3_server, tmp_path, dagster_home_template)
    yield settings
    remove_bucket(ObjectStore(s3_server.s3()), settings.s3_bucket)


def remove_bucket(store: ObjectStore, bucket: str) -> None:
    client = store.client
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys: list[Any] = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys})
    uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    for upload in uploads:
        client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    client.delete_bucket(Bucket=bucket)


@pytest.fixture
def instance(settings: Settings) -> Iterator[dg.DagsterInstance]:
    """The Dagster instance in the test's own home."""
    with dg.DagsterInstance.from_config(str(settings.resolved_dagster_home)) as instance:
        yield instance


def isolated_settings(s3_server: Settings, tmp_path: Path, template: Path) -> Settings:
    """Settings with a new bucket and a new Dagster home under `tmp_path`."""
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    ObjectStore(s3_server.s3()).client.create_bucket(Bucket=bucket)
    shutil.copytree(template, tmp_path / "dagster")
    # The server's read-only query key is granted on its own bucket only (see
    # test_query_key_reads_datasets_only): a per-test bucket is read with the main key.
    return s3_server.model_copy(
        update={
            "s3_bucket": bucket,
            "s3_query_access_key": "",
            # In-process API tests have no webserver of their own: never push runs to one
            # (a developer's `make up` listens on the default port). e2e tests push.
            "push_runs": False,
            # Most tests never query: start query processes at the first query only.
            "sql_prewarm": False,
            # No broker here: per-token limits are counted in the process.
            "limits_url": "memory://",
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
    return write_sample_csv(tmp_path_factory.mktemp("data") / "workers_500k.csv")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of a Postgres server: `LAKEHOUSE_TEST_POSTGRES_URL` if set, else one started
    for this session from the `pgserver` wheel (Postgres binaries from PyPI, no system
    service), listening on a Unix socket only."""
    if url := os.environ.get("LAKEHOUSE_TEST_POSTGRES_URL"):
        yield url
        return
    import pgserver  # only the tests that need Postgres pay for starting it

    # A short directory: the socket's path must fit in 107 bytes.
    with tempfile.TemporaryDirectory(prefix="lakehouse-pg-") as data_dir:
        server = pgserver.get_server(data_dir, cleanup_mode="stop")
        try:
            yield server.get_uri()
        finally:
            server.cleanup()


@pytest.fixture(scope="module")
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh database on the session's Postgres server, dropped afterwards."""
    name = f"lakehouse_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(database_url(postgres_server, "postgres"))
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    yield database_url(postgres_server, name)
    admin.cursor().execute(f"DROP DATABASE {name} WITH (FORCE)")
    admin.close()


def database_url(server_url: str, database: str) -> str:
    """`server_url` pointed at `database` (its query, e.g. a socket `host=`, kept)."""
    return urlsplit(server_url)._replace(path=f"/{database}").geturl()
