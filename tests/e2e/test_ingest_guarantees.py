"""Ingest guarantees on the real stack: exactly-once pickup, waiting, duplicates, bounded
memory."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from devstack.processes import PeakMemory
from devstack.stack import Stack
from tests.e2e.conftest import http, sql_rows, start_stack, wait_for_ingest

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

GIB = 1024**3


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = start_stack(tmp_path_factory.mktemp("guarantees"), max_upload_bytes=GIB + 1024**2)
    yield stack
    stack.stop()


def csv_rows(first: int, count: int) -> bytes:
    return b"id,label\n" + b"".join(b"%d,row %d\n" % (i, i) for i in range(first, first + count))


def post(api: str, name: str, body: bytes, **params: str) -> httpx.Response:
    return http.post(f"{api}/v1/ingest", params={"name": name, **params}, content=body, timeout=300)


def consecutive_versions(api: str, name: str) -> bool:
    versions = http.get(f"{api}/v1/catalog/{name}/versions", params={"limit": 1000}).json()
    numbers = [v["version"] for v in versions["versions"]]
    return numbers == list(range(len(numbers), 0, -1))


def test_wait_answers_with_the_manifest(stack: Stack) -> None:
    response = post(stack.api_url, "waited", csv_rows(0, 10), wait="true")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "materialized" and body["version"] == 1
    assert body["manifest"]["row_count"] == 10


def test_wait_answers_with_the_error_when_the_ingest_fails(stack: Stack) -> None:
    # Past the sample, 2.3% of the rows have two fields (a first upload would widen a
    # column for values that do not fit, but no type holds a row of the wrong shape).
    body = b"n\n" + b"1\n" * 2100 + b"oops,1\n" * 50
    response = post(stack.api_url, "failing", body, wait="120")
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail["status"] == "failed"
    assert detail["error"]["rejected_rows"] == 50
    assert detail["error"]["samples"][0] == {
        "line": 2102, "column": None, "error_type": "TOO MANY COLUMNS",
        "error": detail["error"]["samples"][0]["error"], "csv_line": "oops,1",
    }  # fmt: skip
    # The failure is recorded in a version that holds nothing: no columns, no rows.
    catalog = http.get(f"{stack.api_url}/v1/catalog/failing").json()
    assert (catalog["row_count"], catalog["columns"], catalog["objects"]) == (0, [], [])
    assert catalog["excluded_seqs"] == [response.json()["detail"]["seq"]]


def test_a_header_only_file_is_a_valid_empty_dataset(stack: Stack) -> None:
    response = post(stack.api_url, "empty_one", b"a,b,c\n", wait="true")
    assert response.status_code == 200, response.text
    assert response.json()["manifest"]["row_count"] == 0
    assert sql_rows(stack.api_url, "SELECT count(*) AS n FROM empty_one") == [{"n": 0}]


def test_the_same_file_twice_gives_one_set_of_rows(stack: Stack) -> None:
    body = csv_rows(0, 1000)
    first = post(stack.api_url, "twice", body, wait="true")
    second = post(stack.api_url, "twice", body, wait="true")
    assert first.status_code == 200 and second.status_code == 200
    assert second.json()["duplicate"] is True
    assert second.json()["ingest_id"] == first.json()["ingest_id"]
    assert sql_rows(stack.api_url, "SELECT count(*) AS n FROM twice") == [{"n": 1000}]


def test_twenty_concurrent_uploads_to_five_datasets_each_materialize_once(stack: Stack) -> None:
    def upload(i: int) -> tuple[str, str, int, int]:
        name, rows = f"burst_{i % 5}", 100 + i
        refused = 0
        while (response := post(stack.api_url, name, csv_rows(i * 1000, rows))).status_code in (
            429,
            503,
        ):
            refused += 1
            time.sleep(float(response.headers["retry-after"]) / 4)
        assert response.status_code == 202, response.text
        return name, response.json()["ingest_id"], rows, refused

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(upload, range(20)))

    expected: dict[str, list[int]] = defaultdict(list)
    for name, ingest_id, rows, _ in results:
        receipt = wait_for_ingest(stack.api_url, ingest_id)
        assert (receipt["status"], receipt["in_current_version"]) == ("materialized", True)
        expected[name].append(rows)
    for name, rows in expected.items():
        manifest = http.get(f"{stack.api_url}/v1/catalog/{name}").json()
        assert manifest["row_count"] == sum(rows)  # each once, none lost
        assert sql_rows(stack.api_url, f"SELECT count(*) AS n FROM {name}") == [{"n": sum(rows)}]
        assert consecutive_versions(stack.api_url, name)
    # No webserver in this stack: every run came from the sensor, the safety net.


def test_uploads_while_the_daemon_is_down_are_materialized_once_it_is_back(
    stack: Stack,
) -> None:
    stack.stop("dagster-daemon")
    ids = [
        post(stack.api_url, "offline", csv_rows(i * 100, 10)).json()["ingest_id"] for i in (1, 2, 3)
    ]
    time.sleep(2)
    assert {http.get(f"{stack.api_url}/v1/ingest/{i}").json()["status"] for i in ids} == {"queued"}
    stack.start_daemon()
    assert [wait_for_ingest(stack.api_url, i)["status"] for i in ids] == ["materialized"] * 3
    assert sql_rows(stack.api_url, "SELECT count(*) AS n FROM offline") == [{"n": 30}]
    assert consecutive_versions(stack.api_url, "offline")


def test_a_1_gib_upload_keeps_the_api_memory_bounded(stack: Stack) -> None:
    http.post(f"{stack.api_url}/v1/sql", json={"sql": "SELECT 1"})  # warm up
    block = b"".join(b"%d,some text for row %d\n" % (i, i) for i in range(40_000))
    blocks = GIB // len(block)

    def body() -> Iterator[bytes]:
        yield b"id,label\n"
        for _ in range(blocks):
            yield block

    with PeakMemory(stack.api_pid) as memory:  # every API worker process, sampled
        idle = memory.current()
        response = http.post(
            f"{stack.api_url}/v1/ingest", params={"name": "huge"}, content=body(), timeout=900
        )
    assert response.status_code == 202, response.text
    assert response.json()["bytes"] == 9 + blocks * len(block) > 0.99 * GIB
    growth = (memory.peak - idle) / 1024**2
    print(f"API RSS idle {idle / 1024**2:.0f} MiB, peak {memory.peak / 1024**2:.0f}, +{growth:.0f}")
    assert growth < 200


def test_the_command_line_ingests_queries_and_lists(stack: Stack, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from lakehouse_cli.main import main

    data = tmp_path / "shifts.csv"
    data.write_bytes(b"shift,hours\n1,8.5\n2,4\n")
    runner, api = CliRunner(env={"LAKEHOUSE_TOKEN": stack.admin_token}), ["--api", stack.api_url]
    result = runner.invoke(main, ["ingest", str(data), "--name", "cli_shifts", "--wait", *api])
    assert result.exit_code == 0, result.output
    assert "materialized" in result.output and "2 rows" in result.output

    result = runner.invoke(
        main, ["sql", "SELECT sum(hours) AS h FROM cli_shifts", "--format", "csv", *api]
    )
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["h", "12.5"]

    result = runner.invoke(main, ["catalog", *api])
    assert result.exit_code == 0 and "cli_shifts" in result.output

    result = runner.invoke(main, ["ingest", str(data), "--name", "Bad-Name", *api])
    assert result.exit_code == 1 and "suggested_name" in result.output
