"""The audit trail on the real stack: one record per request, whatever its outcome,
queryable by admins as `_audit`; a crash of an API process loses at most its last batch."""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Iterator

import httpx
import pytest

from devstack.stack import Stack
from lakehouse.settings import Settings
from tests.e2e.conftest import bearer, create_token, start_stack

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = start_stack(tmp_path_factory.mktemp("audit"), api_workers=2)
    yield stack
    stack.stop()


def restart_api(stack: Stack, settings: Settings) -> None:
    """Start the stack's API again with `settings` (the other processes keep theirs)."""
    stack.stop("api")
    stack.settings = settings
    stack.start_api()


def audited(stack: Stack, request_ids: set[str], timeout: float = 60) -> dict[str, dict]:
    """The audit records of `request_ids` found (waiting up to `timeout` for all)."""
    deadline = time.monotonic() + timeout
    while True:
        response = httpx.post(
            f"{stack.api_url}/v1/sql",
            json={"sql": "SELECT * FROM _audit", "max_rows": 1_000_000},
            headers=bearer(stack.admin_token),
            timeout=60,
        )
        assert response.status_code == 200, response.text
        rows = [r for r in response.json()["rows"] if r["request_id"] in request_ids]
        if len(rows) >= len(request_ids) or time.monotonic() > deadline:
            return {r["request_id"]: r for r in rows} | {"_count": {"n": len(rows)}}
        time.sleep(0.5)


def test_every_request_of_a_mixed_thousand_is_audited_once(stack: Stack) -> None:
    writer = create_token(stack, "loader", "writer", datasets=["audited_*"])
    reader = create_token(stack, "analyst", "reader", datasets=["audited_*"])
    api = stack.api_url
    kinds = [
        ("POST", "/v1/ingest", {"params": {"name": "audited_1"}, "content": b"a\n1\n",
                                "headers": {**bearer(writer), "content-type": "text/csv"}}),
        ("POST", "/v1/sql", {"json": {"sql": "SELECT 42 AS n"}, "headers": bearer(reader)}),
        ("GET", "/v1/catalog", {"headers": bearer(reader)}),
        ("GET", "/v1/catalog/secret_1", {"headers": bearer(reader)}),  # 403
        ("POST", "/v1/ingest", {"params": {"name": "audited_1", "mode": "replace"},
                                "content": b"a\n1\n", "headers": bearer(writer)}),  # 403
        ("GET", "/v1/catalog", {"headers": bearer("lh_" + "x" * 43)}),  # 401
        ("GET", "/v1/catalog", {}),  # 401
    ]  # fmt: skip
    random.seed(7)
    sent: dict[str, tuple[str, str, int]] = {}
    with httpx.Client(timeout=60) as client:
        for _ in range(1000):
            method, path, request = random.choice(kinds)
            response = client.request(method, f"{api}{path}", **request)  # type: ignore[arg-type]
            sent[response.headers["x-request-id"]] = (method, path, response.status_code)
    assert len(sent) == 1000  # one request id each
    found = audited(stack, set(sent))
    assert found.pop("_count") == {"n": 1000}  # each once: no more, no fewer
    for request_id, (method, path, status) in sent.items():
        record = found[request_id]
        assert (record["method"], record["path"], record["status"]) == (method, path, status)
        if status == 401:
            assert record["token"] is None
        elif path == "/v1/sql":
            assert record["token"] == "analyst" and record["sql"] == "SELECT 42 AS n"
            assert record["rows"] == 1 and len(record["sql_sha256"]) == 64
        elif path == "/v1/ingest" and status in (200, 202):
            assert record["token"] == "loader" and record["datasets"] == ["audited_1"]
            assert record["mode"] == "append" and record["bytes_in"] == 4


def test_a_crash_of_the_api_loses_at_most_its_last_batch(stack: Stack) -> None:
    batch = 50
    shared = stack.settings
    # One API process that writes only full batches: the rest of its records are lost.
    crashing = {"api_workers": 1, "audit_batch_records": batch, "audit_flush_seconds": 3600}
    restart_api(stack, shared.model_copy(update=crashing))
    try:
        reader = create_token(stack, "reader", "reader")
        api = stack.api_url

        def requests(count: int) -> set[str]:
            return {
                httpx.get(f"{api}/v1/catalog", headers=bearer(reader)).headers["x-request-id"]
                for _ in range(count)
            }

        written = requests(2 * batch)
        requests(batch)  # so the batch the last of them is in fills, and is written
        assert audited(stack, written).pop("_count") == {"n": 2 * batch}
        unwritten = requests(batch // 2)
        api_process = next(p for p in stack.processes if p.name == "api")
        api_process.signal_group(signal.SIGKILL)
        restart_api(stack, stack.settings)
        found = audited(stack, written | unwritten, timeout=5)
        lost = len(written | unwritten) - found.pop("_count")["n"]
        assert set(found) >= written  # what was written stays
        assert lost <= batch  # at most the last batch
        print(f"crash of the API: {lost} of {len(unwritten)} unwritten records lost")
    finally:
        restart_api(stack, shared)
