"""The audit trail: one record per /v1 request (who, what, the outcome, when, from where),
appended to the object store in batches, and queryable by admins as the `_audit` view.

A request never waits for its record: records gather in memory and an API process writes
them as one Parquet object every `audit_flush_seconds`, or as soon as
`audit_batch_records` wait. So a crash of an API process loses at most its last batch
(those seconds, at most that many records), and a store that is down costs records, never
requests: a failed write is logged and its records dropped.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import socket
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import logs, metrics
from lakehouse.store import ObjectStore, layout

log = logging.getLogger(__name__)

SQL_CHARS = 4096  # the text kept of a statement; its digest is over the whole of it
SCHEMA = pa.schema(
    [
        ("at", pa.timestamp("us", tz="UTC")),
        ("request_id", pa.string()),
        ("token", pa.string()),
        ("method", pa.string()),
        ("path", pa.string()),
        ("datasets", pa.list_(pa.string())),
        ("mode", pa.string()),
        ("sql", pa.string()),
        ("sql_sha256", pa.string()),
        ("status", pa.int32()),
        ("rows", pa.int64()),
        ("bytes_in", pa.int64()),
        ("bytes_out", pa.int64()),
        ("ms", pa.float64()),
        ("client", pa.string()),
    ]
)


def parquet_bytes(records: list[dict[str, Any]]) -> bytes:
    out = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(records, schema=SCHEMA), out)
    return out.getvalue()


class AuditLog:
    """This process's unwritten records, and the thread that writes them."""

    def __init__(self, store: ObjectStore, flush_seconds: float, batch_records: int) -> None:
        self.store = store
        self.flush_seconds = flush_seconds
        self.batch_records = batch_records
        self.writer = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.written = 0  # records written, for tests and the bench
        self._records: list[dict[str, Any]] = []
        self._seq = 0
        self._store_ready = False  # the bucket seen and the genesis object there
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="audit", daemon=True)
        self._thread.start()

    def append(self, record: dict[str, Any]) -> None:
        with self._wake:
            self._records.append(record)
            if len(self._records) >= self.batch_records:
                self._wake.notify()

    def flush(self) -> None:
        """Write what is waiting now (on this thread)."""
        with self._wake:
            records, self._records = self._records, []
        for start in range(0, len(records), self.batch_records):
            self._write(records[start : start + self.batch_records])

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout=30)
        self.flush()

    def _run(self) -> None:
        try:
            self._ensure_store()
        except Exception:  # the trail must never stop the API; each write tries again
            log.exception("the audit trail cannot reach its bucket yet")
        while True:
            with self._wake:
                if not self._closed and len(self._records) < self.batch_records:
                    self._wake.wait(self.flush_seconds)
                if self._closed:
                    return
            self.flush()

    def _ensure_store(self) -> None:
        """Write only into a bucket that exists: some S3 servers (SeaweedFS among them) make
        a missing bucket at the first write, and a mistyped one must stay missing for
        /health to say so. The empty genesis object gives the `_audit` view a file to read
        before any record is written."""
        if self._store_ready:
            return
        self.store.check()
        if not self.store.exists(layout.AUDIT_GENESIS):
            self.store.put_bytes(layout.AUDIT_GENESIS, parquet_bytes([]))
        self._store_ready = True

    def _write(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        self._seq += 1
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        key = layout.audit_key(day, self.writer, self._seq)
        try:
            self._ensure_store()
            self.store.put_bytes(key, parquet_bytes(records))
            self.written += len(records)
        except Exception:  # a lost batch is logged, never a failed request
            log.exception("lost %d audit records: could not write %s", len(records), key)


class AuditMiddleware:
    """Records every /v1 request once it is answered: the handlers add who and what to
    `request.state.audit`, this adds the outcome. Every answer carries `X-Request-ID`.
    Every request, /v1 or not, is counted in the metrics (route, status, latency)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = uuid.uuid4().hex
        logs.REQUEST_ID.set(request_id)  # this request's task, and the threads it starts
        record: dict[str, Any] = {"request_id": request_id, "bytes_in": 0, "bytes_out": 0}
        scope.setdefault("state", {})["audit"] = record
        written = False

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                record["bytes_in"] += len(message.get("body", b""))
            return message

        async def recording_send(message: Message) -> None:
            nonlocal written
            if message["type"] == "http.response.start":
                record["status"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            elif message["type"] == "http.response.body":
                record["bytes_out"] += len(message.get("body", b""))
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                written = True
                self._append(scope, record, started)

        try:
            await self.app(scope, counting_receive, recording_send)
        finally:
            if not written:  # the client went away, or the app failed before answering
                record.setdefault("status", 499)
                self._append(scope, record, started)

    def _append(self, scope: Scope, record: dict[str, Any], started: float) -> None:
        seconds = time.perf_counter() - started
        metrics.observe(scope, record["status"], seconds)
        client = scope.get("client")
        sql = record.pop("sql_text", None)
        full = {
            **record,
            "at": datetime.now(UTC),
            "method": scope["method"],
            "path": scope["path"],
            "sql": sql[:SQL_CHARS] if sql else None,
            "sql_sha256": hashlib.sha256(sql.encode()).hexdigest() if sql else None,
            "ms": round(seconds * 1000, 3),
            "client": f"{client[0]}:{client[1]}" if client else None,
        }
        logs.access({k: v for k, v in full.items() if k not in ("at", "sql")})
        audit: AuditLog | None = getattr(scope["app"].state, "audit", None)
        if audit is not None and scope["path"].startswith("/v1/"):
            audit.append(full)
