"""Per-token limits, one for all API processes: requests per second, uploads and queries at
once, and bytes uploaded per hour. Past one, the answer is 429 with `Retry-After`.

The counts live in one store every API process reaches (`limits_url`; by default the
broker's Redis), so several replicas enforce one limit. Rates are counted by the `limits`
library; uploads and queries at once are leases in a Redis sorted set (member: the request,
score: when the lease lapses), so a process that dies holding some frees them when they
lapse. A store of `memory://` keeps the counts per process (said at start-up).

If the store cannot be reached, requests go on unlimited and the API logs it (at most once a
minute) and counts it in `lakehouse_quota_store_errors_total`: limits guard the service,
and an outage of theirs must not become an outage of it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import redis
from limits import RateLimitItemPerHour, RateLimitItemPerSecond
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter, SlidingWindowCounterRateLimiter

from lakehouse.errors import Throttled
from lakehouse.settings import Settings

log = logging.getLogger(__name__)

LOG_EVERY_SECONDS = 60
STORE_TIMEOUT_SECONDS = 0.25  # a slow store costs a request this much at most


@dataclass(frozen=True)
class TokenLimits:
    """A token's limits (0: none)."""

    requests_per_second: int
    uploads_at_once: int
    queries_at_once: int
    upload_bytes_per_hour: int

    @classmethod
    def of(cls, settings: Settings) -> TokenLimits:
        return cls(
            settings.token_requests_per_second,
            settings.token_uploads_at_once,
            settings.token_queries_at_once,
            settings.token_upload_bytes_per_hour,
        )


class Quotas:
    def __init__(self, url: str, limits: TokenLimits) -> None:
        self.limits = limits
        self.shared = not url.startswith("memory://")
        options = {"socket_timeout": STORE_TIMEOUT_SECONDS} if self.shared else {}
        storage = storage_from_string(url, **options)
        self._rates = FixedWindowRateLimiter(storage)
        self._volume = SlidingWindowCounterRateLimiter(storage)
        self._leases: _Leases = _RedisLeases(url) if self.shared else _LocalLeases()
        self.store_errors = 0
        self._logged_at = 0.0

    def request(self, token: str) -> None:
        """Count one request of `token` (every /v1 request)."""
        per_second = self.limits.requests_per_second
        if per_second and not self._guarded(
            lambda: self._rates.hit(RateLimitItemPerSecond(per_second), "req", token)
        ):
            raise Throttled(
                f"token {token!r} sent more than {per_second} requests in a second "
                "(LAKEHOUSE_TOKEN_REQUESTS_PER_SECOND): slow down and retry after 1 s",
                1,
            )

    def upload_bytes(self, token: str, size: int) -> None:
        """Count `size` more bytes uploaded by `token` within the hour."""
        per_hour = self.limits.upload_bytes_per_hour
        if not per_hour:
            return
        item = RateLimitItemPerHour(per_hour)
        if self._guarded(lambda: self._volume.hit(item, "bytes", token, cost=size)):
            return
        stats = self._volume.get_window_stats(item, "bytes", token)
        raise Throttled(
            f"token {token!r} uploaded more than {per_hour:,} bytes in the last hour "
            "(LAKEHOUSE_TOKEN_UPLOAD_BYTES_PER_HOUR): nothing of this upload was stored; "
            "send it again later",
            math.ceil(stats.reset_time - time.time()),
        )

    def hold(self, kind: str, token: str, lease_seconds: float) -> Lease:
        """One of `token`'s leases of `kind` ("uploads", "queries"), or 429 when it holds
        them all; a lease a dead process kept lapses after `lease_seconds`."""
        most = self.limits.uploads_at_once if kind == "uploads" else self.limits.queries_at_once
        if not most:
            return Lease(lambda: None)
        key, lease = f"{kind}:{token}", uuid.uuid4().hex
        if not self._guarded(lambda: self._leases.take(key, lease, most, lease_seconds)):
            raise Throttled(
                f"token {token!r} already has {most} {kind} in flight, the most it may "
                f"(LAKEHOUSE_TOKEN_{kind.upper()}_AT_ONCE): retry when one has finished",
                2,
            )
        return Lease(lambda: self._guarded(lambda: self._leases.give_back(key, lease)))

    def _guarded(self, call: Callable[[], bool]) -> bool:
        """`call()`, or True (allowed) when the store cannot be reached."""
        try:
            return call()
        except (redis.RedisError, OSError) as exc:
            self.store_errors += 1
            if time.monotonic() - self._logged_at >= LOG_EVERY_SECONDS:
                self._logged_at = time.monotonic()
                log.error("the limits store is unreachable, requests go unlimited: %s", exc)
            return True


class Lease:
    """A held lease; `release` gives it back (once, whatever number of calls)."""

    def __init__(self, give_back: Callable[[], object]) -> None:
        self._give_back: Callable[[], object] | None = give_back

    def release(self) -> None:
        give_back, self._give_back = self._give_back, None
        if give_back is not None:
            give_back()


class _Leases:
    def take(self, key: str, lease: str, most: int, seconds: float) -> bool:
        raise NotImplementedError

    def give_back(self, key: str, lease: str) -> bool:
        raise NotImplementedError


class _RedisLeases(_Leases):
    def __init__(self, url: str) -> None:
        self.redis = redis.Redis.from_url(
            url, socket_timeout=STORE_TIMEOUT_SECONDS, socket_connect_timeout=STORE_TIMEOUT_SECONDS
        )

    def take(self, key: str, lease: str, most: int, seconds: float) -> bool:
        now = time.time()
        name = f"LAKEHOUSE/leases/{key}"
        with self.redis.pipeline() as pipe:  # MULTI/EXEC: one round trip
            pipe.zremrangebyscore(name, "-inf", now)
            pipe.zadd(name, {lease: now + seconds})
            pipe.zcard(name)
            pipe.expire(name, math.ceil(seconds) + 1)
            held = pipe.execute()[2]
        if held <= most:
            return True
        self.redis.zrem(name, lease)
        return False

    def give_back(self, key: str, lease: str) -> bool:
        self.redis.zrem(f"LAKEHOUSE/leases/{key}", lease)
        return True


class _LocalLeases(_Leases):
    def __init__(self) -> None:
        self._held: Counter[str] = Counter()
        self._leases: dict[str, str] = {}
        self._lock = threading.Lock()

    def take(self, key: str, lease: str, most: int, seconds: float) -> bool:
        with self._lock:
            if self._held[key] >= most:
                return False
            self._held[key] += 1
            self._leases[lease] = key
            return True

    def give_back(self, key: str, lease: str) -> bool:
        with self._lock:
            if self._leases.pop(lease, None) is not None:
                self._held[key] -= 1
            return True


def quotas(settings: Settings) -> Quotas:
    """This process's counter for `settings` (one per store and limits)."""
    return _quotas(settings.resolved_limits_url, TokenLimits.of(settings))


@lru_cache
def _quotas(url: str, limits: TokenLimits) -> Quotas:
    made = Quotas(url, limits)
    if not made.shared:
        log.warning("per-token limits are counted per API process (limits_url %s)", url)
    return made
