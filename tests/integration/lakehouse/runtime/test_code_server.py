"""A real Dagster code server answers the standard gRPC health check as the service
`lakehouse.runtime.compat.CODE_SERVER_HEALTH_SERVICE`: how the stack knows it is ready."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from devstack.ports import free_port
from lakehouse.runs import CODE_LOCATION
from lakehouse.runtime.compat import code_server_serving

pytestmark = pytest.mark.integration


def test_a_code_server_is_serving_by_the_grpc_health_check(tmp_path: Path) -> None:
    port = free_port()
    dagster = str(Path(sys.executable).parent / "dagster")
    server = subprocess.Popen(
        [dagster, "api", "grpc", "-h", "127.0.0.1", "-p", str(port),
         "-m", "lakehouse_assets.definitions", "-a", "defs", "--location-name", CODE_LOCATION],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={"DAGSTER_HOME": str(tmp_path), "PATH": ""},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not code_server_serving("127.0.0.1", port):
            assert server.poll() is None, "the code server exited"
            assert time.monotonic() < deadline, "not serving in 120 s"
            time.sleep(0.5)
    finally:
        server.terminate()
        server.wait(timeout=30)
