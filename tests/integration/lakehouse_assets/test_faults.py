"""Exactly once, with faults: for each step between an upload and its committed version,
the store or the process fails right there, then the system recovers; every acknowledged
row must then be in the dataset exactly once, and nothing else.

The steps (docs/PROTOCOL.md): the API lands the bytes, commits the log entry, writes the
receipt and the pending hint; a run converts, writes the new object, marks the bytes
applied, claims the version's commit record, commits it to the Iceberg table, emits the
version, clears the hint. After recovery, the Iceberg table agrees with the catalog.
A process dying at a step is modelled by a failure nothing in that process catches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dagster as dg
import duckdb
import pytest
from fastapi.testclient import TestClient

from api.deps import get_store
from api.main import create_app
from lakehouse.duck import attach_s3
from lakehouse.publish.catalog import latest_manifest, manifest_history
from lakehouse.publish.iceberg import IcebergTables, data_files, version_of
from lakehouse.runs import DatasetConfig
from lakehouse.settings import Settings, get_settings
from lakehouse.store import ObjectStore, StoreUnavailable
from lakehouse.store.layout import LOG
from lakehouse.versions import commit as commit_module
from lakehouse.versions import commits, objects, reading
from tests.helpers import land_csv, run_dataset
from tests.integration.api.conftest import admin_headers

pytestmark = pytest.mark.integration


class Died(Exception):
    """The process stopped here (nothing after this point ran)."""


def dies(original: Callable[..., Any], *, after: bool) -> Callable[..., Any]:
    """`original`, except that the process dies just before (or just after) it runs."""

    def dying(*args: Any, **kwargs: Any) -> Any:
        if after:
            original(*args, **kwargs)
        raise dg.Failure("injected: the process died here", allow_retries=False) from Died()

    return dying


def dataset_rows(instance: dg.DagsterInstance, settings: Settings, name: str) -> list[int]:
    manifest = latest_manifest(instance, name)
    if manifest is None or not manifest.objects:
        return []
    con = duckdb.connect()
    attach_s3(con, settings.s3())
    urls = [f"s3://{settings.s3_bucket}/{o.key}" for o in manifest.objects]
    return sorted(n for (n,) in con.execute("SELECT n FROM read_parquet(?)", [urls]).fetchall())


def assert_versions_consecutive(instance: dg.DagsterInstance, name: str) -> None:
    history, _ = manifest_history(instance, name, limit=1000)
    assert [m.version for m in history] == list(range(len(history), 0, -1))


def assert_iceberg_agrees(instance: dg.DagsterInstance, settings: Settings, name: str) -> None:
    """The table's current snapshot is the catalog's version, with its rows and files, and
    every version is exactly one snapshot."""
    manifest = latest_manifest(instance, name)
    table = IcebergTables(settings.iceberg_catalog_url, settings.s3()).load(name)
    assert manifest is not None and manifest.iceberg is not None and table is not None
    current = table.current_snapshot()
    assert current is not None and current.snapshot_id == manifest.iceberg.snapshot_id
    assert version_of(current) == manifest.version
    files = data_files(table)
    assert set(files) == {f"s3://{settings.s3_bucket}/{o.key}" for o in manifest.objects}
    assert sum(f.record_count for f in files.values()) == manifest.row_count
    history, _ = manifest_history(instance, name, limit=1000)
    snapshot_versions = sorted(version_of(s) or 0 for s in table.snapshots())
    assert snapshot_versions == sorted(m.version for m in history)


def upload_two(store: ObjectStore) -> None:
    land_csv(store, "events", b"n\n1\n2\n")
    land_csv(store, "events", b"n\n3\n")


# -- the run ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "step", "after"),
    [
        (reading, "csv_to_parquet", False),  # while converting
        (objects.ObjectWriter, "write", True),  # the new object written, nothing committed
        (commit_module, "record_applied", True),  # bytes marked applied, nothing committed
        (commits, "claim", False),  # checked, just before the compare-and-set
        (commits, "claim", True),  # committed, not yet emitted (published by the next run)
        (IcebergTables, "commit", False),  # claimed, the Iceberg commit fails
        (IcebergTables, "commit", True),  # in Iceberg too, not yet emitted
        (commit_module, "settle_pending", False),  # emitted, the pending hint not cleared
    ],
    ids=[
        "converting",
        "object-written",
        "marked-applied",
        "before-claim",
        "claimed",
        "iceberg-fails",
        "iceberg-committed",
        "emitted",
    ],
)
def test_a_run_dying_at_each_step_then_recovering_applies_every_row_once(
    instance: dg.DagsterInstance,
    settings: Settings,
    store: ObjectStore,
    monkeypatch: pytest.MonkeyPatch,
    module: Any,
    step: str,
    after: bool,
) -> None:
    upload_two(store)
    with monkeypatch.context() as patch:
        patch.setattr(module, step, dies(getattr(module, step), after=after))
        assert not run_dataset(instance, settings, "events").success

    # Recovery: whatever launches next (a retry, then the sensor), as often as it likes.
    for _ in range(2):
        recovery = run_dataset(instance, settings, "events", DatasetConfig(only_if_pending=True))
        assert recovery.success
    assert dataset_rows(instance, settings, "events") == [1, 2, 3]
    assert_versions_consecutive(instance, "events")
    manifest = latest_manifest(instance, "events")
    assert manifest is not None and manifest.version == 1 and manifest.applied_through == 2
    assert_iceberg_agrees(instance, settings, "events")


def test_a_failed_iceberg_commit_fails_the_run_and_keeps_both_at_the_previous_version(
    instance: dg.DagsterInstance,
    settings: Settings,
    store: ObjectStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    land_csv(store, "events", b"n\n1\n")
    assert run_dataset(instance, settings, "events").success
    land_csv(store, "events", b"n\n2\n")

    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise OSError("When writing the metadata: the object store is unreachable (injected)")

    with monkeypatch.context() as patch:
        patch.setattr(IcebergTables, "_commit", unreachable)
        failed = run_dataset(instance, settings, "events", DatasetConfig(only_if_pending=True))
    assert not failed.success
    manifest = latest_manifest(instance, "events")
    assert manifest is not None and manifest.version == 1
    assert_iceberg_agrees(instance, settings, "events")
    assert commits.unpublished(store, "events", 1) is not None  # claimed: it will be published

    assert run_dataset(instance, settings, "events", DatasetConfig(only_if_pending=True)).success
    assert dataset_rows(instance, settings, "events") == [1, 2]
    assert_versions_consecutive(instance, "events")
    assert_iceberg_agrees(instance, settings, "events")


class FailingStore(ObjectStore):
    """The real store, except that writing keys under `prefix` fails (before or after the
    write reaches the server) `times` times, as if the server went away right then."""

    def __init__(self, settings: Settings, prefix: str, *, after: bool, times: int = 1):
        super().__init__(settings.s3())
        self.prefix, self.after, self.times = prefix, after, times

    def _maybe_fail(self, key: str, write: Callable[[], Any]) -> Any:
        if not key.startswith(self.prefix) or self.times == 0:
            return write()
        self.times -= 1
        if self.after:
            write()
        raise StoreUnavailable(f"object store unreachable (injected at {key})")

    def put_bytes(self, key: str, body: bytes, content_type: str = "") -> None:
        self._maybe_fail(key, lambda: super(FailingStore, self).put_bytes(key, body))

    def put_json_if_absent(self, key: str, value: Any) -> bool:
        return self._maybe_fail(
            key, lambda: super(FailingStore, self).put_json_if_absent(key, value)
        )


def test_the_store_failing_at_the_commit_record_is_retried_and_commits_once(
    instance: dg.DagsterInstance, settings: Settings, store: ObjectStore
) -> None:
    upload_two(store)
    resources = assets_resources(settings, FailingStore(settings, "commits/", after=True))
    assert run_dataset(instance, settings, "events", resources=resources).success
    assert dataset_rows(instance, settings, "events") == [1, 2, 3]
    assert_versions_consecutive(instance, "events")
    assert_iceberg_agrees(instance, settings, "events")


class LostClaimAnswer(ObjectStore):
    """The commit record is written, but the answer is lost and the retried conditional
    write finds the key taken: the run must see that the record is its own."""

    def put_json_if_absent(self, key: str, value: Any) -> bool:
        written = super().put_json_if_absent(key, value)
        return written and not key.startswith("commits/")


def test_a_commit_record_whose_answer_was_lost_is_still_this_runs_version(
    instance: dg.DagsterInstance, settings: Settings, store: ObjectStore
) -> None:
    upload_two(store)
    resources = assets_resources(settings, LostClaimAnswer(settings.s3()))
    assert run_dataset(instance, settings, "events", resources=resources).success
    assert dataset_rows(instance, settings, "events") == [1, 2, 3]
    manifest = latest_manifest(instance, "events")
    assert manifest is not None and all(store.exists(o.key) for o in manifest.objects)
    assert_versions_consecutive(instance, "events")


def assets_resources(settings: Settings, failing: ObjectStore) -> dict:
    from lakehouse_assets.resources import ObjectStoreResource, build_resources

    class Resource(ObjectStoreResource):
        def store(self) -> ObjectStore:
            return failing

    resources = build_resources(settings)
    resources["s3"] = Resource(**resources["s3"].model_dump())
    return resources


# -- the upload ---------------------------------------------------------------------------


def client_with(settings: Settings, store: ObjectStore) -> TestClient:
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: settings
    app.dependency_overrides[get_store] = lambda: store
    return TestClient(app, headers=admin_headers(settings))


@pytest.mark.parametrize(
    ("prefix", "after", "committed"),
    [
        ("landing/", False, False),  # landing the bytes
        ("log/", False, False),  # at the commit point, before it
        ("log/", True, True),  # at the commit point, after it (the answer was lost)
        ("receipts/", False, True),  # committed, before its receipt
        ("pending/", False, True),  # committed, before the pending hint
    ],
    ids=["landing", "before-commit", "commit-answer-lost", "receipt", "hint"],
)
def test_the_store_failing_at_each_upload_step_then_a_resend_lands_the_rows_once(
    instance: dg.DagsterInstance,
    settings: Settings,
    store: ObjectStore,
    prefix: str,
    after: bool,
    committed: bool,
) -> None:
    failing = FailingStore(settings, prefix, after=after)
    with client_with(settings, failing) as client:
        refused = client.post("/v1/ingest?name=events", content=b"n\n1\n2\n")
        assert refused.status_code == 503, refused.text
        detail = refused.json()["detail"]
        if prefix != "log/":  # at the log write itself, the API cannot know which it was
            says_committed = isinstance(detail, dict) and detail.get("committed") is True
            assert says_committed is committed, detail
        entries_after_failure = len(list(store.list_keys(LOG)))
        assert entries_after_failure == (1 if committed else 0)

        # The client does what the answer says: it sends the same bytes again.
        resent = client.post("/v1/ingest?name=events", content=b"n\n1\n2\n")
        assert resent.status_code in {200, 202}, resent.text
    assert run_dataset(instance, settings, "events").success
    assert dataset_rows(instance, settings, "events") == [1, 2]
    assert run_dataset(instance, settings, "events", DatasetConfig(only_if_pending=True)).success
    assert_versions_consecutive(instance, "events")
