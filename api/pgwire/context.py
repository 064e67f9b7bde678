"""What every session of the Postgres endpoint shares: settings, the query engine (its
pool of query processes), the endpoint's query slots, the audit trail, per-token limits,
and the principal each connection authenticated as."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from weakref import WeakKeyDictionary

from pg_mimic.stream import PgStream

from api.audit import AuditLog
from api.query.engine import QueryBusy, QueryEngine
from api.quotas import Quotas
from lakehouse.auth.grants import Principal
from lakehouse.settings import Settings


class QuerySlots:
    """Admission to the query processes, awaited in the event loop, first come first
    served: a connection waiting for a slot holds no thread (threads wait on query
    processes, and a pool of them all waiting for a slot would leave none to finish the
    queries that hold the slots). Not asyncio.Semaphore: Python 3.11's loses wake-ups
    when waiters time out, and queries then wait out sql_queue_seconds with slots free."""

    def __init__(self, settings: Settings, size: int) -> None:
        self.settings = settings
        self.size = size
        self._free = size
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._loop = asyncio.get_running_loop()

    async def take(self) -> Callable[[], None]:
        """A slot (QueryBusy after sql_queue_seconds), and how to give it back (once, from
        any thread)."""
        if self._free > 0 and not self._waiting:
            self._free -= 1
        else:
            await self._wait()
        given: list[bool] = []

        def give_back() -> None:
            if not given:
                given.append(True)
                self._loop.call_soon_threadsafe(self._hand_on)

        return give_back

    async def _wait(self) -> None:
        turn: asyncio.Future[None] = self._loop.create_future()
        self._waiting.append(turn)
        try:
            await asyncio.wait_for(asyncio.shield(turn), self.settings.sql_queue_seconds)
        except BaseException as exc:
            if turn.done():  # handed a slot just as the wait ended: hand it on
                self._hand_on()
            else:
                turn.cancel()
                self._waiting.remove(turn)
            if isinstance(exc, TimeoutError):
                raise QueryBusy(
                    f"all {self.size} query slots of this Postgres endpoint worker are busy: "
                    "retry in a moment"
                ) from None
            raise

    def _hand_on(self) -> None:
        """A slot given back: to the first still waiting, else free."""
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self._free += 1


@dataclass
class Context:
    settings: Settings
    engine: QueryEngine
    audit: AuditLog
    quotas: Quotas
    slots: QuerySlots
    # Set by the auth plugin, taken by the session (pg_mimic makes the session before it
    # authenticates, and hands both the connection's stream).
    principals: WeakKeyDictionary[PgStream, Principal] = field(default_factory=WeakKeyDictionary)
