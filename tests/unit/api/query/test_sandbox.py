"""How a query process names a failure, without a process: only its own watchdog's
interrupt is a timeout; and its watchdog interrupts each query at its own limit."""

from __future__ import annotations

import contextlib
import threading
import time

import duckdb
import pytest

from api.query.sandbox import LOST_ERROR, Watchdog, classify


@pytest.mark.parametrize(
    "exc",
    [duckdb.InterruptException("INTERRUPT Error: Interrupted!"), OSError("INTERRUPT Error: x")],
)
def test_an_interrupt_is_a_timeout_only_when_the_watchdog_fired(exc: BaseException) -> None:
    assert classify(exc, timed_out=True) == ("timeout", str(exc))
    # DuckDB lost the query's own error in a race: not a timeout, and the message says so.
    assert classify(exc, timed_out=False) == ("query", LOST_ERROR.format(text=str(exc)))


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (duckdb.OutOfMemoryException("Out of Memory Error: x"), "memory"),
        (MemoryError(), "memory"),
        (duckdb.InvalidInputException("Invalid Input Error: boom at 200001"), "query"),
    ],
)
def test_other_failures_keep_their_kind(exc: BaseException, kind: str) -> None:
    assert classify(exc, timed_out=False) == (kind, str(exc))
    assert classify(exc, timed_out=True)[0] == kind


def _runs_until_interrupted(watchdog: Watchdog, con: duckdb.DuckDBPyConnection) -> bool:
    """Whether an endless query on `con` ends by the watchdog (well before a minute)."""
    done = threading.Event()

    def endless() -> None:
        with contextlib.suppress(duckdb.InterruptException):
            con.execute("SELECT count(*) FROM range(1000000000000) a WHERE a.range % 7 = 99")
        done.set()

    threading.Thread(target=endless, daemon=True).start()
    if not done.wait(60):
        con.interrupt()  # free the thread; the test fails
        return False
    return watchdog.fired


def test_a_shorter_limit_after_a_longer_one_still_interrupts_in_time() -> None:
    """The watchdog sleeps until the deadline it knows; a query whose limit ends before
    that one must wake it, or it would run on for the earlier query's whole limit."""
    con = duckdb.connect()
    watchdog = Watchdog(con)
    watchdog.start(3600)  # a query that ended at once: its deadline is an hour away
    watchdog.disarm()
    watchdog.start(0.2)
    assert _runs_until_interrupted(watchdog, con)


def test_a_deadline_moved_later_is_not_fired_at_the_earlier_one() -> None:
    """A query ends and the next starts with a later deadline, without waking the thread:
    it wakes at the first deadline, finds the later one and sleeps on; the next, endless
    query is interrupted at its own limit."""
    con = duckdb.connect()
    watchdog = Watchdog(con)
    watchdog.start(2)
    watchdog.disarm()
    watchdog.start(3600)  # the thread still sleeps towards the first deadline
    time.sleep(2.5)  # past it
    assert not watchdog.fired
    watchdog.disarm()
    watchdog.start(0.2)
    assert _runs_until_interrupted(watchdog, con)
