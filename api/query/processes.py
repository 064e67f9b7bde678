"""The API's side of the query processes (`api.query.process`): start, lend, recycle, kill.

Each API process keeps `sql_max_concurrent` query processes, started with its query
engine (when the app starts) and kept warm; a query borrows one for as long as its answer
streams. That is the admission control of /v1/sql: a query that finds none free within
`sql_queue_seconds` is refused with 503 (`QueryBusy`). A process is replaced when it
dies, when it stops answering (killed), when its query ran out of memory, or when a query
left it much larger than it started (an allocator keeps what it once held).

Memory, per API process: its own size, plus for each query process its size after
start-up (~160 MiB resident, much of it shared libraries) and at most
`sql_process_memory_mb` more (docs/API.md, "The bound").
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import socket
import subprocess
import sys
import threading
from collections import deque
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from api import metrics
from api.query.process import Job
from api.query.sandbox import SandboxConfig
from lakehouse.errors import Unavailable
from lakehouse.settings import Settings

log = logging.getLogger(__name__)

START_TIMEOUT_SECONDS = 60
# A process that grew this much past its size after start-up is replaced after its query.
RECYCLE_GROWTH_BYTES = 256 * 1024 * 1024
# The query process interrupts itself at the time limit; the API kills it only if it has
# not answered this long after.
KILL_GRACE_SECONDS = 10
_SOURCE_ROOT = str(Path(__file__).resolve().parents[2])  # the project, for the child
INHERITED = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR", "HOME")


class QueryBusy(Unavailable):
    """Every query process of this API process is taken: try again shortly."""

    retry_after = 1


class ProcessFailed(RuntimeError):
    """The query process died or stopped answering; it has been killed."""


class QueryProcess:
    def __init__(self, settings: Settings) -> None:
        ours, theirs = socket.socketpair()
        # Only what Python needs to start: none of the API's environment (it may hold the
        # read-write key, the broker's and the database's passwords).
        env = {name: os.environ[name] for name in INHERITED if name in os.environ}
        # The same code as this process, wherever it was imported from.
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_SOURCE_ROOT, os.environ.get("PYTHONPATH", "")) if p
        )
        with theirs:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "api.query.process", str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                env=env,
            )
        self.conn = Connection(ours.detach())
        self._closing = threading.Lock()
        self._inbox: deque[tuple[Any, ...]] = deque()
        self.rss = self.started_rss = 0
        # Over the socket, not argv or the environment (others may read those): the
        # read-only key and the limits, nothing else.
        self.send({"sandbox": SandboxConfig.of(settings).model_dump_json()})

    def ready(self) -> QueryProcess:
        """Wait until it has started (ProcessFailed if it does not)."""
        _, info = self.receive(START_TIMEOUT_SECONDS)
        self.started_rss = info["rss"]
        return self

    @property
    def pid(self) -> int:
        return self.popen.pid

    def send(self, job: Job | dict[str, str]) -> None:
        try:
            self.conn.send(job)
        except OSError as exc:
            self.kill()
            raise ProcessFailed(f"query process {self.pid} is gone: {exc}") from exc

    def receive(self, timeout: float) -> tuple[Any, ...]:
        """The next message; ProcessFailed (after killing it) if none comes in time."""
        try:
            if not self._inbox:
                if not self.conn.poll(timeout):
                    self.kill()
                    raise ProcessFailed(f"query process {self.pid} did not answer in {timeout:g} s")
                envelope = self.conn.recv()
                self._inbox.extend(envelope[1] if envelope[0] == "batch" else [envelope])
            message: tuple[Any, ...] = self._inbox.popleft()
        except (EOFError, OSError) as exc:
            self.kill()
            raise ProcessFailed(f"query process {self.pid} stopped: {exc!r}") from exc
        if message[0] in ("end", "error", "ready"):
            self.rss = message[-1].get("rss", self.rss)
        return message

    def oversized(self) -> bool:
        return self.rss - self.started_rss > RECYCLE_GROWTH_BYTES

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self, close: bool = True) -> None:
        """Kill the process; and close our end of the socket unless another thread may be
        reading it (it then sees the end of the stream and closes it itself)."""
        with contextlib.suppress(ProcessLookupError):
            self.popen.kill()
        self.popen.wait()
        if close:
            with self._closing:
                if not self.conn.closed:
                    self.conn.close()


class QueryPool:
    """At most `size` query processes (an API process: `sql_max_concurrent`), lent one
    query at a time."""

    def __init__(self, settings: Settings, size: int | None = None) -> None:
        self.settings = settings
        self.size = size or settings.sql_max_concurrent
        # A slot holds a warm process, or None until one is needed. LIFO: the warmest first.
        self._slots: queue.LifoQueue[QueryProcess | None] = queue.LifoQueue()
        self._all: set[QueryProcess] = set()
        self._lock = threading.Lock()
        self._closed = False
        # Started together (about a second on a busy machine), so that no query waits for
        # a process to start unless one had to be replaced.
        starting = [QueryProcess(settings) for _ in range(self.size)]
        for process in starting:
            try:
                self._all.add(process.ready())
                metrics.QUERY_PROCESSES.inc()
                self._slots.put(process)
            except ProcessFailed:
                log.exception("a query process did not start; the next query will retry")
                self._slots.put(None)

    def acquire(self) -> QueryProcess:
        try:
            process = self._slots.get(timeout=self.settings.sql_queue_seconds)
        except queue.Empty as exc:
            metrics.REFUSED.labels("query_slots").inc()
            raise QueryBusy(
                f"all {self.size} query slots of this process are busy: retry in a moment"
            ) from exc
        if process is not None and process.alive():
            return process
        try:
            process = QueryProcess(self.settings).ready()
        except (OSError, ProcessFailed):
            self._slots.put(None)
            raise
        with self._lock:
            self._all.add(process)
        metrics.QUERY_PROCESSES.inc()
        return process

    def release(self, process: QueryProcess, healthy: bool = True) -> None:
        """Give the slot back; the process too unless it failed, died or grew too large."""
        if not healthy or not process.alive() or process.oversized() or self._closed:
            if process.alive():
                log.info("replacing query process %s (rss %d bytes)", process.pid, process.rss)
            if not self._closed:
                metrics.QUERY_PROCESSES_KILLED.inc()
            process.kill()
            self._forget(process)
            self._slots.put(None)
            return
        self._slots.put(process)

    def pids(self) -> list[int]:
        with self._lock:
            return [p.pid for p in self._all if p.alive()]

    def close(self) -> None:
        self._closed = True
        with self._lock:
            processes = list(self._all)
        for process in processes:
            process.kill(close=False)  # a query still reading it gets ProcessFailed
            self._forget(process)

    def _forget(self, process: QueryProcess) -> None:
        with self._lock:
            if process not in self._all:
                return
            self._all.discard(process)
        metrics.QUERY_PROCESSES.dec()
