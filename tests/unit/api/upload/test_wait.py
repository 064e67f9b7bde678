"""The watch that wakes `wait=` uploads when the event log grows (api/upload/wait.py)."""

from __future__ import annotations

import asyncio
import threading
import time

from api.upload.wait import _UNREAD, MarkWatch


class _Log:
    """An event log's high-water mark that the test moves; counts the reads at once."""

    def __init__(self) -> None:
        self.mark: int | None = 0
        self.reads = 0
        self.reading = 0
        self.most_at_once = 0
        self.fail = False
        self._lock = threading.Lock()

    def read(self) -> int | None:
        with self._lock:
            self.reads += 1
            self.reading += 1
            self.most_at_once = max(self.most_at_once, self.reading)
        try:
            time.sleep(0.001)
            if self.fail:
                raise OSError("the event log is unreadable")
            return self.mark
        finally:
            with self._lock:
                self.reading -= 1


def test_many_waiters_share_one_reader_and_all_wake_when_the_mark_moves() -> None:
    log = _Log()
    watch = MarkWatch(log.read)

    async def scenario() -> list[object]:
        deadline = time.monotonic() + 30
        waiters = [asyncio.create_task(watch.after(0, deadline)) for _ in range(50)]
        await asyncio.sleep(0.1)
        assert not any(w.done() for w in waiters)  # the mark has not moved
        log.mark = 7
        return await asyncio.gather(*waiters)

    assert asyncio.run(scenario()) == [7] * 50
    assert log.most_at_once == 1  # one reader for all fifty


def test_the_watch_stops_reading_once_nobody_waits() -> None:
    log = _Log()
    watch = MarkWatch(log.read)

    async def scenario() -> None:
        log.mark = 1
        assert await watch.after(0, time.monotonic() + 30) == 1
        assert watch._task is not None
        await asyncio.wait_for(watch._task, 30)  # it ends by itself (30 s: only a hang guard)

    asyncio.run(scenario())
    log.mark = 2  # a new waiter starts it again
    assert asyncio.run(watch.after(1, time.monotonic() + 30)) == 2


def test_a_waiter_returns_at_its_deadline_with_the_mark_unmoved() -> None:
    log = _Log()
    watch = MarkWatch(log.read)
    assert asyncio.run(watch.after(0, time.monotonic() + 0.3)) in (0, _UNREAD)


def test_an_unreadable_log_wakes_the_waiters_to_look_for_themselves() -> None:
    log = _Log()
    log.fail = True
    watch = MarkWatch(log.read)
    assert asyncio.run(watch.after(0, time.monotonic() + 30)) not in (0, None)


def test_a_new_event_loop_gets_a_fresh_watch() -> None:
    """A test's app may run under several loops: the watch follows the running one."""
    log = _Log()
    watch = MarkWatch(log.read)
    for mark in (1, 2):
        log.mark = mark
        assert asyncio.run(watch.after(mark - 1, time.monotonic() + 30)) == mark
