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

from lakehouse.stack import free_port

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


def test_a_second_ctrl_c_while_stopping_leaves_no_process_behind(tmp_path: Path) -> None:
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
    try:
        deadline = time.monotonic() + 180
        while b"lakehouse is up" not in log.read_bytes():
            assert up.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        started = stack_processes(state_dir)
        assert len(started) >= 6, [p.cmdline() for p in started]  # store, broker, worker, ...

        up.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 30
        while b"stopping" not in log.read_bytes():
            assert up.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        up.send_signal(signal.SIGINT)  # while it waits for the processes to stop
        assert up.wait(timeout=60) == 0, log.read_text()

        _, alive = psutil.wait_procs(started, timeout=10)
        assert alive == [], [p.cmdline() for p in alive]
        assert b"stopped" in log.read_bytes()
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
        for process in stack_processes(state_dir):  # only if the test failed
            process.kill()
