"""Peers that would hold or fill the API, against the real server (uvicorn, its HTTP parser,
a real S3 store): each attack gets its 4xx, frees what it held, and stores nothing."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from devstack.instance import prepare_dagster_home
from devstack.stack import Stack
from lakehouse.auth.tokens import TokenStore, ensure_admin_token
from lakehouse.store import ObjectStore
from lakehouse.store.layout import LANDING, log_prefix
from tests.e2e.conftest import bearer, create_token, e2e_settings
from tests.helpers import data_keys

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

READ_TIMEOUT = 2.0
CSV = b"id,label\n1,one\n2,two\n"


def api_stack(state: Path, **settings: Any) -> Iterator[Stack]:
    """The object store, the broker's Redis (where every API process counts the per-token
    limits) and the API: no run is needed to refuse a request."""
    stack = Stack(
        e2e_settings(
            state,
            upload_read_timeout_seconds=READ_TIMEOUT,
            push_runs=False,
            **settings,
        ),
        with_webserver=False,
    )
    try:
        prepare_dagster_home(stack.settings)
        stack.start_s3()
        stack.start_broker()
        ensure_admin_token(TokenStore.for_settings(stack.settings), stack.state_dir)
        stack.start_api()
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One API process with one upload slot and one query slot, so a held slot shows as the
    next upload's or query's 503."""
    yield from api_stack(
        tmp_path_factory.mktemp("peers"),
        api_workers=1,
        max_concurrent_uploads=1,
        sql_max_concurrent=1,
        sql_send_timeout_seconds=READ_TIMEOUT,
    )


@pytest.fixture(scope="module")
def throttled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Two API processes sharing tight per-token limits through Redis."""
    yield from api_stack(
        tmp_path_factory.mktemp("throttled"),
        api_workers=2,
        max_concurrent_uploads=4,
        token_requests_per_second=1,
        token_uploads_at_once=1,
        token_upload_bytes_per_hour=100,
    )


def raw_request(stack: Stack, head: str, body: bytes = b"") -> tuple[int, bytes]:
    """Send `head` (request line and headers) and `body`, then nothing more; the status
    and body of the answer. The socket's own timeout only stops a hung test."""
    port = stack.settings.api_port
    with socket.create_connection(("127.0.0.1", port), timeout=60) as peer:
        auth = f"Authorization: Bearer {stack.admin_token}\r\n"
        peer.sendall(f"{head}\r\nHost: 127.0.0.1:{port}\r\n{auth}\r\n".encode() + body)
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) == 0:
            data = peer.recv(65536)
            if not data:
                break
            answer += data
    status = int(answer.split(b" ", 2)[1])
    return status, answer.split(b"\r\n\r\n", 1)[1]


def upload(stack: Stack, name: str, token: str | None = None, body: bytes = CSV) -> httpx.Response:
    return httpx.post(
        f"{stack.api_url}/v1/ingest",
        params={"name": name},
        content=body,
        headers=bearer(token or stack.admin_token),
        timeout=60,
    )


@pytest.fixture(scope="module")
def tokens(throttled: Stack) -> dict[str, str]:
    """A writer token per test on the throttled stack (made by its admin, one a second)."""
    made = {}
    for name in ("burst", "bytes", "holder", "other"):
        for _ in range(30):  # bounded: only stops a hung test
            try:
                made[name] = create_token(throttled, name, "writer")
                break
            except AssertionError:  # 429: the admin's one request a second
                time.sleep(1)
    return made


def upload_past_the_rate(stack: Stack, name: str, token: str, body: bytes) -> httpx.Response:
    """`upload`, sent again after Retry-After while the answer is the requests-per-second
    429 (the limits under test here are the others)."""
    for _ in range(30):  # bounded: only stops a hung test
        response = upload(stack, name, token, body)
        if response.status_code != 429 or "requests in a second" not in response.text:
            break
        time.sleep(int(response.headers["retry-after"]))
    return response


def test_attack_slow_upload_is_408_and_its_slot_is_free_for_the_next(stack: Stack) -> None:
    """Attack: a client that sends its headers and a few bytes of a declared body, then
    nothing, to hold an upload slot (100 MB declared: a large upload's, the process's
    whole budget here). After `upload_read_timeout_seconds` it gets 408."""
    store = ObjectStore(stack.settings.s3())
    before = data_keys(store)
    status, body = raw_request(
        stack,
        "POST /v1/ingest?name=slow HTTP/1.1\r\nContent-Length: 100000000",
        b"id,label\n",
    )
    assert status == 408
    assert b"no bytes of the upload arrived for 2 s" in body
    assert data_keys(store) == before  # nothing of it stored
    # The API's only upload slot is free again: the next upload lands (not 503).
    response = upload(stack, "after_slow")
    assert response.status_code == 202, response.text


