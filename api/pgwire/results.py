"""A running query's answer as Postgres rows, and its record in the audit trail.

The query process writes the answer as Arrow batches (format "pg": the columns as
`api.pgwire.types` maps them), which cross to this process a piece at a time; rows are
made from one batch at a time, so memory stays flat however long the answer. A client
that reads slowly holds its query process no longer than `sql_send_timeout_seconds` per
batch, as a streamed `/v1/sql` answer would.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from pg_mimic import PgError

from api.audit import SQL_CHARS
from api.pgwire.context import Context
from api.pgwire.errors import http_status, pg_error
from api.pgwire.types import Column, columns_of, rows_of
from api.query.engine import Cancel, QueryError, Running
from api.query.formats import NOTICE_KEY
from api.quotas import Lease, leased
from lakehouse.auth.grants import Principal


class Audited:
    """One statement's audit record, appended once: when its answer ends or it fails."""

    def __init__(self, context: Context, principal: Principal, sql: str, client: str) -> None:
        self.context = context
        self.principal = principal
        self.started = time.perf_counter()
        self.record: dict[str, Any] = {
            "request_id": uuid.uuid4().hex,
            "token": principal.name,
            "method": "PG",
            "path": "postgres",
            "datasets": [],
            "sql": sql[:SQL_CHARS],
            "sql_sha256": hashlib.sha256(sql.encode()).hexdigest(),
            "bytes_in": len(sql.encode()),
            "bytes_out": 0,
            "client": client or None,
        }
        self._done = False

    def failed(self, exc: BaseException) -> None:
        self.finish(http_status(exc))

    def finish(self, status: int, rows: int | None = None) -> None:
        if self._done:
            return
        self._done = True
        self.record.update(
            at=datetime.now(UTC),
            status=status,
            rows=rows,
            ms=round((time.perf_counter() - self.started) * 1000, 3),
        )
        self.context.audit.append(self.record)


