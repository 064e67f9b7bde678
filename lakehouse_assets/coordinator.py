"""Dagster's run queue, checked as soon as it changes.

Dagster's daemon looks at the queue, then sleeps at least `dequeue_interval_seconds` in
half-second steps, so a queued run waits ~0.25 s on average for its look, and often
more. Most of a small upload's latency, once runs start on warm workers, was that wait.

This coordinator makes the daemon's look prompt instead:
- The daemon reads the queue's limits (`get_run_queue_config`) at the start of every
  look. Read again by the same thread within `DEQUEUE_INTERVAL_SECONDS`, that read
  waits until the queue changes or the interval is up: the daemon, told not to sleep
  (interval 0), then looks once per change and at least every interval, never spinning.
  Readers that do not loop (the UI's queue page) are not held up.
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

import dagster as dg

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


class QueueWatch:
    """Paces each thread's reads: a read within `interval` of the same thread's last
    one returns once the signal's stamp changes, or when the interval is up."""

    def __init__(
        self,
        interval: float = DEQUEUE_INTERVAL_SECONDS,
        stamp: Callable[[], int] = _signal_stamp,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval, self.stamp, self.clock, self.sleep = interval, stamp, clock, sleep
        self._last = threading.local()

    def pace(self) -> None:
        last_read, last_stamp = getattr(self._last, "read", None), getattr(self._last, "stamp", 0)
        if last_read is not None:
            due = last_read + self.interval
            while self.clock() < due and self.stamp() == last_stamp:
                self.sleep(min(WATCH_SECONDS, max(0.0, due - self.clock())))
        self._last.read, self._last.stamp = self.clock(), self.stamp()


class PromptQueuedRunCoordinator(dg.QueuedRunCoordinator):
    """Dagster's QueuedRunCoordinator (same limits, same config), looking at the queue as
    soon as it changes rather than on a timer."""

    _watch = QueueWatch()

    @property
    def dequeue_interval_seconds(self) -> int:
        return 0  # the daemon does not sleep between looks: `get_run_queue_config` paces

    def get_run_queue_config(self):  # the result type is not public
        self._watch.pace()
        return super().get_run_queue_config()

    def submit_run(self, context: dg.SubmitRunContext) -> dg.DagsterRun:
        run = super().submit_run(context)
        signal_queue_changed()
        return run
