"""Start and stop the whole local stack: S3 server, broker, run workers, Dagster code
server, daemon and webserver, API.

One implementation for `lakehouse up` (make up) and for the tests, which run the same
processes on free ports in a temporary directory. Each process runs in its own process
group, so stopping it also stops what it spawned.

The daemon and the webserver load the definitions from one long-lived code server
(`workspace.yaml` under the state directory), not from code servers of their own: the
daemon replaces a code server it spawned itself every minute, and each replacement
imported Dagster and the definitions again (seconds of CPU, taken from the runs).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from devstack import broker, readiness, s3
from devstack.instance import PROJECT_ROOT, prepare_dagster_home, settings_env
from devstack.ports import free_port
from devstack.processes import (
    Interrupts,
    Process,
    StackError,
    Starting,
    StartInterrupted,
    executable,
)
from lakehouse.auth.tokens import ADMIN_TOKEN_FILE, TokenStore, ensure_admin_token
from lakehouse.settings import Settings

STOP_GRACE_SECONDS = 15
STOP_POLL_SECONDS = 0.05  # how often a stop looks whether the process exited, or a kill
# What the other processes lean on (their object store, their queue): stopped after them.
BACKING = frozenset({"s3", "broker"})


@dataclass
class Stack:
    settings: Settings
    with_webserver: bool = True
    local_s3: bool = True  # False when the settings point at an S3 server run elsewhere
    processes: list[Process] = field(default_factory=list)
    interrupts: Interrupts = field(default_factory=Interrupts)
    # Inside `_together`: the processes started and not yet awaited.
    _starting: list[Starting] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        # Secrets left empty are generated once per state directory; children inherit them.
        self.settings = self.settings.with_generated_secrets()
        try:
            self.settings.refuse_example_secrets()
        except ValueError as exc:
            raise StackError(str(exc)) from exc

    @property
    def admin_token_file(self) -> Path:
        """Where `start` wrote the deployment's first admin token."""
        return self.state_dir / ADMIN_TOKEN_FILE

    @property
    def state_dir(self) -> Path:
        return self.settings.state_dir.absolute()

    @property
    def api_url(self) -> str:
        return f"http://{self.settings.api_host}:{self.settings.api_port}"

    @property
    def api_pid(self) -> int:
        return next(p.popen.pid for p in self.processes if p.name == "api")

    @property
    def webserver_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.webserver_port}"

    # -- starting -------------------------------------------------------------------------

    def start(self, progress: Callable[[str], None] = lambda _: None) -> None:
        """Start every process and wait until each is healthy; on failure stop them all.

        Processes start side by side (each spends seconds importing Dagster, and the
        machine has cores); the daemon, webserver and API once the store is up. A stop
        asked for meanwhile (`interrupts`) ends it with `StartInterrupted`, all stopped."""
        try:
            prepare_dagster_home(self.settings)
            with self._together():
                if self.local_s3:
                    progress("object store (SeaweedFS S3)")
                    self.start_s3()
                if not self.settings.broker_url:
                    progress("broker (Redis)")
                    self.start_broker()
                if self.settings.workers:  # they wait for the broker themselves
                    progress(f"{self.settings.workers} run worker(s)")
                    self.start_workers()
                progress("Dagster code server")
                self.start_code_server()
            ensure_admin_token(TokenStore.for_settings(self.settings), self.state_dir)
            with self._together():
                progress("Dagster daemon")
                self.start_daemon()
                if self.with_webserver:
                    progress("Dagster webserver")
                    self.start_webserver()
                progress("API" + (" and Postgres endpoint" if self.settings.pg_port else ""))
                self.start_api()
                if self.settings.pg_port:
                    self.start_pg()
        except BaseException:
            self.stop()
            raise

    @contextlib.contextmanager
    def _together(self) -> Iterator[None]:
        """Processes started inside are awaited together at its end, not one by one."""
        self._starting = []
        try:
            yield
            starting, self._starting = self._starting, None
            await_ready(starting, self.interrupts)
        finally:
            self._starting = None

    def start_s3(self) -> None:
        s3_dir = self.state_dir / "s3"
        self._spawn("s3", s3.command(self.settings, s3_dir), cwd=s3_dir)
        self._wait("s3", readiness.s3_ready(self.settings), timeout=60)

    def start_broker(self) -> None:
        self._spawn("broker", broker.command(self.settings, self.state_dir / "broker"))
        self._wait("broker", readiness.broker_ready(self.settings), timeout=30)

    def start_workers(self, count: int | None = None) -> None:
        prepare_dagster_home(self.settings)
        first = sum(p.name.startswith("worker-") for p in self.processes) + 1
        names = [f"worker-{n}" for n in range(first, first + (count or self.settings.workers))]
        for name in names:
            self._spawn(name, [executable("lakehouse"), "worker", "--name", name])
        for name in names:
            self._wait(name, readiness.log_says(self._named(name), " ready."), timeout=120)

    def start_code_server(self) -> None:
        """Dagster's code server for the definitions, and the workspace file that points
        the daemon and the webserver at it. One process, no reloading proxy: code changes
        need a restart of the stack anyway, since the run workers import the code once."""
        from lakehouse.runs import CODE_LOCATION  # heavy import (Dagster), only where needed

        port = self.settings.code_server_port or free_port()
        server = {"host": "127.0.0.1", "port": port, "location_name": CODE_LOCATION}
        workspace = {"load_from": [{"grpc_server": server}]}
        self.workspace_file.parent.mkdir(parents=True, exist_ok=True)
        self.workspace_file.write_text(yaml.safe_dump(workspace, sort_keys=False))
        self._spawn(
            "code-server",
            [
                executable("dagster"), "api", "grpc", "-h", "127.0.0.1", "-p", str(port),
                "-m", "lakehouse_assets.definitions", "-a", "defs", "--location-name",
                CODE_LOCATION,
            ],
        )  # fmt: skip
        self._wait("code-server", readiness.code_server_serving(port), timeout=120)

    def start_daemon(self) -> None:
        prepare_dagster_home(self.settings)
        self._spawn("dagster-daemon", [executable("dagster-daemon"), "run", *self._workspace()])
        # Each check opens the instance (0.1 s of CPU): not too often while all start.
        self._wait("dagster-daemon", readiness.daemon_ready(self.settings), 120, interval=1.0)

    def start_webserver(self) -> None:
        prepare_dagster_home(self.settings)
        self._spawn(
            "dagster-webserver",
            [
                executable("dagster-webserver"), "-h", "127.0.0.1",
                "-p", str(self.settings.webserver_port), *self._workspace(),
            ],
        )  # fmt: skip
        self._wait("dagster-webserver", readiness.http_ok(f"{self.webserver_url}/server_info"), 120)

    def start_api(self) -> None:
        # The workers' metrics, summed at each scrape; a new API starts counting from zero.
        metrics = self.state_dir / "api-metrics"
        shutil.rmtree(metrics, ignore_errors=True)
        metrics.mkdir(parents=True)
        self._spawn(
            "api",
            [
                sys.executable, "-m", "uvicorn", "api.main:app",
                "--host", self.settings.api_host, "--port", str(self.settings.api_port),
                "--workers", str(self.settings.api_workers), "--no-access-log",
            ],
            env={"PROMETHEUS_MULTIPROC_DIR": str(metrics)},
        )  # fmt: skip
        self._wait("api", readiness.http_ok(f"{self.api_url}/health"), timeout=120)

    def start_pg(self) -> None:  # the Postgres endpoint, beside the API
        self._spawn("postgres-endpoint", [sys.executable, "-m", "api.pgwire"])
        self._wait("postgres-endpoint", readiness.pg_ready(self.settings), timeout=120)

    # -- stopping -------------------------------------------------------------------------

    def stop(self, name: str | None = None) -> None:
        """Stop every process (or the one named): TERM to the processes that serve, all
        at once, then to what they lean on (S3, the broker), so that a run or a request
        finishing in its grace still reaches them; KILL what outlives `STOP_GRACE_SECONDS`,
        or everything at once when a kill is asked for (a second Ctrl-C while this waits)."""
        chosen = [p for p in self.processes if name in (None, p.name)]
        if not chosen:
            return
        serving = [p for p in reversed(chosen) if p.name not in BACKING]
        backing = [p for p in reversed(chosen) if p.name in BACKING]
        killed = False
        for tier in (serving, backing):
            terminate(tier, self.interrupts)
            if self.interrupts.kill_requested() and not killed:
                self.kill(chosen)
                killed = True
            for process in tier:
                # What it spawned (a run worker's run, a code server) may outlive it briefly.
                process.signal_group(signal.SIGKILL)
                process.popen.wait()
                self.processes.remove(process)

    def kill(self, processes: list[Process] | None = None) -> None:
        """Kill every process (or those given) and what it spawned at once (SIGKILL),
        without waiting. A run it cuts short is retried (run monitoring), and applies its
        ingests once."""
        for process in self.processes if processes is None else processes:
            if process in self.processes:
                process.signal_group(signal.SIGKILL)

    def dead(self) -> list[Process]:
        return [p for p in self.processes if not p.alive()]

    @property
    def admin_token(self) -> str:
        return self.admin_token_file.read_text().strip()

    # -- helpers --------------------------------------------------------------------------

    @property
    def workspace_file(self) -> Path:
        return self.state_dir / "workspace.yaml"

    def _workspace(self) -> list[str]:
        return ["-w", str(self.workspace_file)]

    def _spawn(
        self,
        name: str,
        argv: list[str],
        cwd: Path = PROJECT_ROOT,
        env: dict[str, str] | None = None,
    ) -> None:
        self._check_interrupts()
        logs = self.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log = logs / f"{name}.log"
        with log.open("ab") as out:
            log_start = out.tell()
            popen = subprocess.Popen(
                argv,
                cwd=cwd,
                env={**os.environ, **settings_env(self.settings), **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(Process(name, popen, log, log_start))

    def _wait(
        self, name: str, ready: Callable[[], bool], timeout: float, interval: float = 0.2
    ) -> None:
        """Wait until `name` is ready, or, inside `_together`, leave that for its end."""
        starting = Starting(self._named(name), ready, timeout, interval)
        if self._starting is not None:
            self._starting.append(starting)
        else:
            await_ready([starting], self.interrupts)

    def _named(self, name: str) -> Process:
        return next(p for p in self.processes if p.name == name)

    def _check_interrupts(self) -> None:
        if self.interrupts.stop_requested():
            raise StartInterrupted("interrupted while starting")


def terminate(processes: list[Process], interrupts: Interrupts) -> None:
    """TERM each process, in the order given, and wait until all have exited, the grace has
    run out, or a kill is asked for."""
    for process in processes:
        if process.alive() and not interrupts.kill_requested():
            process.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    while not interrupts.kill_requested() and time.monotonic() < deadline:
        if not any(process.alive() for process in processes):
            return
        time.sleep(STOP_POLL_SECONDS)


def await_ready(starting: list[Starting], interrupts: Interrupts) -> None:
    """Wait until every process in `starting` is ready; StackError when one exits or
    times out, StartInterrupted when a stop is asked for meanwhile."""
    began = time.monotonic()
    while starting:
        if interrupts.stop_requested():
            raise StartInterrupted("interrupted while starting")
        for item in list(starting):
            process = item.process
            if not process.alive():
                raise StackError(
                    f"{process.name} exited ({process.popen.returncode}):\n{process.tail()}"
                )
            now = time.monotonic()
            if now - item.checked < item.interval:
                continue
            item.checked = now
            if item.ready():
                starting.remove(item)
            elif now - began > item.timeout:
                raise StackError(
                    f"{process.name} not healthy after {item.timeout:.0f}s:\n{process.tail()}"
                )
        time.sleep(0.2)
