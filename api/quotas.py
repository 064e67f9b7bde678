"""Per-token limits, one for all API processes: requests per second, uploads and queries at
once, and bytes uploaded per hour. Past one, the answer is 429 with `Retry-After`.

The counts live in one store every API process reaches (`limits_url`; by default the
broker's Redis), so several replicas enforce one limit. A request is admitted by one script
in Redis (`ADMIT`): its count in the token's one-second window, and for an upload or a query
a lease in the token's Redis sorted set (member: the request, score: when it lapses), so a
process that dies holding leases frees them when they lapse. Bytes per hour are counted by
the `limits` library (a sliding window). A store of `memory://` keeps the counts per
process (said at start-up).

If the store cannot be reached, requests go on unlimited and the API logs it (at most once a
minute) and counts it in `lakehouse_limits_store_errors_total`: limits guard the service,
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
from typing import Annotated, TypeVar

import redis
from fastapi import Depends, Request
from limits import RateLimitItemPerHour
from limits.storage import storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter

from api import metrics
from api.auth import PrincipalDep
from api.deps import SettingsDep
from lakehouse.errors import Throttled
from lakehouse.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

LOG_EVERY_SECONDS = 60
STORE_TIMEOUT_SECONDS = 0.25  # a slow store costs a request this much at most
# A token's upload lease left by an API process that died lapses after this long.
UPLOAD_LEASE_SECONDS = 3600


def leased(method: str, path: str, settings: Settings) -> tuple[str | None, float]:
    """The lease a request holds while it runs (an upload landing, a query), and when it
    lapses if the API process holding it dies; (None, 0) for every other request."""
    if method == "POST" and path == "/v1/ingest":
        return "uploads", UPLOAD_LEASE_SECONDS
    if method == "POST" and path == "/v1/sql":  # its wait, its run, and sending its answer
        return "queries", settings.sql_queue_seconds + settings.sql_timeout_seconds + 300
    return None, 0


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
        self._volume = SlidingWindowCounterRateLimiter(storage)
        self._counts: _Counts = _RedisCounts(url) if self.shared else _LocalCounts()
        self.store_errors = 0
        self._logged_at = 0.0

    def admit(self, token: str, kind: str | None = None, lease_seconds: float = 0) -> Lease:
        """Count one request of `token`; for `kind` ("uploads", "queries") also hold one of
        its leases, given back by `Lease.release` (or lapsing after `lease_seconds`). 429
        past the token's requests per second or its `kind` at once."""
        rate = self.limits.requests_per_second
        most = {"uploads": self.limits.uploads_at_once, "queries": self.limits.queries_at_once}
        ask = None
        if kind and most[kind]:
            ask = _Ask(f"{kind}:{token}", uuid.uuid4().hex, most[kind], lease_seconds)
        if not rate and ask is None:
            return Lease(lambda: None)
        within_rate, leased = self._guarded(
            lambda: self._counts.admit(token, rate, ask), (True, True)
        )
        lease = Lease(self._giving_back(ask))
        if not within_rate:
            lease.release()
            metrics.REFUSED.labels("token_requests_per_second").inc()
            raise Throttled(
                f"token {token!r} sent more than {rate} requests in a second "
                "(LAKEHOUSE_TOKEN_REQUESTS_PER_SECOND): slow down and retry after 1 s",
                1,
            )
        if ask is not None and not leased:
            metrics.REFUSED.labels(f"token_{kind}_at_once").inc()
            raise Throttled(
                f"token {token!r} already has {ask.most} {kind} in flight, the most it may "
                f"(LAKEHOUSE_TOKEN_{str(kind).upper()}_AT_ONCE): retry when one has finished",
                2,
            )
        return lease

    def upload_bytes(self, token: str, size: int) -> None:
        """Count `size` more bytes uploaded by `token` within the hour."""
        per_hour = self.limits.upload_bytes_per_hour
        if not per_hour:
            return
        item = RateLimitItemPerHour(per_hour)
        if self._guarded(lambda: self._volume.hit(item, "bytes", token, cost=size), True):
            return
        reset_at = self._guarded(
            lambda: self._volume.get_window_stats(item, "bytes", token).reset_time,
            time.time() + 3600,
        )
        metrics.REFUSED.labels("token_upload_bytes_per_hour").inc()
        raise Throttled(
            f"token {token!r} uploaded more than {per_hour:,} bytes in the last hour "
            "(LAKEHOUSE_TOKEN_UPLOAD_BYTES_PER_HOUR): nothing of this upload was stored; "
            "send it again later",
            math.ceil(reset_at - time.time()),
        )

    def _giving_back(self, ask: _Ask | None) -> Callable[[], None]:
        if ask is None:
            return lambda: None
        return lambda: self._guarded(lambda: self._counts.give_back(ask), None)

    def _guarded(self, call: Callable[[], T], allowed: T) -> T:
        """`call()`, or `allowed` when the store cannot be reached."""
        try:
            return call()
        except (redis.RedisError, OSError) as exc:
            self.store_errors += 1
            metrics.LIMITS_STORE_ERRORS.inc()
            if time.monotonic() - self._logged_at >= LOG_EVERY_SECONDS:
                self._logged_at = time.monotonic()
                log.error("the limits store is unreachable, requests go unlimited: %s", exc)
            return allowed


