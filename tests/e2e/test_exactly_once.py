"""Exactly once on the real stack, under races: every acknowledged upload appears once,
nothing else does, and version numbers stay unique and consecutive, whatever runs race.

Invariants only: which upload or run wins a race is up to the machine."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import dagster as dg
import httpx
import pytest
from dagster_graphql import DagsterGraphQLClient

from devstack.stack import Stack
from lakehouse.runs import PARTITION_TAG, active_run
from tests.e2e.conftest import http, sql_rows, start_stack, wait_for_ingest

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = start_stack(tmp_path_factory.mktemp("exactly-once"), webserver=True)
    yield stack
    stack.stop()


def rows(first: int, count: int = 10, header: bytes = b"n,label") -> bytes:
    return header + b"\n" + b"".join(b"%d,row %d\n" % (i, i) for i in range(first, first + count))


def post(stack: Stack, name: str, body: bytes, **params: str) -> httpx.Response:
    while True:
        response = http.post(
            f"{stack.api_url}/v1/ingest",
            params={"name": name, **params},
            content=body,
            timeout=300,
        )
        if response.status_code != 503:
            return response
        time.sleep(0.2)


def settled(stack: Stack, ingest_ids: list[str]) -> list[dict]:
    return [wait_for_ingest(stack.api_url, i) for i in ingest_ids]


def numbers(stack: Stack, name: str) -> list[int]:
    return [r["n"] for r in sql_rows(stack.api_url, f"SELECT n FROM {name} ORDER BY n")]


def assert_versions_consecutive(stack: Stack, name: str) -> None:
    versions = http.get(
        f"{stack.api_url}/v1/catalog/{name}/versions", params={"limit": 1000}
    ).json()["versions"]
    assert [v["version"] for v in versions] == list(range(len(versions), 0, -1))


def launch_by_hand(stack: Stack, job: str, dataset: str) -> str:
    """As a person would from the launchpad: the job, the partition, nothing else."""
    client = DagsterGraphQLClient("127.0.0.1", port_number=stack.settings.webserver_port)
    return client.submit_job_execution(job, tags={PARTITION_TAG: dataset})


def test_concurrent_first_uploads_to_a_new_dataset(stack: Stack) -> None:
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: post(stack, "fresh", rows(i * 100)), range(16)))
    assert all(a.status_code == 202 for a in answers), [a.text for a in answers]
    receipts = settled(stack, [a.json()["ingest_id"] for a in answers])
    assert {r["status"] for r in receipts} == {"materialized"}
    assert numbers(stack, "fresh") == sorted(i * 100 + j for i in range(16) for j in range(10))
    assert_versions_consecutive(stack, "fresh")


def test_a_replace_racing_appends(stack: Stack) -> None:
    post(stack, "racing", rows(0), wait="true")
    with ThreadPoolExecutor(6) as pool:
        appends = {i: pool.submit(post, stack, "racing", rows(1000 + i * 100)) for i in range(10)}
        replace = post(stack, "racing", rows(500_000), mode="replace")
        answers = {i: a.result() for i, a in appends.items()}
    assert replace.status_code == 202 and all(a.status_code == 202 for a in answers.values())
    settled(stack, [a.json()["ingest_id"] for a in [replace, *answers.values()]])
    # The log's order decides: appends committed after the replace are on top of it.
    after = [i for i, a in answers.items() if a.json()["seq"] > replace.json()["seq"]]
    expected = [*range(500_000, 500_010)] + [1000 + i * 100 + j for i in after for j in range(10)]
    assert numbers(stack, "racing") == sorted(expected)
    assert_versions_consecutive(stack, "racing")


@pytest.mark.parametrize("job", ["rebuild_job", "compaction_job"])
def test_rebuild_and_compaction_launched_by_hand_racing_appends(stack: Stack, job: str) -> None:
    name = f"handled_{job.split('_')[0]}"
    post(stack, name, rows(0), wait="true")
    with ThreadPoolExecutor(4) as pool:
        appends = [pool.submit(post, stack, name, rows(1000 + i * 100)) for i in range(8)]
        launch_by_hand(stack, job, name)
        launch_by_hand(stack, job, name)
        answers = [a.result() for a in appends]
    receipts = settled(stack, [a.json()["ingest_id"] for a in answers])
    assert {r["status"] for r in receipts} == {"materialized"}
    _wait_for_runs_of(stack, name)
    expected = sorted([*range(10)] + [1000 + i * 100 + j for i in range(8) for j in range(10)])
    assert numbers(stack, name) == expected
    assert_versions_consecutive(stack, name)


def _wait_for_runs_of(stack: Stack, name: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    with dg.DagsterInstance.from_config(str(stack.settings.resolved_dagster_home)) as instance:
        while active_run(instance, name) is not None:
            assert time.monotonic() < deadline, f"runs of {name} never finished"
            time.sleep(0.5)


def test_append_replace_append_the_same_bytes_lands_them_again(stack: Stack) -> None:
    a, b = rows(0), rows(100)
    assert post(stack, "again", a, wait="true").status_code == 200
    assert post(stack, "again", b, mode="replace", wait="true").status_code == 200
    third = post(stack, "again", a, wait="true")
    assert third.status_code == 200, third.text
    assert third.json()["duplicate"] is False and third.json()["in_current_version"] is True
    assert numbers(stack, "again") == [*range(0, 10), *range(100, 110)]


def test_a_failed_ingests_bytes_can_be_sent_again(stack: Stack) -> None:
    post(stack, "flaky", rows(0), wait="true")
    bad = b"n,label\n" + b"1,x\n" * 2100 + b"oops,x\n" * 50  # past the sample: 2.3% bad
    first = post(stack, "flaky", bad, wait="true")
    assert first.status_code == 422 and first.json()["detail"]["status"] == "failed"
    again = post(stack, "flaky", bad)
    assert again.status_code == 202, again.text
    assert again.json()["duplicate"] is False
    assert again.json()["ingest_id"] != first.json()["detail"]["ingest_id"]
