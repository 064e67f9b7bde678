"""Per-token limits, counted in the process (memory://); the shared Redis is exercised on
the real server in tests/e2e/test_peer_limits.py."""

from __future__ import annotations

import time

import pytest

from api.quotas import Quotas, TokenLimits
from devstack.ports import free_port
from lakehouse.errors import Throttled


def quotas(**limits: int) -> Quotas:
    given = {"requests_per_second": 0, "uploads_at_once": 0, "queries_at_once": 0}
    return Quotas("memory://", TokenLimits(**{**given, "upload_bytes_per_hour": 0, **limits}))


def test_a_token_holds_at_most_its_leases_and_gets_them_back_once() -> None:
    counter = quotas(queries_at_once=2)
    first, second = counter.admit("ann", "queries", 60), counter.admit("ann", "queries", 60)
    with pytest.raises(Throttled, match="already has 2 queries in flight") as refused:
        counter.admit("ann", "queries", 60)
    assert refused.value.retry_after == 2
    counter.admit("bob", "queries", 60).release()  # another token's share is its own
    counter.admit("ann", "uploads", 60)  # and so is another kind's
    counter.admit("ann")  # a request that holds no lease goes on
    first.release()
    first.release()  # released twice (a handler and its backstop): given back once
    third = counter.admit("ann", "queries", 60)
    with pytest.raises(Throttled):
        counter.admit("ann", "queries", 60)
    second.release()
    third.release()


def test_past_the_rate_a_request_is_refused_and_holds_no_lease() -> None:
    counter = quotas(requests_per_second=2, uploads_at_once=5)
    answers = []
    started = time.monotonic()
    for _ in range(4):
        try:
            answers.append(counter.admit("ann", "uploads", 60))
        except Throttled as refused:
            assert "more than 2 requests in a second" in str(refused)
            answers.append(None)
    # Four requests all within 2 a second would have to span more than one second.
    assert None in answers or time.monotonic() - started >= 1
    for lease in answers:
        if lease is not None:
            lease.release()
    counter.limits = TokenLimits(0, 1, 0, 0)  # a refused request kept no lease:
    counter.admit("ann", "uploads", 60)  # the one lease there is can be had


def test_bytes_past_the_hourly_allowance_are_refused_with_when_to_retry() -> None:
    counter = quotas(upload_bytes_per_hour=100)
    counter.upload_bytes("ann", 60)
    counter.upload_bytes("ann", 40)
    with pytest.raises(Throttled, match="uploaded more than 100 bytes") as refused:
        counter.upload_bytes("ann", 1)
    assert 1 <= refused.value.retry_after <= 3600
    counter.upload_bytes("bob", 100)


def test_no_limit_set_means_none_is_counted() -> None:
    counter = quotas()
    for _ in range(1000):
        counter.admit("ann", "uploads", 60)
    counter.upload_bytes("ann", 10**12)


def test_a_store_that_cannot_be_reached_lets_requests_go_and_counts_that() -> None:
    limits = TokenLimits(1, 1, 1, 1)
    counter = Quotas(f"redis://127.0.0.1:{free_port()}/0", limits)
    for _ in range(3):
        counter.admit("ann", "uploads", 60).release()
        counter.upload_bytes("ann", 10)
    # The admission and the bytes; a lease's return is off the request's path (it lapses).
    assert counter.store_errors == 6
