"""`lakehouse up` as a person runs it: Ctrl-C stops everything it started, and a second
Ctrl-C while it stops (an impatient person) kills what is left rather than leaving it
running out of the terminal's reach."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from devstack.ports import free_port

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def stack_processes(state_dir: Path) -> list[psutil.Process]:
    """Every process started with this state directory in its environment, or working in
    it: Redis rewrites its process title over its environment, so the broker is found by
    its working directory (a broker left running was found there after CI)."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("LAKEHOUSE_STATE_DIR") == str(state_dir) or (
                process.cwd().startswith(f"{state_dir}/")
            ):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def start_up(tmp_path: Path) -> tuple[subprocess.Popen, Path, Path]:
    """`lakehouse up --no-webserver` on free ports; its process, state dir and log."""
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    ENVIRONMENTS[state_dir] = {
        "LAKEHOUSE_STATE_DIR": str(state_dir),
        "LAKEHOUSE_S3_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "LAKEHOUSE_API_PORT": str(free_port()),
        "LAKEHOUSE_BROKER_PORT": str(free_port()),
        "LAKEHOUSE_PG_PORT": str(free_port()),
        "LAKEHOUSE_WORKERS": "1",
    }
    env = {**os.environ, **up_env(state_dir)}
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


# Each started state directory's LAKEHOUSE_* variables, for the commands run beside it.
ENVIRONMENTS: dict[Path, dict[str, str]] = {}


def up_env(state_dir: Path) -> dict[str, str]:
    return ENVIRONMENTS[state_dir]


def wait_for(up: subprocess.Popen, log: Path, text: bytes, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while text not in log.read_bytes():
        assert up.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)


def cli(state_dir: Path, *args: str, token: str | None = None) -> subprocess.CompletedProcess:
    """A `lakehouse` command as a person runs it beside `lakehouse up` (same environment)."""
    env = {**os.environ, **up_env(state_dir)}
    if token:
        env["LAKEHOUSE_TOKEN"] = token
    return subprocess.run(
        [str(Path(sys.executable).parent / "lakehouse"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_first_up_makes_secrets_and_an_admin_token_the_cli_finds(tmp_path: Path) -> None:
    """Two commands and nothing else: `lakehouse up` generates the secrets and a first
    admin token (owner-readable files, no well-known value), says where the token is, and
    the `lakehouse` commands use it without being told; a reader token it creates is
    refused what readers may not do."""
    up, state_dir, log = start_up(tmp_path)
    try:
        # The last line of what `up` prints once the stack is up: the lines above it, the
        # admin token's among them, are all written by then.
        wait_for(up, log, b"Ctrl-C stops everything.", 180)
        assert f"admin token in {state_dir / 'admin-token'}".encode() in log.read_bytes()
        for name in ("admin-token", "secrets.json"):
            assert stat.S_IMODE((state_dir / name).stat().st_mode) == 0o600, name
        secrets = json.loads((state_dir / "secrets.json").read_text())
        assert "lakehouse-secret-key" not in secrets.values()
        answer = cli(state_dir, "sql", "SELECT 42 AS answer", "--format", "json")
        assert answer.returncode == 0 and json.loads(answer.stdout) == [{"answer": 42}], answer
        created = cli(state_dir, "token", "create", "analyst", "--role", "reader")
        assert created.returncode == 0, created.stderr
        reader = created.stdout.strip()
        assert reader.startswith("lh_") and "shown this once" in created.stderr
        assert cli(state_dir, "sql", "SELECT 1 AS one", token=reader).returncode == 0
        refused = cli(state_dir, "token", "list", token=reader)
        assert refused.returncode != 0 and "403" in refused.stderr, refused
        listed = cli(state_dir, "token", "list")
        assert "analyst" in listed.stdout and "local-admin" in listed.stdout, listed
    finally:
        os.killpg(up.pid, signal.SIGKILL)
        for process in stack_processes(state_dir):
            process.kill()


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