class _Chunks:
    """A read-only file over a running answer's chunks, for pyarrow's stream reader."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = bytearray()
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._pending) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._pending += chunk
        cut = len(self._pending) if size < 0 else min(size, len(self._pending))
        data = bytes(self._pending[:cut])
        del self._pending[:cut]
        return data

    def readable(self) -> bool:
        return True


class Answer:
    """A started query: its columns now, its rows as the client executes (`take`)."""

    def __init__(
        self,
        context: Context,
        audited: Audited,
        running: Running,
        cancel: Cancel,
        lease: Lease,
        slot: Callable[[], None],
    ) -> None:
        self.context = context
        self.slot = slot  # gives the endpoint's query slot back
        self.audited = audited
        self.running = running
        self.cancel = cancel
        self.lease = lease
        self.columns: list[Column] = columns_of(running.columns)
        self.limit = context.settings.sql_max_rows
        self.count = 0
        self.held = False  # a cursor DECLAREd WITH HOLD outlives its transaction
        self.expired = False  # left unread too long, and closed
        self._idle: asyncio.TimerHandle | None = None
        self.notices: list[str] = []
        self._outcome: dict[str, Any] = {}  # the query process's last word: {"rows": n}
        self._chunks = _Chunks(running.chunks(self._outcome))
        self._reader: pa.RecordBatchStreamReader | None = None
        self._buffer: list[tuple[Any, ...]] = []
        self._at = 0
        self._ended = False
        audited.record["datasets"] = sorted(running.datasets)

    @classmethod
    async def start(
        cls,
        context: Context,
        audited: Audited,
        sql: str,
        as_of: Mapping[str, int],
        params: list[Any],
    ) -> Answer:
        settings = context.settings
        token = audited.record["token"]
        _, lease_seconds = leased("POST", "/v1/sql", settings)
        lease = await asyncio.to_thread(context.quotas.admit, token, "queries", lease_seconds)
        try:
            slot = await context.slots.take()
        except BaseException:
            lease.release()
            raise
        cancel = Cancel()
        try:
            running = await asyncio.to_thread(
                context.engine.start,
                sql,
                as_of,
                "pg",
                settings.sql_max_rows + 1,  # one more: a cut answer is told, not silent
                reader=audited.principal,
                params=params,
                cancel=cancel,
                session_pins=True,  # SET lakehouse.as_of: each statement reads what it reads
            )
        except BaseException:
            cancel.fire()  # a cancelled wait: stop the query it was waiting for
            lease.release()
            slot()
            raise
        answer = cls(context, audited, running, cancel, lease, slot)
        answer._arm()
        return answer

    def _arm(self) -> None:
        """An answer nobody reads for `sql_send_timeout_seconds` (a client that stopped
        reading, a cursor or portal left open) is closed: its query process and slot go."""
        if self._idle is not None:
            self._idle.cancel()
        if not self._ended:
            seconds = self.context.settings.sql_send_timeout_seconds
            self._idle = asyncio.get_running_loop().call_later(seconds, self._expire)

    def _expire(self) -> None:
        if not self._ended:
            self.expired = True
            asyncio.get_running_loop().run_in_executor(None, self.close, 408)

    async def take(self, most: int) -> tuple[list[tuple[Any, ...]], bool]:
        """Up to `most` rows (all, if 0); True if it stopped at `most` (more may follow)."""
        if self._idle is not None:
            self._idle.cancel()
        if self.expired:
            raise PgError(
                "57014",
                "the answer was left unread for longer than LAKEHOUSE_SQL_SEND_TIMEOUT_SECONDS "
                f"({self.context.settings.sql_send_timeout_seconds:g} s) and was closed: read "
                "a cursor's rows as they come, or run the query again",
            )
        try:
            return await self._take(most)
        finally:
            self._arm()

    async def _take(self, most: int) -> tuple[list[tuple[Any, ...]], bool]:
        rows: list[tuple[Any, ...]] = []
        try:
            while most <= 0 or len(rows) < most:
                if self._at >= len(self._buffer):
                    if self._ended:
                        return rows, False
                    self._buffer, self._at = await asyncio.to_thread(self._next_rows), 0
                    continue
                room = len(self._buffer) - self._at
                if most > 0:
                    room = min(room, most - len(rows))
                rows.extend(self._buffer[self._at : self._at + room])
                self._at += room
        except asyncio.CancelledError:
            self.cancel.fire()  # Ctrl-C: the query process goes, its slot with it
            await asyncio.to_thread(self.close, 499)
            raise
        return rows, True

    def _next_rows(self) -> list[tuple[Any, ...]]:
        """The next batch's rows (in a worker thread: it waits for the query process)."""
        try:
            if self._reader is None:
                self._reader = pa.ipc.open_stream(pa.PythonFile(self._chunks, mode="r"))
            batch, metadata = self._reader.read_next_batch_with_custom_metadata()
        except StopIteration:
            self._chunks.read()  # past the stream's end marker: the query process's end
            if "rows" not in self._outcome:  # the process stopped between two batches
                self.close(500)
                stopped = QueryError("the answer ended early: its query process stopped")
                raise pg_error(stopped) from None
            self._end()
            return []
        except (pa.ArrowException, QueryError) as exc:
            self.close(500)
            raise pg_error(QueryError(f"the answer ended early: {exc}")) from exc
        if metadata is not None and NOTICE_KEY.encode() in metadata:
            self._noticed(json.loads(metadata[NOTICE_KEY.encode()]))
        rows = list(rows_of(batch, self.columns))
        if self.count + len(rows) > self.limit:
            rows = rows[: self.limit - self.count]
            self.notices.append(
                f"the answer was cut at {self.limit:,} rows (LAKEHOUSE_SQL_MAX_ROWS): "
                "aggregate or filter more, or page with LIMIT and OFFSET"
            )
            self.count += len(rows)
            self._end()
            return rows
        self.count += len(rows)
        return rows

    def _noticed(self, notice: dict[str, Any]) -> None:
        if notice.get("error"):
            self.close(400)
            raise pg_error(QueryError(notice.get("message", "the query failed")))
        self.notices.append(
            f"the answer was cut at {self.context.settings.sql_max_export_bytes:,} bytes "
            "(LAKEHOUSE_SQL_MAX_EXPORT_BYTES): aggregate or filter more"
        )

    def _end(self) -> None:
        self._ended = True
        self.close()

    def close(self, status: int = 200) -> None:
        """Stop the query (if it still runs), give its slot and lease back, audit it (with
        `status`, as `/v1/sql` would have answered)."""
        self._ended = True
        self.running.close()
        self.slot()
        self.lease.release()
        self.audited.finish(status, self.count)
