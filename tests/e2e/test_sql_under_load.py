"""/v1/sql on the real stack under hostile load: 16 concurrent hostile queries beside
normal traffic. Invariants only: no 500, the API's memory within the documented bound
(docs/API.md, "The bound"), /health and a small query keep answering, nothing changes."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest

from bench.harness import HOSTILE_SQL
from devstack.processes import PeakMemory
from devstack.stack import Stack
from tests.e2e.conftest import http, sql_rows, start_stack

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

MIB = 1024 * 1024
LIMITS = {
    "workers": 1,  # one run worker: only the API's bounds are under test
    "api_workers": 2,
    "sql_max_concurrent": 2,
    "sql_process_memory_mb": 768,
    "duckdb_memory_limit": "256MB",
    "sql_timeout_seconds": 5,
    "sql_queue_seconds": 1,
    # The process's own bounds are under test, not one token's (tests/e2e/test_peer_limits.py).
    "token_queries_at_once": 0,
}
HOSTILE: list[tuple[str, str]] = [
    *HOSTILE_SQL,  # the benchmark's hostile queries, and two more
    ("json", "SELECT " + "+".join(["1"] * 600)),
    ("ndjson", "SELECT CASE WHEN i > 100000 THEN error('late') END FROM range(1000000) t(i)"),
]
SMALL = "SELECT count(*) AS n FROM small"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = start_stack(tmp_path_factory.mktemp("sqlload"), **LIMITS)
    body = b"id,label\n" + b"".join(b"%d,row %d\n" % (i, i) for i in range(1000))
    response = http.post(
        f"{stack.api_url}/v1/ingest", params={"name": "small", "wait": "true"}, content=body,
        timeout=180,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    yield stack
    stack.stop()


def processes(stack: Stack) -> tuple[list[psutil.Process], list[psutil.Process]]:
    """(uvicorn's worker processes, query processes)."""
    root = psutil.Process(stack.api_pid)
    children = root.children(recursive=True)
    queries = [p for p in children if "api.query.process" in " ".join(p.cmdline())]
    return [p for p in children if p not in queries], queries


def documented_bound(stack: Stack) -> int:
    """The bound in docs/API.md, idle + W × C × (M + 2 × R), with idle = W × (A + C × Q) plus
    uvicorn's supervisor, A and Q measured on this machine at idle."""
    settings = stack.settings
    workers, queries = processes(stack)
    api_worker = max(p.memory_info().rss for p in workers)
    query_process = max((p.memory_info().rss for p in queries), default=200 * MIB)
    supervisor = psutil.Process(stack.api_pid).memory_info().rss
    per_worker = (
        api_worker
        + settings.sql_max_concurrent * (query_process + settings.query_memory.process_mb * MIB)
        + 2 * settings.sql_max_concurrent * settings.sql_max_result_bytes
    )
    return supervisor + settings.api_workers * per_worker


def test_hostile_load_keeps_the_api_bounded_and_answering(stack: Stack) -> None:
    api = stack.api_url
    with ThreadPoolExecutor(4) as warm:  # both workers start their query processes
        list(warm.map(lambda _: sql_rows(api, SMALL), range(8)))
    bound = documented_bound(stack)
    statuses: Counter[int] = Counter()
    small_answers: list[int] = []
    health: list[int] = []
    stop = threading.Event()

    def hostile(i: int) -> None:
        fmt, sql = HOSTILE[i % len(HOSTILE)]
        response = http.post(
            f"{api}/v1/sql", params={"format": fmt}, json={"sql": sql}, timeout=120
        )
        response.read()
        statuses[response.status_code] += 1
        if response.status_code >= 400:
            assert response.json()["detail"]

    def normal() -> None:
        while not stop.is_set():
            # A small query, retried on 503 as Retry-After says, answers within seconds.
            deadline = time.monotonic() + 20
            while True:
                response = http.post(f"{api}/v1/sql", json={"sql": SMALL}, timeout=20)
                if response.status_code != 503 or time.monotonic() > deadline:
                    break
                time.sleep(float(response.headers["retry-after"]) / 4)
            small_answers.append(response.status_code)
            if response.status_code == 200:
                assert response.json()["rows"] == [{"n": 1000}]

    def check_health() -> None:
        while not stop.wait(0.5):
            health.append(http.get(f"{api}/health", timeout=10).status_code)

    with PeakMemory(stack.api_pid) as memory:
        others = [threading.Thread(target=normal), threading.Thread(target=check_health)]
        for thread in others:
            thread.start()
        try:
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(hostile, range(16)))
        finally:
            stop.set()
            for thread in others:
                thread.join()
    print(
        f"hostile load: peak {memory.peak / MIB:.0f} MiB, bound {bound / MIB:.0f} MiB, "
        f"statuses {dict(statuses)}, small queries {Counter(small_answers)}, "
        f"health {Counter(health)}"
    )
    assert 500 not in statuses and set(statuses) <= {200, 400, 503, 504}
    assert statuses[400] >= 1  # the huge values were refused, not answered
    assert small_answers and set(small_answers) == {200}
    assert health and set(health) == {200}
    assert memory.peak <= bound
    assert sql_rows(api, SMALL) == [{"n": 1000}]  # nothing changed


def test_a_slow_reader_gets_the_whole_export(stack: Stack) -> None:
    """The time limit stops applying once the first batch is out: an export read slower
    than the limit is not cut off."""
    rows = 300_000
    sql = f"SELECT i, 'row ' || i AS label FROM range({rows}) t(i)"
    body = bytearray()
    with http.stream(
        "POST", f"{stack.api_url}/v1/sql", params={"format": "csv"},
        json={"sql": sql, "max_rows": rows}, timeout=60,
    ) as response:  # fmt: skip
        assert response.status_code == 200, response.read()
        chunks = response.iter_bytes()
        body += next(chunks)
        time.sleep(stack.settings.sql_timeout_seconds + 2)
        for chunk in chunks:
            body += chunk
    lines = body.decode().splitlines()
    assert lines[0] == '"i","label"' and len(lines) == rows + 1
    assert lines[-1] == f'{rows - 1},"row {rows - 1}"'  # whole, and no notice