class Lease:
    """A held lease; `release` gives it back (once, whatever number of calls)."""

    def __init__(self, give_back: Callable[[], object]) -> None:
        self._give_back: Callable[[], object] | None = give_back

    def release(self) -> None:
        give_back, self._give_back = self._give_back, None
        if give_back is not None:
            give_back()


@dataclass(frozen=True)
class _Ask:
    """A lease asked for: one of the `most` of `key`, lapsing after `seconds`."""

    key: str
    id: str
    most: int
    seconds: float


class _Counts:
    def admit(self, token: str, rate: int, ask: _Ask | None) -> tuple[bool, bool]:
        """(within the token's rate, the lease held); a rate of 0 is no limit."""
        raise NotImplementedError

    def give_back(self, ask: _Ask) -> None:
        raise NotImplementedError


# One admission in one atomic step (a script: one command, not a round trip of several):
# the leases this process gave back are removed, the request is counted in its token's
# one-second window, and past the rate it is refused; otherwise its lease is taken only if
# fewer than `most` are held (lapsed ones dropped first), so a refused request holds none.
# KEYS: the rate window ("" for no rate), the token's leases ("" for none), then the set of
# each lease given back. ARGV: rate, the lease's id, seconds and most, then each given-back
# lease's id. Answers {the window's count, 1 if the lease is held}.
ADMIT = """
local now = redis.call('TIME')
now = tonumber(now[1]) + tonumber(now[2]) / 1e6
for i = 3, #KEYS do
  redis.call('ZREM', KEYS[i], ARGV[i + 2])
end
local count = 0
if KEYS[1] ~= '' then
  count = redis.call('INCR', KEYS[1])
  redis.call('EXPIRE', KEYS[1], 2)
  if count > tonumber(ARGV[1]) then
    return {count, 0}
  end
end
if KEYS[2] == '' then
  return {count, 1}
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then
  return {count, 0}
end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[2])
redis.call('EXPIRE', KEYS[2], math.ceil(tonumber(ARGV[3])) + 1)
return {count, 1}
"""


