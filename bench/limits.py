"""What the per-token limits and the metrics cost: `/v1/sql` count(*) latency of the API
against the same API without them (`bench/nolimits.py`, started beside the real one on the
same stack), in alternating rounds."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING

import httpx

from bench.report import Figure
from bench.variants import median_ms, start_variant

if TYPE_CHECKING:
    from bench.harness import Bench

ROUNDS = 4  # alternating rounds of each side


def measure(bench: Bench) -> None:

    other = start_variant(bench, "bench.nolimits:app")
    query = {"sql": "SELECT count(*) FROM sqlbench"}
    runs = 10 * bench.size.repeats
    sides: dict[str, list[float]] = {"with": [], "without": []}
    try:
        with httpx.Client(timeout=60, headers=bench.auth) as client:
            for url in (bench.api, other.url):  # warm both
                median_ms(client, f"{url}/v1/sql", query, 5)
            for _ in range(ROUNDS):
                sides["with"].append(median_ms(client, f"{bench.api}/v1/sql", query, runs))
                sides["without"].append(median_ms(client, f"{other.url}/v1/sql", query, runs))
    finally:
        other.stop()
    ours, anchor = statistics.median(sides["with"]), statistics.median(sides["without"])
    bench.report.add(
        Figure(
            "/v1/sql count(*) median latency with per-token limits and metrics",
            f"{ours:.2f} ms ({ours - anchor:+.2f} ms)",
            f"the same API without them: {anchor:.2f} ms",
            "within 0.3 ms",
            ours - anchor <= 0.3,
            f"{ROUNDS} alternating rounds of {runs}",
        )
    )
