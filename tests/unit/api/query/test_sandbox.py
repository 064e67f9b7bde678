"""How a query process names a failure, without a process: only its own watchdog's
interrupt is a timeout."""

from __future__ import annotations

import duckdb
import pytest

from api.query.sandbox import LOST_ERROR, classify


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
