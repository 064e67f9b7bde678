"""Variants of the API started beside the real one on the bench's stack (the same settings,
another port), for figures measured against the product without one of its parts."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import httpx

from devstack.instance import PROJECT_ROOT, settings_env
from devstack.ports import free_port

if TYPE_CHECKING:
    from bench.harness import Bench


class Variant:
    def __init__(self, popen: subprocess.Popen, url: str) -> None:
        self.popen, self.url = popen, url

    def stop(self) -> None:
        self.popen.terminate()
        self.popen.wait(timeout=60)


def start_variant(bench: Bench, app: str) -> Variant:
    port = free_port()
    popen = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1",
         "--port", str(port), "--workers", str(bench.settings.api_workers), "--no-access-log"],
        cwd=PROJECT_ROOT,
        env={**settings_env(bench.settings), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code in (200, 503):
                return Variant(popen, url)
        except httpx.HTTPError:
            pass
        if popen.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the API variant {app} did not start")
        time.sleep(0.2)


def median_ms(client: httpx.Client, url: str, body: dict, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        client.post(url, json=body).raise_for_status()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000
