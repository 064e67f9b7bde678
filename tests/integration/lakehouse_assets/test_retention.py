"""Retention, against a real S3 server and Dagster instance: a pass prunes what settled
ingests and old versions leave behind, and a pass that dies at any step, then runs again,
loses nothing: every acknowledged ingest is in the dataset once, the pending one is still
applied once, and only what retention allows is gone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import pytest
from fastapi.testclient import TestClient

from api.deps import get_store
from api.main import create_app
from lakehouse.ingest import prune
from lakehouse.ingest.log import commit
from lakehouse.ingest.records import IngestRecord
from lakehouse.publish import pruning
from lakehouse.publish.catalog import latest_manifest, manifest_history
from lakehouse.publish.pruning import prune_history
from lakehouse.runs import DatasetConfig
from lakehouse.settings import Settings, get_settings
from lakehouse.store import ObjectStore
from lakehouse.store.layout import (
    APPLIED,
    QUEUED,
    commits_prefix,
    log_key,
    log_prefix,
    receipt_key,
    version_of_commit_key,
)
from lakehouse.versions import commits
from tests.helpers import land_csv, run_dataset
from tests.integration.api.conftest import admin_headers
from tests.integration.lakehouse_assets.test_faults import dataset_rows, dies

pytestmark = pytest.mark.integration

RETENTION = timedelta(days=7)


def a_pass_later(instance: dg.DagsterInstance, store: ObjectStore) -> pruning.Pruned:
    """A retention pass eight days from now: everything so far is past the retention."""
    return prune_history(instance, store, datetime.now(UTC) + timedelta(days=8), RETENTION)


def apply(instance: dg.DagsterInstance, settings: Settings) -> None:
    assert run_dataset(instance, settings, "events", DatasetConfig(only_if_pending=True)).success


def make_history(
    instance: dg.DagsterInstance, settings: Settings, store: ObjectStore
) -> dict[str, IngestRecord]:
    """Three versions of `events` deciding five ingests (one failed, one a duplicate), and
    a sixth ingest still pending."""
    ingests = {"one": land_csv(store, "events", b"n\n1\n")}
    apply(instance, settings)
    ingests["two"] = land_csv(store, "events", b"n\n2\n")
    ingests["failed"] = land_csv(store, "events", b"other,schema\n1,2\n")
    ingests["duplicate"] = land_csv(store, "events", b"n\n1\n")
    apply(instance, settings)
    ingests["three"] = land_csv(store, "events", b"n\n3\n")
    apply(instance, settings)
    ingests["pending"] = land_csv(store, "events", b"n\n4\n")
    manifest = latest_manifest(instance, "events")
    assert manifest is not None and manifest.version == 3 and manifest.excluded_seqs == [3, 4]
    return ingests


def assert_pruned_to_what_is_retained(
    instance: dg.DagsterInstance, store: ObjectStore, ingests: dict[str, IngestRecord]
) -> None:
    pending = ingests["pending"]
    assert list(store.list_keys(log_prefix("events"))) == [log_key("events", pending.seq)]
    for name, record in ingests.items():
        kept = name == "pending"
        assert store.exists(receipt_key(record.ingest_id)) is kept, name
        assert store.exists(record.landing_key) is kept, name
    assert list(store.list_keys(f"{APPLIED}events/")) == []
    assert list(store.list_keys(f"{QUEUED}events/")) == []
    assert [version_of_commit_key(k) for k in store.list_keys(commits_prefix("events"))] == [3]
    history, _ = manifest_history(instance, "events")
    assert [m.version for m in history] == [3]  # the runs of versions 1 and 2 are gone
    finished = instance.get_run_records(dg.RunsFilter(statuses=pruning.FINISHED))
    assert len(finished) == 1


def assert_nothing_lost(
    instance: dg.DagsterInstance, settings: Settings, store: ObjectStore, pending: IngestRecord
) -> None:
    """The rows are as they were; the pending ingest and a new one are each applied once,
    and the new version forgets the pruned seqs."""
    assert dataset_rows(instance, settings, "events") == [1, 2, 3]
    apply(instance, settings)
    new = land_csv(store, "events", b"n\n5\n")
    assert new.seq == pending.seq + 1
    apply(instance, settings)
    assert dataset_rows(instance, settings, "events") == [1, 2, 3, 4, 5]
    manifest = latest_manifest(instance, "events")
    assert manifest is not None and manifest.version == 5
    assert manifest.pruned_through == 5 and manifest.excluded_seqs == []
    assert manifest.contains(pending.seq) and manifest.contains(new.seq)


def test_a_retention_pass_keeps_only_what_retained_versions_need(
    instance: dg.DagsterInstance,
    settings: Settings,
    store: ObjectStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ingests = make_history(instance, settings, store)
    monkeypatch.setattr(pruning, "RUNS_PAGE", 1)  # old runs are found a page at a time
    assert a_pass_later(instance, store) == pruning.Pruned(
        ingests=5, marks=8, commit_records=2, runs=2
    )
    assert_pruned_to_what_is_retained(instance, store, ingests)
    assert a_pass_later(instance, store) == pruning.Pruned()  # nothing more to prune
    assert_nothing_lost(instance, settings, store, ingests["pending"])


def test_a_pass_within_the_retention_prunes_nothing(
    instance: dg.DagsterInstance, settings: Settings, store: ObjectStore
) -> None:
    make_history(instance, settings, store)
    keys = set(store.list_keys(""))
    assert prune_history(instance, store, datetime.now(UTC), RETENTION) == pruning.Pruned()
    assert set(store.list_keys("")) == keys


@pytest.mark.parametrize(
    ("module", "step", "after"),
    [
        (prune, "forget_sources", False),
        (prune, "forget_sources", True),  # receipts and landing files gone, entries not
        (prune, "drop_entries", True),  # entries gone, nothing after
        (prune, "prune_marks", False),
        (commits, "prune_records", False),
        (commits, "prune_records", True),
        (pruning, "delete_run", False),
        (pruning, "delete_run", True),  # one run gone, the rest not
    ],
    ids=[
        "before-receipts",
        "receipts-gone",
        "log-entries-gone",
        "before-marks",
        "before-commit-records",
        "commit-records-gone",
        "before-runs",
        "one-run-gone",
    ],
)
def test_a_pass_dying_at_each_step_then_running_again_loses_nothing(
    instance: dg.DagsterInstance,
    settings: Settings,
    store: ObjectStore,
    monkeypatch: pytest.MonkeyPatch,
    module: Any,
    step: str,
    after: bool,
) -> None:
    ingests = make_history(instance, settings, store)
    with monkeypatch.context() as patch:
        patch.setattr(module, step, dies(getattr(module, step), after=after))
        with pytest.raises(dg.Failure, match="the process died here"):
            a_pass_later(instance, store)
    assert dataset_rows(instance, settings, "events") == [1, 2, 3]  # readers see no change
    a_pass_later(instance, store)
    assert_pruned_to_what_is_retained(instance, store, ingests)
    assert_nothing_lost(instance, settings, store, ingests["pending"])


def test_the_last_log_entry_stays_so_no_seq_is_handed_out_twice(
    instance: dg.DagsterInstance, settings: Settings, store: ObjectStore
) -> None:
    first = land_csv(store, "events", b"n\n1\n")
    last = land_csv(store, "events", b"n\n2\n")
    apply(instance, settings)
    assert a_pass_later(instance, store).ingests == 1
    assert list(store.list_keys(log_prefix("events"))) == [log_key("events", last.seq)]
    assert not store.exists(receipt_key(first.ingest_id))
    # An API process whose manifest is stale (applied_through 0) still commits after it.
    again = last.model_copy(update={"ingest_id": "20261205T000000000000-0000abcd", "seq": 0})
    assert commit(store, again, after=0).seq == last.seq + 1
    apply(instance, settings)
    # The same bytes, sent after their duplicate marks were pruned, are applied again.
    assert dataset_rows(instance, settings, "events") == [1, 2, 2]


def test_a_pruned_ingest_answers_410_with_what_is_known(
    instance: dg.DagsterInstance, settings: Settings, store: ObjectStore
) -> None:
    ingests = make_history(instance, settings, store)
    a_pass_later(instance, store)
    app = create_app()
    # The API's own clock: retention 0 makes every ingest old enough to have been pruned.
    app.dependency_overrides[get_settings] = lambda: settings.model_copy(
        update={"retention_days": 0}
    )
    app.dependency_overrides[get_store] = lambda: store
    with TestClient(app, headers=admin_headers(settings)) as client:
        gone = client.get(f"/v1/ingest/{ingests['one'].ingest_id}")
        assert gone.status_code == 410, gone.text
        detail = gone.json()["detail"]
        assert detail["ingest_id"] == ingests["one"].ingest_id
        assert detail["received_at"].startswith(ingests["one"].ingest_id[:4])
        assert "retention" in detail["message"]
        kept = client.get(f"/v1/ingest/{ingests['pending'].ingest_id}")
        assert kept.status_code == 200 and kept.json()["status"] == "queued"
        # An id this API never handed out, with digits that are no time: 404, never 500.
        assert client.get("/v1/ingest/20261399T999999000000-0000abcd").status_code == 404


def test_a_rebuild_after_its_sources_were_pruned_is_refused_and_changes_nothing(
    instance: dg.DagsterInstance, settings: Settings, store: ObjectStore
) -> None:
    make_history(instance, settings, store)
    a_pass_later(instance, store)
    result = run_dataset(instance, settings, "events", DatasetConfig(operation="rebuild"))
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "retention has pruned their source files" in str(failure.event_specific_data)
    assert dataset_rows(instance, settings, "events") == [1, 2, 3]
