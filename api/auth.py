"""Who is asking: every /v1 request names a token (`Authorization: Bearer lh_…`), checked
against the token store that every API process shares.

What the store said about a token is trusted for `token_cache_seconds` (at most 5), so a
query pays a dictionary lookup, not a database read, and a revoke reaches every API
process within that time. Unknown tokens are remembered too (an attacker's guesses cost no
database reads), in a bounded map.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from api.deps import SettingsDep
from lakehouse.auth.grants import Principal
from lakehouse.auth.tokens import Lookup, TokenStore, token_db_url
from lakehouse.errors import Unauthenticated
from lakehouse.settings import Settings

CACHED_TOKENS = 10_000
HOW_TO_GET_ONE = (
    "send `Authorization: Bearer <token>`: an admin creates tokens with `lakehouse token "
    "create`, and `lakehouse up` writes the first admin token to <state_dir>/admin-token"
)

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="token",
    description="An API token (`lakehouse token create NAME --role reader|writer|admin`).",
)


@dataclass(frozen=True)
class _Seen:
    lookup: Lookup
    at: float  # monotonic


class TokenCache:
    def __init__(self, store: TokenStore, seconds: float) -> None:
        self.store = store
        self.seconds = seconds
        self._seen: OrderedDict[str, _Seen] = OrderedDict()
        self._lock = threading.Lock()

    def cached(self, secret: str) -> Lookup | None:
        """What the store said about `secret` less than `seconds` ago, if anything."""
        key = _key(secret)
        with self._lock:
            seen = self._seen.get(key)
        if seen is None or time.monotonic() - seen.at >= self.seconds:
            return None
        return seen.lookup

    def lookup(self, secret: str) -> Lookup:
        """Ask the store (a database read), and remember the answer."""
        lookup = self.store.lookup(secret)
        with self._lock:
            self._seen[_key(secret)] = _Seen(lookup, time.monotonic())
            self._seen.move_to_end(_key(secret))
            while len(self._seen) > CACHED_TOKENS:
                self._seen.popitem(last=False)
        if lookup.token is not None:
            self.store.touch(secret)
        return lookup


def _key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@lru_cache
def _cache(url: str, seconds: float) -> TokenCache:
    return TokenCache(TokenStore(url), seconds)


def token_cache(settings: Settings) -> TokenCache:
    return _cache(token_db_url(settings), settings.token_cache_seconds)


async def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    settings: SettingsDep,
) -> Principal:
    """The request's principal, or 401 saying what to send."""
    if credentials is None:
        raise Unauthenticated(f"no token: {HOW_TO_GET_ONE}")
    cache = token_cache(settings)
    lookup = cache.cached(credentials.credentials)
    if lookup is None:
        lookup = await run_in_threadpool(cache.lookup, credentials.credentials)
    token = lookup.token
    if token is None:
        raise Unauthenticated(f"{lookup.refusal}: {HOW_TO_GET_ONE}")
    if token.expired(time.time()):  # since the store was asked
        raise Unauthenticated(f"token {token.name!r} has expired: {HOW_TO_GET_ONE}")
    principal = token.principal()
    audit = request.scope.get("state", {}).get("audit")
    if audit is not None:
        audit["token"] = principal.name
    return principal


PrincipalDep = Annotated[Principal, Depends(authenticate)]
