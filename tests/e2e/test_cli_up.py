"""`lakehouse up` as a person runs it: Ctrl-C stops everything it started, and a second
Ctrl-C while it stops (an impatient person) kills what is left rather than leaving it
running out of the terminal's reach."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from devstack.ports import free_port

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def stack_processes(state_dir: Path) -> list[psutil.Process]:
    """Every process started with this state directory in its environment."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("LAKEHOUSE_STATE_DIR") == str(state_dir):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def start_up(tmp_path: Path) -> tuple[subprocess.Popen, Path, Path]:
    """`lakehouse up --no-webserver` on free ports; its process, state dir and log."""
    state_dir = tmp_path / "state"
    env = {
        **os.environ,
        "LAKEHOUSE_STATE_DIR": str(state_dir),
        "LAKEHOUSE_S3_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "LAKEHOUSE_API_PORT": str(free_port()),
        "LAKEHOUSE_BROKER_PORT": str(free_port()),
        "LAKEHOUSE_WORKERS": "1",
    }
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        up = subprocess.Popen(
            [str(Path(sys.executable).parent / "lakehouse"), "up", "--no-webserver"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return up, state_dir, log


def wait_for(up: subprocess.Popen, log: Path, text: bytes, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while text not in log.read_bytes():
        assert up.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)


def test_a_second_ctrl_c_while_stopping_leaves_no_process_behind(tmp_path: Path) -> None:
    up, state_dir, log = start_up(tmp_path)
    try:
        wait_for(up, log, b"lakehouse is up", 180)
        started = stack_processes(state_dir)
        assert len(started) >= 6, [p.cmdline() for p in started]  # store, broker, worker, ...

        up.send_signal(signal.SIGINT)
        wait_for(up, log, b"stopping", 30)
        up.send_signal(signal.SIGINT)  # while it waits for the processes to stop
        assert up.wait(timeout=60) == 0, log.read_text()

        _, alive = psutil.wait_procs(started, timeout=10)
        assert alive == [], [p.cmdline() for p in alive]
        assert b"stopped" in log.read_bytes()
        assert b"Aborted" not in log.read_bytes()
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
        for process in stack_processes(state_dir):  # only if the test failed
            process.kill()


def test_ctrl_c_twice_while_starting_exits_130_and_leaves_no_process_behind(
    tmp_path: Path,
) -> None:
    up, state_dir, log = start_up(tmp_path)
    try:
        wait_for(up, log, b"starting Dagster code server", 180)
        started = stack_processes(state_dir)
        up.send_signal(signal.SIGINT)
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=60) == 130, log.read_text()
        _, alive = psutil.wait_procs(started, timeout=10)
        assert alive == [], [p.cmdline() for p in alive]
        assert stack_processes(state_dir) == []
        assert b"Aborted" not in log.read_bytes()
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
        for process in stack_processes(state_dir):  # only if the test failed
            process.kill()