def test_attack_slow_reader_ends_its_export_and_frees_the_query_slot(stack: Stack) -> None:
    """Attack: an export the client never reads, to hold the query slots (one here). Once
    the answer has waited `sql_send_timeout_seconds` on the client, it ends: its query
    process is stopped, the connection closed, and the next query answers."""
    killed_before = metric(stack, "lakehouse_query_processes_killed_total")
    sql = "SELECT i, repeat('x', 100) AS pad FROM range(100000000) t(i)"
    export = json.dumps({"sql": sql, "max_rows": 1_000_000})  # ~100 MB: past any socket buffer
    port = stack.settings.api_port
    with socket.create_connection(("127.0.0.1", port), timeout=120) as peer:
        peer.sendall(
            f"POST /v1/sql?format=csv HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {stack.admin_token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(export)}\r\n\r\n{export}".encode()
        )
        # Read nothing while a small query waits for the slot (503s say when to retry).
        deadline = time.monotonic() + 120  # only stops a hung test
        while True:
            small = httpx.post(
                f"{stack.api_url}/v1/sql",
                json={"sql": "SELECT 1 AS one"},
                headers=bearer(stack.admin_token),
                timeout=60,
            )
            if small.status_code != 503 or time.monotonic() > deadline:
                break
            time.sleep(float(small.headers["retry-after"]))
        assert small.status_code == 200, small.text
        assert small.json()["rows"] == [{"one": 1}]
        received = 0
        while chunk := peer.recv(1024 * 1024):  # what was sent, then the server's close
            received += len(chunk)
    assert 0 < received < 100 * 1024**2  # ended long before the export's end
    assert metric(stack, "lakehouse_query_processes_killed_total") == killed_before + 1


def metric(stack: Stack, name: str) -> float:
    text = httpx.get(f"{stack.api_url}/metrics", headers=bearer(stack.admin_token)).text
    return sum(
        s.value for m in text_string_to_metric_families(text) for s in m.samples if s.name == name
    )


def test_attack_16_mib_json_body_is_413_before_it_is_read(stack: Stack) -> None:
    """Attack: a huge JSON body to /v1/sql. A declared length past the cap is refused
    with not a byte of the body sent: nothing was read, let alone parsed."""
    status, body = raw_request(
        stack,
        "POST /v1/sql HTTP/1.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {16 * 1024 * 1024}",
    )
    assert status == 413
    assert b"the request body is larger than 1,048,576 bytes" in body


