"""What confines a query process: a database that reads the datasets and nothing else, a
cap on its address space, and a watchdog that interrupts a query past its time."""

from __future__ import annotations

import logging
import math
import os
import resource
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
from pydantic import BaseModel

from lakehouse.duck import attach_s3, connection_config, sql_string
from lakehouse.settings import S3Config, Settings
from lakehouse.store.layout import datasets_url

log = logging.getLogger(__name__)


class SandboxConfig(BaseModel, frozen=True):
    """All a query process is told: the read-only key and its limits. Never the settings
    (they hold the read-write key, the broker's and the database's passwords)."""

    s3: S3Config  # with the read-only query key
    readable: str  # the URL below which it may read: the datasets
    memory_limit: str
    threads: int
    spill_dir: Path
    spill_mb: int
    headroom_mb: int  # address space beyond its size after start-up

    @classmethod
    def of(cls, settings: Settings) -> SandboxConfig:
        return cls(
            s3=settings.query_s3(),
            readable=datasets_url(settings.s3_bucket),
            memory_limit=settings.query_memory.duckdb_limit,
            threads=settings.duckdb_threads,
            spill_dir=(settings.state_dir / "query-spill").absolute(),
            spill_mb=settings.sql_max_spill_mb,
            headroom_mb=settings.query_memory.process_mb,
        )


def open_database(config: SandboxConfig) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that reads below the URL `config.readable` and nothing else.

    Plain `duckdb.connect` rather than dagster-duckdb's resource: this process must not
    import Dagster (it would triple its size, times every query process)."""
    options = connection_config(config.memory_limit, config.threads)
    # No Python variable of this process is ever a table.
    options["python_enable_replacements"] = False
    # Spill files of its own (DuckDB names them alike in every process), bounded in size.
    spill = config.spill_dir / str(os.getpid())
    shutil.rmtree(spill, ignore_errors=True)  # left by a killed process of the same pid
    spill.mkdir(parents=True)
    options["temp_directory"] = str(spill)
    options["max_temp_directory_size"] = f"{config.spill_mb}MiB"
    con = duckdb.connect(":memory:", config=options)
    attach_s3(con, config.s3)
    con.execute(f"SET allowed_directories = [{sql_string(config.readable)}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
_statm: list[int] = []  # this process's /proc/self/statm, kept open (read once per query)


def resident_bytes() -> int:
    try:
        if not _statm:
            _statm.append(os.open("/proc/self/statm", os.O_RDONLY))
        return int(os.pread(_statm[0], 128, 0).split()[1]) * _PAGE_BYTES
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def limit_address_space(headroom_mb: int) -> int:
    """Cap this process's address space at its size now plus `headroom_mb`; the cap."""
    try:
        with open("/proc/self/statm") as statm:
            size = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        log.warning("no /proc/self/statm: query processes run without a memory cap")
        return 0
    cap = size + headroom_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    return cap


# DuckDB sometimes reports a query that failed in one of its threads as interrupted,
# without the error itself (a race in its streaming results, seen about once in 400 runs
# on a loaded machine): only the watchdog's own interrupt is a timeout.
LOST_ERROR = (
    "the query failed, but DuckDB reported only {text!r}, not why (it happens when a query "
    "fails while running in parallel): run it again to see its error"
)


def classify(exc: BaseException, *, timed_out: bool) -> tuple[str, str]:
    """(kind, message) of a failed query: timeout, memory or query. `timed_out`: the
    watchdog interrupted it."""
    text = str(exc)
    if isinstance(exc, duckdb.InterruptException) or "INTERRUPT Error" in text:
        return ("timeout", text) if timed_out else ("query", LOST_ERROR.format(text=text))
    if isinstance(exc, duckdb.OutOfMemoryException | MemoryError) or "Out of Memory" in text:
        return "memory", text
    return "query", text


class Watchdog:
    """Interrupts the query when it runs too long: until the first chunk of the answer is
    out as a whole, then per batch fetched (a slow reader is not the query's fault).

    One thread for the process's life: starting a timer thread per query cost more than
    a small query itself. Nor is it woken per query: a deadline moved later is found when
    the thread wakes at the earlier one, so it sleeps through a stream of short queries,
    woken only for a deadline earlier than the one it waits for. An interrupt that lands
    just after a query ended is harmless: DuckDB forgets it when the next query starts."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.seconds = 0.0
        self.streaming = False
        self.fired = False  # it interrupted the current query
        self._deadline: float | None = None
        self._wakes_at = math.inf  # when the thread wakes by itself (never: it is idle)
        self._cond = threading.Condition()
        threading.Thread(target=self._watch, name="watchdog", daemon=True).start()

    def _watch(self) -> None:
        with self._cond:
            while True:
                if self._deadline is None:
                    self._wakes_at = math.inf
                    self._cond.wait()
                    continue
                left = self._deadline - time.monotonic()
                if left > 0:
                    self._wakes_at = self._deadline
                    self._cond.wait(left)
                    continue
                self._deadline = None
                self.fired = True
                self.con.interrupt()

    def start(self, seconds: float) -> None:
        """A new query: the whole-answer limit until `first_chunk_out`."""
        self.seconds, self.streaming, self.fired = seconds, False, False
        self.arm()

    def arm(self) -> None:
        with self._cond:
            self._deadline = time.monotonic() + self.seconds
            if self._deadline < self._wakes_at:  # else it wakes first and finds this one
                self._wakes_at = self._deadline
                self._cond.notify()

    def disarm(self) -> None:
        with self._cond:
            self._deadline = None

    def first_chunk_out(self) -> None:
        self.disarm()
        self.streaming = True

    @contextmanager
    def fetching(self) -> Iterator[None]:
        if self.streaming:
            self.arm()
        try:
            yield
        finally:
            if self.streaming:
                self.disarm()
