"""Dagster's run queue, checked as soon as it changes.

Dagster's daemon looks at the queue, then sleeps at least `dequeue_interval_seconds` in
half-second steps, so a queued run waits ~0.25 s on average for its look, and often
more. Most of a small upload's latency, once runs start on warm workers, was that wait.

This coordinator makes the daemon's look prompt instead:
- The daemon reads the queue's limits (`get_run_queue_config`) at the start of every
  look, in its queue thread. Told not to sleep (interval 0), it reads them again right
  after each look; there, a read within `DEQUEUE_INTERVAL_SECONDS` of the last one waits
  until the queue changes or the interval is up. The daemon then looks once per change
  and at least every interval, never spinning. Other readers (a run starting, the UI)
  are never held up.
- A change is a touch of `$DAGSTER_HOME/queue-changed`, which costs a `stat` to watch:
  a run is submitted (here, in whichever process submits it), or a run worker finished
  a run (`lakehouse_assets.worker`), which may free a slot for a run of the same dataset.

Processes on other machines have their own `$DAGSTER_HOME`: their changes are seen at
the next interval, as with Dagster's own queue.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg

from lakehouse.runtime.compat import DAEMON_QUEUE_THREAD

DEQUEUE_INTERVAL_SECONDS = 0.5
WATCH_SECONDS = 0.02  # how often a waiting look checks for a change
SIGNAL_FILE = "queue-changed"


def signal_path() -> Path | None:
    home = os.environ.get("DAGSTER_HOME")
    return Path(home) / SIGNAL_FILE if home else None


def signal_queue_changed() -> None:
    """Wake the daemon's next look at the queue (best effort: it looks anyway)."""
    path = signal_path()
    if path is not None:
        with contextlib.suppress(OSError):
            path.touch()


def _signal_stamp() -> int:
    path = signal_path()
    try:
        return path.stat().st_mtime_ns if path else 0
    except OSError:
        return 0


def in_daemon_queue_thread() -> bool:
    return threading.current_thread().name == DAEMON_QUEUE_THREAD


class QueueWatch:
    """Paces the daemon's looks: a read within `interval` of the last one returns once
    the signal's stamp changes, or when the interval is up. Reads where `paced` says no
    (any thread but the daemon's queue thread) return at once."""

    def __init__(
        self,
        interval: float = DEQUEUE_INTERVAL_SECONDS,
        paced: Callable[[], bool] = in_daemon_queue_thread,
        stamp: Callable[[], int] = _signal_stamp,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval, self.paced = interval, paced
        self.stamp, self.clock, self.sleep = stamp, clock, sleep
        self._last_read: float | None = None
        self._last_stamp = 0

    def pace(self) -> None:
        if not self.paced():
            return
        if self._last_read is None:
            dg.get_dagster_logger().info(
                "Looking at the run queue as soon as it changes, and at least every "
                f"{self.interval:g} s (lakehouse_assets/coordinator.py)"
            )
        else:
            due = self._last_read + self.interval
            while self.clock() < due and self.stamp() == self._last_stamp:
                self.sleep(min(WATCH_SECONDS, max(0.0, due - self.clock())))
        self._last_read, self._last_stamp = self.clock(), self.stamp()


class PromptQueuedRunCoordinator(dg.QueuedRunCoordinator):
    """Dagster's QueuedRunCoordinator (same limits, same config), looking at the queue as
    soon as it changes rather than on a timer."""

    _watch = QueueWatch()

    @property
    def dequeue_interval_seconds(self) -> int:
        return 0  # the daemon does not sleep between looks: `get_run_queue_config` paces

    def get_run_queue_config(self) -> Any:  # its type is not public
        self._watch.pace()
        return super().get_run_queue_config()

    def submit_run(self, context: dg.SubmitRunContext) -> dg.DagsterRun:
        run = super().submit_run(context)
        signal_queue_changed()
        return run