def test_attack_16_mib_json_body_without_a_length_is_413(stack: Stack) -> None:
    """The same body sent in chunks, with no length declared: refused at the cap."""

    def chunks() -> Iterator[bytes]:
        yield b'{"sql": "SELECT 1 -- '
        for _ in range(16):
            yield b"x" * (1024 * 1024)

    response = httpx.post(
        f"{stack.api_url}/v1/sql",
        content=chunks(),
        headers={**bearer(stack.admin_token), "content-type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 413
    assert "LAKEHOUSE_MAX_JSON_BODY_BYTES" in response.json()["detail"]


@pytest.mark.parametrize(
    "headers",
    [
        [(f"x-h{i}", "1") for i in range(20_000)],
        [("x-big", "a" * (8 * 1024 * 1024))],
    ],
    ids=["20000-headers", "8-mib-header"],
)
def test_attack_too_many_or_too_large_headers_is_431(
    stack: Stack, headers: list[tuple[str, str]]
) -> None:
    response = httpx.get(
        f"{stack.api_url}/v1/catalog",
        headers=[*bearer(stack.admin_token).items(), *headers],
        timeout=60,
    )
    assert response.status_code == 431
    assert "LAKEHOUSE_MAX_REQUEST_HEADERS" in response.json()["detail"]


def test_attack_5000_columns_is_400_naming_the_cap(stack: Stack) -> None:
    """Attack: a very wide file (each column is carried into the log entry, Parquet,
    Iceberg and the catalog); past `max_columns` (4,096) it is refused, nothing stored."""
    store = ObjectStore(stack.settings.s3())
    before = data_keys(store)
    header = ",".join(f"c{i}" for i in range(5000))
    response = upload(stack, "wide", body=f"{header}\n{','.join(['1'] * 5000)}\n".encode())
    assert response.status_code == 400
    assert response.json()["detail"]["max_columns"] == 4096
    assert "LAKEHOUSE_MAX_COLUMNS" in response.json()["detail"]["message"]
    assert data_keys(store) == before


def test_a_json_body_within_the_cap_is_answered(stack: Stack) -> None:
    response = httpx.post(
        f"{stack.api_url}/v1/sql",
        json={"sql": "SELECT 1 AS one -- " + "x" * 90_000},
        headers=bearer(stack.admin_token),
        timeout=60,
    )
    assert response.status_code == 200, response.text
    assert response.json()["rows"] == [{"one": 1}]


def ingests(stack: Stack, name: str) -> int:
    """Ingests committed to `name`'s log; each has its landed file, and no other is there."""
    store = ObjectStore(stack.settings.s3())
    committed = sum(1 for _ in store.list_keys(log_prefix(name)))
    assert sum(1 for _ in store.list_keys(f"{LANDING}{name}/")) == committed
    return committed


def leases(stack: Stack, kind: str, token_name: str) -> int:
    """The leases of `kind` the token holds, as every API process counts them."""
    found = redis.Redis.from_url(stack.settings.resolved_limits_url)
    return int(found.zcard(f"LAKEHOUSE/leases/{kind}:{token_name}"))


def test_attack_burst_over_the_rate_is_429_with_retry_after_and_stores_nothing(
    throttled: Stack, tokens: dict[str, str]
) -> None:
    """Attack: one token sends requests as fast as it can. Past its requests per second
    (1 here, counted in Redis for both API processes) it gets 429 with Retry-After, and no
    refused upload is stored."""
    token = tokens["burst"]
    started = time.monotonic()
    answers = [upload(throttled, "burst", token, b"n\n%d\n" % i) for i in range(5)]
    elapsed = time.monotonic() - started
    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {202, 429}, statuses
    # Five requests all within the limit would have to span four seconds.
    assert 429 in statuses or elapsed >= 4
    for refused in (a for a in answers if a.status_code == 429):
        assert int(refused.headers["retry-after"]) >= 1
        assert "LAKEHOUSE_TOKEN_REQUESTS_PER_SECOND" in refused.json()["detail"]
    assert ingests(throttled, "burst") == statuses.count(202)


def test_attack_uploading_past_the_hourly_bytes_is_429_and_stores_nothing(
    throttled: Stack, tokens: dict[str, str]
) -> None:
    token = tokens["bytes"]
    body = b"n\n" + b"1" * 38 + b"\n"  # 43 bytes with a line more: two fit in 100, three not
    for i in range(2):
        landed = upload_past_the_rate(throttled, "volume", token, body + b"%d\n" % i)
        assert landed.status_code == 202, landed.text
    refused = upload_past_the_rate(throttled, "volume", token, body + b"9\n")
    assert refused.status_code == 429
    assert "uploaded more than 100 bytes in the last hour" in refused.json()["detail"]
    assert int(refused.headers["retry-after"]) >= 1
    assert ingests(throttled, "volume") == 2


def test_attack_one_token_holding_its_uploads_gets_429_others_go_on(
    throttled: Stack, tokens: dict[str, str]
) -> None:
    """Attack: one token opens uploads and stalls them. Past its uploads at once (1 here)
    it gets 429; another token's upload lands; once the stalled one ends, the first token
    may upload again."""
    holder, other = tokens["holder"], tokens["other"]
    port = throttled.settings.api_port
    with socket.create_connection(("127.0.0.1", port), timeout=60) as peer:
        peer.sendall(
            f"POST /v1/ingest?name=held HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {holder}\r\nContent-Length: 1000\r\n\r\nn\n".encode()
        )
        deadline = time.monotonic() + 60  # only stops a hung test
        while leases(throttled, "uploads", "holder") == 0:  # the stalled upload is in
            assert time.monotonic() < deadline, "the stalled upload never took its lease"
            time.sleep(0.05)
        refused = upload_past_the_rate(throttled, "held2", holder, b"n\n1\n")
        assert refused.status_code == 429, refused.text
        assert "already has 1 uploads in flight" in refused.json()["detail"]
        assert upload_past_the_rate(throttled, "others", other, b"n\n2\n").status_code == 202
        assert peer.recv(65536).split(b" ", 2)[1] == b"408"  # the stalled one times out
    assert upload_past_the_rate(throttled, "held3", holder, b"n\n3\n").status_code == 202