class _RedisCounts(_Counts):
    """Counts in Redis. A lease is given back off the request's path (the event loop does
    not wait a round trip for it, once the answer is sent): by a thread of its own at once,
    or by this process's next admission, in its round trip, whichever comes first. An
    admission while the thread's removal is under way removes those leases too, so one
    client's back-to-back queries never meet their own lease."""

    def __init__(self, url: str) -> None:
        self.redis = redis.Redis.from_url(
            url, socket_timeout=STORE_TIMEOUT_SECONDS, socket_connect_timeout=STORE_TIMEOUT_SECONDS
        )
        self._admit = self.redis.register_script(ADMIT)  # EVALSHA, loaded when missing
        self._returned: list[_Ask] = []  # leases given back, not yet removed from Redis
        self._removing: list[_Ask] = []  # those the thread is removing right now
        self._lock = threading.Lock()
        self._wake = threading.Event()
        threading.Thread(target=self._give_back_returned, name="lease-returns", daemon=True).start()

    def admit(self, token: str, rate: int, ask: _Ask | None) -> tuple[bool, bool]:
        returned = self._take_returned()  # first: this process's leases given back so far
        with self._lock:  # and those the thread is removing: they may still be there
            removing = list(self._removing)
        gone = returned + removing  # removing one twice is harmless
        keys = [
            f"LAKEHOUSE/rate/{token}/{int(time.time())}" if rate else "",
            f"LAKEHOUSE/leases/{ask.key}" if ask is not None else "",
            *(f"LAKEHOUSE/leases/{done.key}" for done in gone),
        ]
        lease: list[str | float] = [ask.id, ask.seconds, ask.most] if ask else ["", 0, 0]
        try:
            count, leased = self._admit(keys, [rate, *lease, *(done.id for done in gone)])
        except BaseException:
            self._return(returned)  # the thread tries them again
            raise
        return int(count) <= rate or not rate, bool(leased)

    def give_back(self, ask: _Ask) -> None:
        self._return([ask])

    def _return(self, asks: list[_Ask]) -> None:
        with self._lock:
            self._returned.extend(asks)
        self._wake.set()

    def _take_returned(self) -> list[_Ask]:
        with self._lock:
            returned, self._returned = self._returned, []
        return returned

    def _remove(self, asks: list[_Ask]) -> None:
        with self.redis.pipeline(transaction=False) as pipe:
            for ask in asks:
                pipe.zrem(f"LAKEHOUSE/leases/{ask.key}", ask.id)
            pipe.execute()

    def _give_back_returned(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:  # an admission meanwhile removes them too (see `admit`)
                returned, self._returned = self._returned, []
                self._removing = returned
            if not returned:
                continue
            try:
                self._remove(returned)
            except (redis.RedisError, OSError) as exc:
                # A lease not given back lapses at its time; the outage itself is
                # logged by the admissions that meet it (`Quotas._guarded`).
                metrics.LIMITS_STORE_ERRORS.inc()
                log.debug("could not give back %d leases: %s", len(returned), exc)
            finally:
                with self._lock:
                    self._removing = []


class _LocalCounts(_Counts):
    def __init__(self) -> None:
        self._requests: Counter[tuple[str, int]] = Counter()
        self._held: Counter[str] = Counter()
        self._leases: set[str] = set()
        self._lock = threading.Lock()

    def admit(self, token: str, rate: int, ask: _Ask | None) -> tuple[bool, bool]:
        second = int(time.time())
        with self._lock:
            if rate:
                for old in [k for k in self._requests if k[1] < second]:
                    del self._requests[old]
                self._requests[token, second] += 1
            leased = ask is None or self._held[ask.key] < ask.most
            if ask is not None and leased:
                self._held[ask.key] += 1
                self._leases.add(ask.id)
            return not rate or self._requests[token, second] <= rate, leased

    def give_back(self, ask: _Ask) -> None:
        with self._lock:
            if ask.id in self._leases:
                self._leases.discard(ask.id)
                self._held[ask.key] -= 1


def quotas(settings: Settings) -> Quotas:
    """This process's counter for `settings` (one per store and limits)."""
    return _quotas(settings.resolved_limits_url, TokenLimits.of(settings))


@lru_cache
def _quotas(url: str, limits: TokenLimits) -> Quotas:
    made = Quotas(url, limits)
    if not made.shared:
        log.warning("per-token limits are counted per API process (limits_url %s)", url)
    return made


async def admitted(request: Request, principal: PrincipalDep, settings: SettingsDep) -> Lease:
    """Every /v1 request's admission under its token's limits (429 past one). Its lease (an
    upload's, a query's) is given back by the handler, or at the latest once the answer is
    sent (api/limits.py)."""
    kind, lease_seconds = leased(request.method, request.url.path, settings)
    lease = quotas(settings).admit(principal.name, kind, lease_seconds)
    request.state.lease = lease
    return lease


AdmittedDep = Annotated[Lease, Depends(admitted)]
