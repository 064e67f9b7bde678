"""The Postgres endpoint's figures, each against `/v1/sql` or DuckDB in the same run:
count(*) latency through psycopg, 8 concurrent psycopg clients, 10M rows streamed to a
psycopg server-side cursor (the endpoint's memory above idle), and TPC-H's 22 queries
through psycopg, equal to DuckDB's own answers (`python -m bench.run --only
sql_latency,pgwire`: it reads the `sqlbench` dataset sql_latency uploads)."""

from __future__ import annotations

import math
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import httpx
import psycopg

from bench import tpch as tpch_data
from bench.report import Figure
from devstack.processes import PeakMemory

if TYPE_CHECKING:
    from bench.harness import Bench

MIB = 1024 * 1024
ROUNDS = 4  # alternating rounds of each side
COUNT = "SELECT count(*) FROM sqlbench"
STREAMED_ROWS = {False: 10_000_000, True: 200_000}  # {small variant?: rows}
TPCH_SCALE = {False: 0.1, True: 0.01}


def measure(bench: Bench, small: bool) -> None:
    """`small`: the CI variant (fewer rows streamed, TPC-H at SF 0.01)."""
    latency(bench)
    throughput(bench)
    streaming(bench, STREAMED_ROWS[small])
    tpch(bench, TPCH_SCALE[small])


def _connect(bench: Bench) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host="127.0.0.1",
        port=bench.settings.pg_port,
        user="bench",
        password=bench.stack.admin_token,
        dbname="lakehouse",
        autocommit=True,
    )


def _median_ms(run: Any, times: int) -> float:
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        run()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def latency(bench: Bench) -> None:

    runs = 10 * bench.size.repeats
    sides: dict[str, list[float]] = {"pg": [], "http": []}
    with _connect(bench) as conn, httpx.Client(timeout=60, headers=bench.auth) as http:

        def pg() -> None:
            conn.execute(COUNT).fetchall()

        def api() -> None:
            http.post(f"{bench.api}/v1/sql", json={"sql": COUNT}).raise_for_status()

        pg()  # warm both
        api()
        for _ in range(ROUNDS):
            sides["pg"].append(_median_ms(pg, runs))
            sides["http"].append(_median_ms(api, runs))
    ours, anchor = statistics.median(sides["pg"]), statistics.median(sides["http"])
    bench.report.add(
        Figure(
            "Postgres endpoint median latency, count(*) through psycopg",
            f"{ours:.2f} ms = {ours / anchor:.2f}x /v1/sql",
            f"/v1/sql (httpx): {anchor:.2f} ms",
            "<= 1.5x /v1/sql",
            ours <= 1.5 * anchor,
            f"{ROUNDS} alternating rounds of {runs}",
        )
    )


def throughput(bench: Bench) -> None:

    def pg_client(deadline: float) -> int:
        done = 0
        with _connect(bench) as conn:
            while time.perf_counter() < deadline:
                try:
                    conn.execute(COUNT).fetchall()
                    done += 1
                except psycopg.errors.TooManyConnections:
                    time.sleep(0.05)  # every query slot was busy: as a client retries
        return done

    def http_client(deadline: float) -> int:
        done = 0
        with httpx.Client(timeout=60, headers=bench.auth) as http:
            while time.perf_counter() < deadline:
                if http.post(f"{bench.api}/v1/sql", json={"sql": COUNT}).status_code == 200:
                    done += 1
        return done

    rates: dict[str, list[float]] = {"pg": [], "http": []}
    for _ in range(2):  # alternating, twice
        for side, client in (("pg", pg_client), ("http", http_client)):
            started = time.perf_counter()
            deadline = started + bench.size.throughput_seconds
            with ThreadPoolExecutor(8) as pool:
                done = sum(pool.map(client, [deadline] * 8))
            rates[side].append(done / (time.perf_counter() - started))
    ours, anchor = statistics.median(rates["pg"]), statistics.median(rates["http"])
    bench.report.add(
        Figure(
            "Postgres endpoint throughput, 8 concurrent psycopg clients, count(*)",
            f"{ours:.0f} queries/s = {ours / anchor:.2f}x /v1/sql",
            f"/v1/sql with 8 clients: {anchor:.0f} queries/s",
            ">= /v1/sql's",
            ours >= anchor,
            f"2 alternating rounds of {bench.size.throughput_seconds:g} s; query processes: "
            f"the endpoint {bench.settings.pg_workers} x {bench.settings.pg_max_concurrent}, "
            f"the API {bench.settings.api_workers} x {bench.settings.sql_max_concurrent}",
        )
    )


def streaming(bench: Bench, rows: int) -> None:

    endpoint = next(p.popen.pid for p in bench.stack.processes if p.name == "postgres-endpoint")
    time.sleep(1)
    with PeakMemory(endpoint) as memory, _connect(bench) as conn:
        idle = memory.current()
        started = time.perf_counter()
        with conn.transaction(), conn.cursor(name="stream") as cursor:
            cursor.itersize = 10_000
            cursor.execute(f"SELECT range AS n, range * 2 AS m FROM range({rows})")
            count = total = 0
            for n, _m in cursor:
                count += 1
                total += n
        elapsed = time.perf_counter() - started
    assert (count, total) == (rows, rows * (rows - 1) // 2), (count, total)
    above = (memory.peak - idle) / MIB
    bench.report.add(
        Figure(
            f"Postgres endpoint memory above idle, {rows:,} rows to a psycopg cursor",
            f"+{above:.0f} MiB (peak {memory.peak / MIB:.0f} MiB, its query processes included)",
            f"idle {idle / MIB:.0f} MiB",
            "<= 200 MiB above idle",
            above <= 200,
            f"{elapsed:.1f} s, {rows / elapsed:,.0f} rows/s",
        )
    )


def tpch(bench: Bench, scale: float) -> None:
    """TPC-H's 22 queries through psycopg, and through DuckDB over the same Parquet
    objects: equal answers, and the time ratio."""
    queries = tpch_data.load(bench, scale)
    duck = tpch_data.duck_over_datasets(bench, tpch_data.tables())
    different, ratios = [], []
    with _connect(bench) as conn:
        for number, query in queries:
            ours, mine = _timed(lambda q=query: conn.execute(q).fetchall())
            theirs, anchor = _timed(lambda q=query: duck.execute(q).fetchall())
            if not tpch_data.same(ours, theirs):
                different.append(number)
            ratios.append(mine / anchor)
    equal = len(queries) - len(different)
    geomean = math.exp(statistics.fmean(math.log(r) for r in ratios))
    bench.report.add(
        Figure(
            f"TPC-H SF {scale}, 22 queries through psycopg",
            f"{equal} of {len(queries)} answers equal DuckDB's; {geomean:.2f}x its time "
            "(geometric mean)",
            "DuckDB over the same Parquet objects, in one process",
            "all 22 equal",
            equal == len(queries),
            f"slowest ratio {max(ratios):.1f}x"
            + (f"; different: Q{', Q'.join(map(str, different))}" if different else ""),
        )
    )


def _timed(run: Any) -> tuple[list[Any], float]:
    run()  # warm
    started = time.perf_counter()
    answer = run()
    return answer, time.perf_counter() - started
