"""Independent object-store calls side by side: one round trip's wait instead of several."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from functools import partial
from typing import TypeVar

READ_THREADS = 16
T = TypeVar("T")
A = TypeVar("A")

_io = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="store")


def together(*calls: Callable[[], T]) -> list[T]:
    """Run independent store calls side by side (one round trip instead of several);
    the first error, if any, is raised once all have finished."""
    futures = [_io.submit(call) for call in calls]
    wait(futures)
    return [future.result() for future in futures]


def each(call: Callable[[A], T], items: Sequence[A]) -> list[T]:
    """`call` on every item, side by side on the same threads as `together`."""
    return together(*(partial(call, item) for item in items))
