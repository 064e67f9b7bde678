"""The run queue's coordinator: the daemon looks at the queue once per change, and at
least every interval, never spinning and never waiting twice in one look."""

from __future__ import annotations

import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import pytest

# Dagster's own daemon, driven here one look at a time, and the origin a queued run needs
# (the project never imports these).
from dagster._core.remote_origin import (
    RegisteredCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import (
    QueuedRunCoordinatorDaemon,
)

from lakehouse.runs import PARTITION_TAG
from lakehouse_assets.coordinator import (
    DAEMON_QUEUE_THREAD,
    PromptQueuedRunCoordinator,
    QueueWatch,
    in_daemon_queue_thread,
)

ORIGIN = RemoteJobOrigin(
    RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("lakehouse"), "__repository__"),
    "ingest_job",
)


def a_run(status: dg.DagsterRunStatus = dg.DagsterRunStatus.NOT_STARTED) -> dg.DagsterRun:
    return dg.DagsterRun(
        job_name="ingest_job",
        run_id=str(uuid.uuid4()),
        status=status,
        tags={PARTITION_TAG: "orders"},
        remote_job_origin=ORIGIN,
    )


@pytest.fixture
def instance(
    dagster_home_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dg.DagsterInstance]:
    """The project's instance (its dagster.yaml), in a Dagster home of the test's own."""
    home = tmp_path / "dagster"
    shutil.copytree(dagster_home_template, home)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


class FakeTime:
    """A clock that moves only when slept on, and a signal that changes when told."""

    def __init__(self) -> None:
        self.now, self.stamp, self.slept = 0.0, 0, 0.0
        self.change_at: float | None = None

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0, "a waiting look must never spin"
        self.now += seconds
        self.slept += seconds
        if self.change_at is not None and self.now >= self.change_at:
            self.stamp += 1
            self.change_at = None

    def watch(self, paced: Callable[[], bool] = lambda: True) -> QueueWatch:
        return QueueWatch(
            0.5, paced=paced, stamp=lambda: self.stamp, clock=self.clock, sleep=self.sleep
        )


def test_a_first_look_does_not_wait() -> None:
    time = FakeTime()
    time.watch().pace()
    assert time.slept == 0


def test_a_look_again_waits_for_the_interval_when_nothing_changed() -> None:
    time = FakeTime()
    watch = time.watch()
    watch.pace()
    watch.pace()
    assert time.now == pytest.approx(0.5)


def test_a_look_again_returns_once_the_queue_changed() -> None:
    time = FakeTime()
    watch = time.watch()
    watch.pace()
    time.change_at = 0.1
    watch.pace()
    assert 0.1 <= time.now < 0.15


def test_a_change_before_the_look_again_means_no_wait() -> None:
    time = FakeTime()
    watch = time.watch()
    watch.pace()
    time.stamp += 1  # a run was submitted while the daemon was busy
    watch.pace()
    assert time.slept == 0


def test_a_look_later_than_the_interval_does_not_wait() -> None:
    time = FakeTime()
    watch = time.watch()
    watch.pace()
    time.now += 2.0
    watch.pace()
    assert time.slept == 0


def test_only_the_daemons_queue_thread_is_paced() -> None:
    """A run reads the limits when it starts, and a worker starts runs back to back."""
    time = FakeTime()
    watch = time.watch(paced=in_daemon_queue_thread)
    watch.pace()
    watch.pace()
    assert time.slept == 0
    daemon = threading.Thread(target=lambda: [watch.pace(), watch.pace()], name=DAEMON_QUEUE_THREAD)
    daemon.start()
    daemon.join()
    assert time.slept == pytest.approx(0.5)


def test_the_daemon_reads_the_queue_limits_once_per_look(
    instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second read in one look would wait out the interval with a run ready to go. The
    look here has a queued run that it must hold back (its dataset already has a run in
    progress), so it goes through every check a look makes."""
    coordinator = instance.run_coordinator
    assert isinstance(coordinator, PromptQueuedRunCoordinator)
    assert coordinator.dequeue_interval_seconds == 0
    instance.add_run(a_run(dg.DagsterRunStatus.STARTED))
    queued = instance.add_run(a_run(dg.DagsterRunStatus.QUEUED))
    reads: list[None] = []
    monkeypatch.setattr(coordinator, "_watch", SimpleNamespace(pace=lambda: reads.append(None)))
    daemon = QueuedRunCoordinatorDaemon(interval_seconds=coordinator.dequeue_interval_seconds)
    list(daemon.run_iteration(SimpleNamespace(instance=instance)))  # type: ignore[arg-type]
    assert len(reads) == 1
    still_queued = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED]))
    assert [run.run_id for run in still_queued] == [queued.run_id]  # the per-dataset limit


def test_submitting_a_run_signals_the_queue(instance: dg.DagsterInstance) -> None:
    signal = Path(instance.root_directory) / "queue-changed"
    run = instance.add_run(a_run())
    assert not signal.exists()
    instance.run_coordinator.submit_run(dg.SubmitRunContext(run, workspace=None))  # type: ignore[arg-type]
    assert signal.exists()
    submitted = instance.get_run_by_id(run.run_id)
    assert submitted is not None and submitted.status == dg.DagsterRunStatus.QUEUED
