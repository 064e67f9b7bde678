"""`lakehouse up`'s signals, driven at every point of the stop sequence with fake processes:
the first signal stops, any later one kills what is left exactly once, and nothing raises
(no `KeyboardInterrupt` can reach click and print "Aborted!")."""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import devstack.stack
from devstack.processes import Interrupts, Process, StartInterrupted
from devstack.stack import Stack
from lakehouse.settings import Settings
from lakehouse_cli import main as cli


class FakePopen:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        assert self.returncode is not None, "waited for a process nothing ended"
        return self.returncode


@dataclass
class Script:
    """Counts the steps of a stop (each signal sent, each look at a process) and sends the
    stack `signals` SIGINTs at step `at`."""

    at: int
    signals: int
    stack: Stack | None = None
    step: int = 0
    alive_then: bool = False  # whether a process was still running when they were sent
    sent: list[tuple[str, int]] = field(default_factory=list)

    def tick(self) -> None:
        if self.step == self.at and self.stack is not None:
            self.alive_then = any(p.popen.returncode is None for p in self.stack.processes)
            for _ in range(self.signals):
                self.stack.interrupts(signal.SIGINT, None)
        self.step += 1


class FakeProcess(Process):
    """Exits a few looks after SIGTERM (a process finishing its work), at once on SIGKILL."""

    def __init__(self, name: str, script: Script) -> None:
        super().__init__(name, FakePopen(len(name)), Path("/nonexistent") / name)  # type: ignore[arg-type]
        self.script = script
        self.looks_left: int | None = None

    def signal_group(self, signum: int) -> None:
        self.script.tick()
        self.script.sent.append((self.name, signum))
        if signum == signal.SIGKILL:
            self.popen.returncode = -9
        elif signum == signal.SIGTERM and self.looks_left is None:
            self.looks_left = 3

    def alive(self) -> bool:
        self.script.tick()
        if self.looks_left is not None and self.popen.returncode is None:
            self.looks_left -= 1
            if self.looks_left <= 0:
                self.popen.returncode = 0
        return self.popen.returncode is None


NAMES = ["s3", "broker", "worker-1", "code-server", "dagster-daemon", "api"]


def stopping_stack(script: Script, monkeypatch: pytest.MonkeyPatch) -> tuple[Stack, list[int]]:
    monkeypatch.setattr(devstack.stack, "STOP_POLL_SECONDS", 0)
    # Every secret given: the stack generates none (it never touches the disk here).
    secrets = {"s3_secret_key": "unit", "s3_query_secret_key": "unit", "broker_password": "unit"}
    stack = Stack(Settings(state_dir=Path("/nonexistent"), **secrets))
    stack.processes = [FakeProcess(name, script) for name in NAMES]
    script.stack = stack
    kills: list[int] = []
    kill = stack.kill

    def counted_kill(processes: list[Process] | None = None) -> None:
        kills.append(len(script.sent))  # how many signals had been sent before it
        kill(processes)

    monkeypatch.setattr(stack, "kill", counted_kill)
    stack.interrupts(signal.SIGINT, None)  # the Ctrl-C that started the stop
    return stack, kills


STEPS = 60  # more than a stop of the six fakes takes


@pytest.mark.parametrize("at", range(STEPS))
@pytest.mark.parametrize("signals", [1, 2])
def test_more_signals_at_any_step_of_the_stop_kill_what_is_left_once_and_never_raise(
    at: int, signals: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = Script(at=at, signals=signals)
    stack, kills = stopping_stack(script, monkeypatch)
    fakes = list(stack.processes)

    stack.stop()

    assert stack.processes == []
    assert all(p.popen.returncode is not None for p in fakes)
    for process in fakes:  # TERM at most once each, newest first
        assert script.sent.count((process.name, signal.SIGTERM)) <= 1
    terms = [name for name, signum in script.sent if signum == signal.SIGTERM]
    assert terms == [n for n in reversed(NAMES) if n in terms]
    if script.alive_then:  # the extra signals came while something still ran
        assert len(kills) == 1
        # After the kill nobody waits out a grace: no TERM is sent once it happened.
        assert all(signum == signal.SIGKILL for _, signum in script.sent[kills[0] :])
    elif at >= script.step:
        assert kills == []
    assert len(kills) <= 1


def test_a_signal_after_the_stop_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(at=-1, signals=0)
    stack, kills = stopping_stack(script, monkeypatch)
    stack.stop()
    sent = len(script.sent)
    for _ in range(3):
        stack.interrupts(signal.SIGTERM, None)
    stack.stop()
    assert kills == [] and len(script.sent) == sent


def test_the_handler_only_counts() -> None:
    interrupts = Interrupts()
    assert not interrupts.stop_requested()
    interrupts(signal.SIGINT, None)
    assert interrupts.stop_requested() and not interrupts.kill_requested()
    interrupts(signal.SIGTERM, None)
    assert interrupts.kill_requested()


@dataclass
class FakeStack:
    """What `serve` needs of a stack; `on_start` and `on_wait` send it signals."""

    on_start: Callable[[FakeStack], None] = lambda stack: None
    on_wait: Callable[[FakeStack], None] = lambda stack: None
    interrupts: Interrupts = field(default_factory=Interrupts)
    stops: int = 0
    settings: Settings = field(default_factory=Settings)
    with_webserver: bool = False
    api_url: str = "http://127.0.0.1:1"
    state_dir: Path = Path("/nonexistent")
    admin_token_file: Path = Path("/nonexistent/admin-token")

    def start(self, progress: Callable[[str], None]) -> None:
        self.on_start(self)
        if self.interrupts.stop_requested():
            self.stop()  # as Stack.start does
            raise StartInterrupted("interrupted while starting")

    def stop(self) -> None:
        self.stops += 1

    def dead(self) -> list[Process]:
        self.on_wait(self)
        return []


def ctrl_c(times: int) -> Callable[[FakeStack], None]:
    def send(stack: FakeStack) -> None:
        for _ in range(times):
            stack.interrupts(signal.SIGINT, None)

    return send


@pytest.mark.parametrize("times", [1, 2, 5])
def test_ctrl_c_while_up_stops_once_and_exits_0(times: int) -> None:
    stack = FakeStack(on_wait=ctrl_c(times))
    assert cli.serve(stack) == 0  # type: ignore[arg-type]
    assert stack.stops == 1


@pytest.mark.parametrize("times", [1, 2, 5])
def test_ctrl_c_while_starting_stops_once_and_exits_130(times: int) -> None:
    stack = FakeStack(on_start=ctrl_c(times))
    assert cli.serve(stack) == 130  # type: ignore[arg-type]
    assert stack.stops == 1
