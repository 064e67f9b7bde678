"""What identity costs, measured beside its anchors in the same run:

- `/v1/sql` count(*) latency with a token, against the same API without the token check
  (`bench/noauth.py`: the app with `authenticate` overridden, started beside the real one
  on the same stack), in alternating rounds;
- ingest acknowledgements per second, likewise;
- the audit trail: a record's cost on the request path, a batch's off it;
- a reader's 403 for a dataset outside its grants that exists, and for one that does not.
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import httpx

from api.audit import AuditLog
from bench.report import Figure
from bench.variants import median_ms, start_variant

if TYPE_CHECKING:
    from bench.harness import Bench

ROUNDS = 4  # alternating rounds of each side


def measure(bench: Bench) -> None:
    other = start_variant(bench, "bench.noauth:app")
    try:
        _latency(bench, other.url)
        _acknowledgements(bench, other.url)
    finally:
        other.stop()
    _audit_cost(bench)
    _refusal_timing(bench)


def _latency(bench: Bench, without: str) -> None:
    query = {"sql": "SELECT count(*) FROM sqlbench"}
    runs = 10 * bench.size.repeats
    with_token: list[float] = []
    no_check: list[float] = []
    with httpx.Client(timeout=60, headers=bench.auth) as authed, httpx.Client(timeout=60) as bare:
        for client, url in ((authed, bench.api), (bare, without)):  # warm both
            median_ms(client, f"{url}/v1/sql", query, 5)
        for _ in range(ROUNDS):
            with_token.append(median_ms(authed, f"{bench.api}/v1/sql", query, runs))
            no_check.append(median_ms(bare, f"{without}/v1/sql", query, runs))
    ours, anchor = statistics.median(with_token), statistics.median(no_check)
    bench.report.add(
        Figure(
            "/v1/sql count(*) median latency with a token",
            f"{ours:.2f} ms ({ours - anchor:+.2f} ms)",
            f"the same API without the token check: {anchor:.2f} ms",
            "within 0.5 ms",
            ours - anchor <= 0.5,
            f"{ROUNDS} alternating rounds of {runs}",
        )
    )


def _acknowledgements(bench: Bench, without: str) -> None:
    per_round = max(bench.size.small_files // 2, 16)
    rates: dict[str, list[float]] = {"with": [], "without": []}
    for n in range(ROUNDS):
        for side, url, headers in (("with", bench.api, bench.auth), ("without", without, {})):
            rates[side].append(_ack_rate(bench, url, headers, f"acks_{side}_{n}", per_round))
    ours, anchor = statistics.median(rates["with"]), statistics.median(rates["without"])
    bench.report.add(
        Figure(
            "ingest acknowledgements/s with a token, 8 clients, 100-row files",
            f"{ours:.1f}/s = {ours / anchor:.2f}x",
            f"the same API without the token check: {anchor:.1f}/s",
            ">= 0.95x",
            ours >= 0.95 * anchor,
            f"{ROUNDS} alternating rounds of {per_round} files",
        )
    )


def _ack_rate(bench: Bench, url: str, headers: dict[str, str], name: str, count: int) -> float:
    def send(i: int) -> None:
        body = bench.small_csv(first_id=i * 1000, rows=100)
        with httpx.Client(timeout=120, headers=headers) as client:
            while (response := client.post(f"{url}/v1/ingest", params={"name": name},
                                            content=body)).status_code == 503:  # fmt: skip
                time.sleep(0.05)
            response.raise_for_status()

    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(send, range(count)))
    return count / (time.perf_counter() - started)


def _audit_cost(bench: Bench) -> None:
    settings = bench.settings
    audit = AuditLog(bench.store, flush_seconds=3600, batch_records=10**9)  # flush by hand
    record = {
        "request_id": "0" * 32, "token": "analyst", "method": "POST", "path": "/v1/sql",
        "datasets": ["sqlbench"], "sql": "SELECT count(*) FROM sqlbench", "sql_sha256": "0" * 64,
        "status": 200, "rows": 1, "bytes_in": 40, "bytes_out": 120, "ms": 7.5,
        "client": "127.0.0.1:50000", "at": datetime.now(UTC),
    }  # fmt: skip
    count = settings.audit_batch_records
    started = time.perf_counter()
    for _ in range(count):
        audit.append(dict(record))
    append_us = (time.perf_counter() - started) / count * 1e6
    started = time.perf_counter()
    audit.flush()
    batch_ms = (time.perf_counter() - started) * 1000
    audit.close()
    bench.report.add(
        Figure(
            f"audit trail: cost per request (batches of {count})",
            f"{append_us:.1f} us on the request path + {batch_ms / count * 1000:.0f} us off it",
            f"one batch of {count} written as Parquet: {batch_ms:.0f} ms",
            "-",
            None,
            f"a crash loses at most the last batch ({count} records or "
            f"{settings.audit_flush_seconds:g} s)",
        )
    )


def _refusal_timing(bench: Bench) -> None:
    response = bench.http.post(
        f"{bench.api}/v1/tokens",
        json={"name": "bench-reader", "role": "reader", "datasets": ["other_*"]},  # fmt: skip
    )
    response.raise_for_status()
    headers = {"authorization": f"Bearer {response.json()['token']}"}
    medians = {}
    with httpx.Client(timeout=60, headers=headers) as client:
        for label, name in (("exists", "sqlbench"), ("missing", "sqlbench_none")):
            times = []
            for _ in range(20 * bench.size.repeats):
                started = time.perf_counter()
                answer = client.post(f"{bench.api}/v1/sql", json={"sql": f"SELECT * FROM {name}"})
                times.append(time.perf_counter() - started)
                assert answer.status_code == 403, answer.text
            medians[label] = statistics.median(times) * 1000
    bench.report.add(
        Figure(
            "a reader's 403 for a dataset outside its grants: existing vs missing",
            f"{medians['exists']:.2f} ms vs {medians['missing']:.2f} ms",
            "-",
            "the same answer, decided before any lookup",
            None,
        )
    )
