"""The ingest protocol and the commit records on an in-memory store: seq allocation,
lost answers, budgets, hints, containment, and finding the version that decided an
ingest. (The same code against a real S3 server: tests/integration, tests/e2e.)"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from lakehouse.ingest.landing import Landing
from lakehouse.ingest.log import (
    CommitUnconfirmed,
    LogTails,
    has_pending,
    pending_entries,
    settle_pending,
)
from lakehouse.manifest import Manifest
from lakehouse.publish.catalog import CurrentManifests
from lakehouse.store import ObjectStore, StoreUnavailable
from lakehouse.store.layout import log_key, pending_key
from lakehouse.versions.commits import (
    CommitRecord,
    claim,
    deciding_commit,
    prune_records,
    read_commit,
    unpublished,
)
from tests.fakes import MemoryStore


def store() -> ObjectStore:
    return cast(ObjectStore, MemoryStore())


def land(s: ObjectStore, data: bytes = b"n\n1\n", dataset: str = "events", **kw: Any):
    return Landing(s, dataset, **kw).finish(data)


def manifest(version: int, **fields: Any) -> Manifest:
    now = datetime.now(UTC)
    base = Manifest.empty("events", "s3://b/datasets/events/")
    return base.model_copy(update={"version": version, "created_at": now, **fields})


def test_commits_take_consecutive_seqs_in_the_order_they_commit() -> None:
    s = store()
    seqs = [land(s, f"n\n{i}\n".encode()).record.seq for i in range(3)]
    assert seqs == [1, 2, 3]
    assert [k for k in s.list_keys("log/events/")] == [log_key("events", n) for n in (1, 2, 3)]
    assert s.exists(pending_key("events"))


def test_racing_commits_get_distinct_seqs_with_no_gap() -> None:
    s = store()
    with ThreadPoolExecutor(16) as pool:
        records = list(pool.map(lambda i: land(s, f"n\n{i}\n".encode()).record, range(32)))
    assert sorted(r.seq for r in records) == list(range(1, 33))


class CountingStore(MemoryStore):
    """Counts the log keys each listing returns."""

    listed = 0

    def list_keys(self, prefix: str, start_after: str = "") -> Iterator[str]:
        for key in super().list_keys(prefix, start_after):
            self.listed += 1
            yield key


def test_racing_commits_of_several_processes_get_distinct_seqs_with_no_gap() -> None:
    """Two API processes, each with its own knowledge of the log, racing 16 uploads each."""
    s = store()
    processes = [LogTails(), LogTails()]
    with ThreadPoolExecutor(16) as pool:
        records = list(
            pool.map(
                lambda i: land(s, f"n\n{i}\n".encode(), tails=processes[i % 2]).record,
                range(32),
            )
        )
    assert sorted(r.seq for r in records) == list(range(1, 33))


def test_a_process_lists_only_the_log_entries_it_has_not_seen() -> None:
    """A burst of uploads pending for one dataset: each commit lists what follows the last
    entry this process saw, not every pending entry (which made a burst quadratic)."""
    s = CountingStore()
    tails = LogTails()
    for i in range(20):
        land(cast(ObjectStore, s), f"n\n{i}\n".encode(), tails=tails)
    assert s.listed == 0  # every entry was this process's own
    land(cast(ObjectStore, s), b"n\nother\n", tails=LogTails())  # another process
    assert s.listed == 20  # it knew nothing, so listed all
    land(cast(ObjectStore, s), b"n\nlast\n", tails=tails)
    assert s.listed == 21  # just the other process's entry
    assert [r for r in s.list_keys("log/events/")][-1] == log_key("events", 22)


class LostAnswerStore(MemoryStore):
    """The store writes the entry, but the answer is lost and the retry says 'exists'."""

    def put_json_if_absent(self, key: str, value: Any) -> bool:
        super().put_json_if_absent(key, value)
        return False


class FailingOnceAfterWriteStore(MemoryStore):
    """The first conditional create reaches the store, but the store fails to answer."""

    failed = False

    def put_json_if_absent(self, key: str, value: Any) -> bool:
        created = super().put_json_if_absent(key, value)
        if not self.failed:
            self.failed = True
            raise StoreUnavailable("the store went away mid-answer")
        return created


def test_the_store_failing_at_the_commit_point_then_a_resend_leaves_no_gap() -> None:
    """Through one process's LogTails: the failed commit taught it nothing, yet the resend
    still finds the entry that was written and takes the next seq."""
    s = cast(ObjectStore, FailingOnceAfterWriteStore())
    tails = LogTails()
    with pytest.raises(CommitUnconfirmed) as failed:
        land(s, tails=tails)
    assert not failed.value.certain
    resent = land(s, tails=tails).record
    assert resent.seq == 2
    assert list(s.list_keys("log/events/")) == [log_key("events", n) for n in (1, 2)]


def test_a_commit_whose_answer_was_lost_is_not_committed_twice() -> None:
    s = cast(ObjectStore, LostAnswerStore())
    record = land(s).record
    assert record.seq == 1
    assert list(s.list_keys("log/events/")) == [log_key("events", 1)]


def test_the_same_bytes_pending_or_applied_are_a_duplicate_and_nothing_is_committed() -> None:
    s = store()
    first = land(s).record
    pending = land(s)
    assert pending.duplicate and pending.record.ingest_id == first.ingest_id
    # Once a version contains it (and the run marked the bytes applied):
    from lakehouse.ingest.marks import record_applied

    record_applied(s, first)
    applied = manifest(1, base_seq=1, applied_through=1)
    again = land(s, current=applied)
    assert again.duplicate and again.record.ingest_id == first.ingest_id
    # ...but not once a replace took it out, nor if it failed:
    replaced = manifest(2, base_seq=2, applied_through=2)
    assert not land(s, current=replaced).duplicate
    failed = manifest(1, base_seq=1, applied_through=3, excluded_seqs=[1])
    assert not land(s, b"n\n1\n", current=failed).duplicate
    assert len(list(s.list_keys("log/events/"))) == 3


def test_replace_is_never_a_duplicate() -> None:
    s = store()
    land(s)
    assert not land(s, mode="replace").duplicate


def test_pending_entries_follow_the_log_within_the_budget() -> None:
    s = store()
    records = [land(s, b"n\n" + b"%d\n" % i * 10).record for i in range(5)]
    size = records[0].bytes
    assert [r.seq for r in pending_entries(s, "events", 0, 10, 10**9)] == [1, 2, 3, 4, 5]
    assert [r.seq for r in pending_entries(s, "events", 2, 2, 10**9)] == [3, 4]
    assert [r.seq for r in pending_entries(s, "events", 0, 10, 2 * size)] == [1, 2]
    assert [r.seq for r in pending_entries(s, "events", 0, 10, 1)] == [1]  # at least one
    assert pending_entries(s, "events", 5, 10, 10**9) == []


def test_the_pending_hint_is_cleared_only_when_nothing_is_left() -> None:
    s = store()
    land(s)
    land(s, b"n\n2\n")
    assert settle_pending(s, "events", applied_through=1)
    assert s.exists(pending_key("events"))
    assert not settle_pending(s, "events", applied_through=2)
    assert not s.exists(pending_key("events"))
    assert not has_pending(s, "events", 2)


@pytest.mark.parametrize(
    ("seq", "contained"),
    [(1, False), (2, True), (3, False), (4, True), (5, False)],
)
def test_a_version_contains_its_range_less_what_it_excluded(seq: int, contained: bool) -> None:
    version = manifest(3, base_seq=2, applied_through=4, excluded_seqs=[3])
    assert version.contains(seq) is contained


def test_a_pruned_seq_is_contained_in_no_version() -> None:
    version = manifest(3, base_seq=1, applied_through=4, excluded_seqs=[3], pruned_through=2)
    assert [version.contains(seq) for seq in (1, 2, 3, 4)] == [False, False, False, True]


def test_version_zero_contains_nothing() -> None:
    assert not manifest(0, base_seq=0, applied_through=4).contains(1)


def test_the_next_version_counts_what_its_objects_hold() -> None:
    from lakehouse.manifest import DataObject

    objects = [DataObject(key="a", bytes=10, rows=2), DataObject(key="b", bytes=5, rows=1)]
    rejects = [DataObject(key="r", bytes=1, rows=4)]
    after = manifest(1).next_version(objects=objects, rejects=rejects)
    assert (after.version, after.row_count, after.bytes, after.rejected_rows) == (2, 3, 15, 4)


def record(version: int, applied_through: int) -> CommitRecord:
    return CommitRecord(
        version=version, run_id="r", manifest=manifest(version, applied_through=applied_through)
    )


def test_only_one_run_can_commit_a_version() -> None:
    s = store()
    assert claim(s, record(1, 3))
    assert not claim(s, record(1, 4).model_copy(update={"run_id": "another run"}))
    assert unpublished(s, "events", published=1) is None
    found = unpublished(s, "events", published=0)
    assert found is not None and found.manifest.applied_through == 3


def test_the_deciding_version_is_found_by_binary_search() -> None:
    s = store()
    # v1 decided 1-2, v2 was a compaction (nothing new), v3 decided 3-7, v4 decided 8.
    for version, through in [(1, 2), (2, 2), (3, 7), (4, 8)]:
        assert claim(s, record(version, through))
    found = [deciding_commit(s, "events", seq, latest=4) for seq in (1, 2, 3, 7, 8, 9)]
    assert [r.version if r else None for r in found] == [1, 1, 3, 3, 4, None]


def test_records_that_decided_only_pruned_ingests_go_and_are_never_claimed_again() -> None:
    s = store()
    for version, through in [(1, 2), (2, 2), (3, 7), (4, 8)]:
        assert claim(s, record(version, through))
    # Ingests through seq 5 were pruned: v3 decided 6 and 7, so v3 and v4 stay.
    assert prune_records(s, "events", pruned_through=5, current=4) == 2
    assert deciding_commit(s, "events", 6, latest=4).version == 3  # type: ignore[union-attr]
    # A run that built on a version long gone (its base, v1, was pruned) loses its claim.
    assert not claim(s, record(2, 3).model_copy(update={"run_id": "a run days behind"}))
    assert read_commit(s, "events", 2) is None
    # Never the current version's record, whatever was pruned.
    assert prune_records(s, "events", pruned_through=100, current=4) == 1
    assert read_commit(s, "events", 4) is not None


def test_statistics_merge_what_new_rows_add() -> None:
    from lakehouse.manifest import ColumnStats
    from lakehouse.versions.objects import merge_stats

    before = [ColumnStats(column="n", nulls=1, min="9", max="10"), ColumnStats(column="d")]
    new = [
        ColumnStats(column="n", nulls=2, min="-1", max="2"),
        ColumnStats(column="d", nulls=0, min="2024-01-02", max="2024-03-01"),
        ColumnStats(column="added", nulls=3),
    ]
    assert merge_stats(before, new) == [
        ColumnStats(column="n", nulls=3, min="-1", max="10"),  # as numbers, not text
        ColumnStats(column="d", nulls=0, min="2024-01-02", max="2024-03-01"),
        ColumnStats(column="added", nulls=3),
    ]


def test_a_claim_whose_answer_was_lost_finds_its_own_record() -> None:
    s = cast(ObjectStore, LostAnswerStore())
    assert claim(s, record(1, 3))  # written; the retry said "exists": it is ours
    other = record(1, 4).model_copy(update={"run_id": "another run"})
    assert not claim(s, other)


def test_no_duplicate_answer_while_a_later_entry_may_be_a_replace() -> None:
    from lakehouse.ingest.marks import record_applied

    s = store()
    first = land(s).record
    record_applied(s, first)
    applied = manifest(1, base_seq=1, applied_through=1)
    land(s, b"n\n9\n", mode="replace", current=applied)  # pending: it will take `first` out
    again = land(s, current=applied)
    assert not again.duplicate and again.record.seq == 3


def test_the_upload_path_reads_the_catalog_again_only_after_a_new_commit_record() -> None:
    s = store()
    catalog = {"events": manifest(1)}
    reads: list[str] = []

    def read(name: str) -> Manifest | None:
        reads.append(name)
        return catalog.get(name)

    current = CurrentManifests(s, read)
    assert current.latest("events") == catalog["events"]
    assert current.latest("events") == catalog["events"]
    assert reads == ["events"]  # the second answer came from the cache
    assert current.latest("new") is None
    assert current.latest("new") is None
    assert reads == ["events", "new"]  # "no version yet" is cached too, until one is claimed
    first_of_new = manifest(1).model_copy(update={"name": "new"})
    claim(s, CommitRecord(version=1, run_id="r", manifest=first_of_new))
    catalog["new"] = first_of_new
    assert current.latest("new") == first_of_new
    reads.clear()

    # A store that cannot answer the check: the catalog is read (never a stale answer).
    down = CurrentManifests(cast(ObjectStore, UnreachableStore()), read)
    down._cached["events"] = manifest(0)
    assert down.latest("events") == catalog["events"]

    # Version 2 is claimed: the cache is stale from then on, even before the catalog has it.
    claim(s, CommitRecord(version=2, run_id="r", manifest=manifest(2)))
    assert current.latest("events") == catalog["events"]  # still version 1 in the catalog
    catalog["events"] = manifest(2)
    assert current.latest("events") == catalog["events"]
    assert current.latest("events") == catalog["events"]
    assert reads == ["events", "events", "events"]


class UnreachableStore(MemoryStore):
    def list_keys(self, prefix: str, start_after: str = "") -> Iterator[str]:
        raise StoreUnavailable("connection refused")


class FailingOnceAt(MemoryStore):
    """A store whose `method` fails once, as a store that went away."""

    def __init__(self, method: str) -> None:
        super().__init__()
        self.method, self.failed = method, False

    def __getattribute__(self, name: str) -> Any:
        attribute = super().__getattribute__(name)
        if name == super().__getattribute__("method") and not super().__getattribute__("failed"):

            def failing(*args: Any, **kwargs: Any) -> Any:
                self.failed = True
                raise StoreUnavailable(f"the store went away at {name}")

            return failing
        return attribute


@pytest.mark.parametrize(
    "method",
    ["put_bytes", "get_json_or_none", "last_key"],
    ids=["landing-the-bytes", "looking-for-duplicates", "listing-the-log-end"],
)
def test_the_store_failing_in_the_landing_round_trip_leaves_nothing(method: str) -> None:
    """The bytes land side by side with the duplicate lookup and the log's end: the store
    failing at any of the three leaves no landing file and no log entry, and the resend
    commits once."""
    s = cast(ObjectStore, FailingOnceAt(method))
    with pytest.raises(StoreUnavailable):
        land(s)
    assert list(s.list_keys("landing/")) == []
    assert list(s.list_keys("log/")) == []
    resent = land(s)
    assert not resent.duplicate and resent.record.seq == 1
    assert list(s.list_keys("log/events/")) == [log_key("events", 1)]
    assert len(list(s.list_keys("landing/events/"))) == 1
