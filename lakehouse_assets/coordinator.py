"""Dagster's run queue, checked every half second.

A run waits in the queue for the daemon's next look: on average half the interval. The
`dequeue_interval_seconds` setting takes whole seconds, and the daemon sleeps in half-second
steps, so half a second is the shortest interval that does not spin; it halves the wait
of every run (most of a small upload's latency once runs start on warm workers).
"""

from __future__ import annotations

import dagster as dg

DEQUEUE_INTERVAL_SECONDS = 0.5


class PromptQueuedRunCoordinator(dg.QueuedRunCoordinator):
    @property
    def dequeue_interval_seconds(self) -> float:  # type: ignore[override]
        return DEQUEUE_INTERVAL_SECONDS
