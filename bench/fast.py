"""The query path's fixed cost and the cost of small files, each against its anchor in the
same run: `/v1/sql` over TPC-H's `lineitem` (600k rows at SF 0.1) against DuckDB in this
process over the same objects (median and p99), TPC-H's 22 queries through `/v1/sql`, and
the CPU the whole stack spends applying 200 small files (`python -m bench.run --only fast`)."""

from __future__ import annotations

import http.client
import json
import math
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import duckdb
import httpx
import psutil

from api.query.formats import json_value
from bench import tpch
from bench.report import Figure
from lakehouse.duck import sql_string

if TYPE_CHECKING:
    from bench.harness import Bench

ROUNDS = 4  # alternating rounds of each side
# Q1's shape: real work over every row of lineitem.
LINEITEM_GROUP_BY = (
    "SELECT l_returnflag, l_linestatus, sum(l_quantity) AS quantity, "
    "avg(l_extendedprice) AS price, count(*) AS n FROM lineitem GROUP BY ALL ORDER BY ALL"
)
TIMED_RUNS = 5  # each TPC-H query, each side, after one warm run: the median


class SqlClient:
    """POST /v1/sql over one kept-alive connection of the standard library's `http.client`:
    the figures time the service, not a client library (httpx adds ~0.4 ms a request here,
    which the overhead figure reports beside)."""

    def __init__(self, bench: Bench) -> None:
        url = httpx.URL(bench.api)
        self.connection = http.client.HTTPConnection(url.host, url.port, timeout=600)
        self.headers = {**bench.auth, "content-type": "application/json"}

    def __enter__(self) -> SqlClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.connection.close()

    def post(self, query: str, **fields: Any) -> bytes:
        """The answer's body; SqlFailed with the answer if it is not a 200."""
        body = json.dumps({"sql": query, **fields}).encode()
        self.connection.request("POST", "/v1/sql", body, self.headers)
        response = self.connection.getresponse()
        answer = response.read()
        if response.status != 200:
            raise SqlFailed(response.status, answer.decode(errors="replace"))
        return answer


class SqlFailed(RuntimeError):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"{status} {text[:300]}")


def measure(bench: Bench, scales: list[float]) -> None:
    """`scales`: TPC-H's scales to run the 22 queries at, the last also the one the
    latency figures read (SF 0.1: 600k lineitem rows)."""
    for scale in scales:
        tpch_through_sql(bench, scale)
    overhead(bench)


def overhead(bench: Bench) -> None:
    """Median and p99 of `/v1/sql` and of DuckDB in this process over the same objects, in
    alternating rounds; the figure is the difference."""
    duck = tpch.duck_over_datasets(bench, ["lineitem"])
    (rows,) = duck.execute("SELECT count(*) FROM lineitem").fetchone() or (0,)
    runs = 10 * bench.size.repeats
    waited = bench.wait_quiet()
    for label, query in (
        ("count(*)", "SELECT count(*) FROM lineitem"),
        ("group-by", LINEITEM_GROUP_BY),
    ):
        sides: dict[str, list[float]] = {"api": [], "httpx": [], "duck": []}
        with SqlClient(bench) as sql, httpx.Client(timeout=60, headers=bench.auth) as http:

            def api(q: str = query) -> None:
                sql.post(q)

            def through_httpx(q: str = query) -> None:
                http.post(f"{bench.api}/v1/sql", json={"sql": q}).raise_for_status()

            def direct(q: str = query) -> None:
                duck.execute(q).fetchall()

            for _ in range(5):  # warm each
                api()
                through_httpx()
                direct()
            for _ in range(ROUNDS):
                sides["api"] += _samples_ms(api, runs)
                sides["httpx"] += _samples_ms(through_httpx, runs)
                sides["duck"] += _samples_ms(direct, runs)
        ours, anchor = _median_p99(sides["api"]), _median_p99(sides["duck"])
        httpx_over = _median_p99(sides["httpx"])[0] - anchor[0]
        median_over, p99_over = ours[0] - anchor[0], ours[1] - anchor[1]
        bench.report.add(
            Figure(
                f"/v1/sql overhead over DuckDB, {label} on lineitem ({rows:,} rows)",
                f"median {ours[0]:.2f} ms ({median_over:+.2f} ms), p99 {ours[1]:.2f} ms "
                f"({p99_over:+.2f} ms)",
                f"DuckDB in one process over the same objects: median {anchor[0]:.2f} ms, "
                f"p99 {anchor[1]:.2f} ms",
                "median overhead <= 2 ms, p99 <= 10 ms",
                median_over <= 2 and p99_over <= 10,
                f"through http.client, kept alive; through httpx: median {httpx_over:+.2f} ms; "
                f"{ROUNDS} alternating rounds of {runs}, after {waited:.1f} s for runs to end",
            )
        )


def tpch_through_sql(bench: Bench, scale: float) -> None:
    """TPC-H's 22 queries through `/v1/sql` (JSON) and through DuckDB over the same
    objects: equal answers (DuckDB's values written as the API writes them), and the
    geometric mean of the time ratios (each side's median of TIMED_RUNS). A query the API
    refuses is named in the figure, with the API's answer, and the others still timed."""
    queries = tpch.load(bench, scale)
    duck = tpch.duck_over_datasets(bench, tpch.tables())
    waited = bench.wait_quiet()
    different, failed, ratios = [], [], {}
    with SqlClient(bench) as sql:
        for number, query in queries:
            try:
                equal, ratios[number] = _through_sql(sql, duck, query)
            except SqlFailed as exc:
                failed.append(f"Q{number}: {exc}")
                continue
            if not equal:
                different.append(number)
    if not ratios:
        raise RuntimeError(f"every TPC-H query failed through /v1/sql: {'; '.join(failed)}")
    equal_count = len(ratios) - len(different)
    geomean = math.exp(statistics.fmean(math.log(r) for r in ratios.values()))
    slowest = max(ratios, key=ratios.__getitem__)
    bound = 1.10 if scale >= 0.1 else 1.30
    bench.report.add(
        Figure(
            f"TPC-H SF {scale}, 22 queries through /v1/sql",
            f"{equal_count} of {len(queries)} answers equal DuckDB's; {geomean:.2f}x its time "
            "(geometric mean)",
            "DuckDB over the same Parquet objects, in one process (fetchall; its answers "
            "compared as the API writes them in JSON; ours through http.client, kept alive)",
            f"all equal, <= {bound:.2f}x",
            equal_count == len(queries) and geomean <= bound,
            f"slowest ratio {ratios[slowest]:.2f}x (Q{slowest}); median of {TIMED_RUNS} runs "
            f"each, after {waited:.1f} s for runs to end"
            + (f"; different: Q{', Q'.join(map(str, different))}" if different else "")
            + (f"; failed: {'; '.join(failed)}" if failed else ""),
        )
    )


def _through_sql(sql: SqlClient, duck: duckdb.DuckDBPyConnection, query: str) -> tuple[bool, float]:
    """Whether `query`'s answer through `/v1/sql` equals DuckDB's, and its time ratio."""

    def api() -> list[Any]:
        answer = json.loads(sql.post(query, max_rows=10**6))
        return [list(row.values()) for row in answer["rows"]]

    def direct() -> list[Any]:
        return duck.execute(query).fetchall()

    ours, theirs = api(), direct()  # warm, and the answers compared
    as_json = [[json_value(v) for v in row] for row in theirs]  # as the API writes them
    equal = tpch.same(ours, json.loads(json.dumps(as_json)))
    timed: dict[str, list[float]] = {"api": [], "duck": []}
    for _ in range(TIMED_RUNS):
        timed["api"] += _samples_ms(api, 1)
        timed["duck"] += _samples_ms(direct, 1)
    return equal, statistics.median(timed["api"]) / statistics.median(timed["duck"])


def stack_cpu_seconds(bench: Bench) -> float:
    """CPU time used so far by the stack's processes and their children (from /proc), the
    children that ended and were waited for included."""
    total = 0.0
    for process in bench.stack.processes:
        try:
            root = psutil.Process(process.popen.pid)
            for p in [root, *root.children(recursive=True)]:
                with_children = p.cpu_times()
                total += sum(with_children[:4])  # user, system, children's user and system
        except psutil.NoSuchProcess:
            continue
    return total


def _samples_ms(run: Any, times: int) -> list[float]:
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        run()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def _median_p99(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def small_files_cpu(bench: Bench) -> None:
    """The CPU the whole stack spends applying `small_files` committed 100-row files to one
    dataset (uploaded while no run worker runs, then the workers start), against one
    batched DuckDB read of the same files (this process and the S3 server)."""
    count, name = bench.size.small_files, "cpu_small"
    for worker in bench._workers():
        bench.stack.stop(worker)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: bench._small_file(name, i), range(count)))
    bench.stack.start_workers(bench.settings.workers)
    started, cpu_before = time.perf_counter(), stack_cpu_seconds(bench)
    queryable = bench._wait_queryable({name: 100 * count})
    cpu = stack_cpu_seconds(bench) - cpu_before
    anchor = _batched_read_cpu(bench, count)
    bench.report.add(
        Figure(
            f"small files: CPU of the whole stack to apply {count} committed 100-row files "
            "to one dataset",
            f"{cpu:.1f} CPU-s ({count / (queryable - started):.1f} files/s until queryable)",
            f"one batched DuckDB read of the same files to Parquet in S3: {anchor:.2f} CPU-s",
            "<= 5 CPU-s per 200 files",
            cpu * 200 / count <= 5,
            "every process of the stack, from /proc, the bench's 4 Hz poll included",
        )
    )


def _batched_read_cpu(bench: Bench, count: int) -> float:
    """CPU-s of one DuckDB COPY of `count` small files in S3 to one Parquet object: this
    process's and the S3 server's."""
    keys = [f"bench/small/{i}.csv" for i in range(count)]
    for i, key in enumerate(keys):
        bench.store.put_bytes(key, bench.small_csv(first_id=i * 1000, rows=100), "text/csv")
    urls = ", ".join(sql_string(bench.store.url(key)) for key in keys)
    target = sql_string(bench.store.url("bench/small.parquet"))
    con = bench.duck()
    s3 = psutil.Process(next(p.popen.pid for p in bench.stack.processes if p.name == "s3"))
    before = time.process_time(), sum(s3.cpu_times()[:2])
    con.execute(f"COPY (SELECT * FROM read_csv([{urls}])) TO {target} (FORMAT parquet)")
    return time.process_time() - before[0] + sum(s3.cpu_times()[:2]) - before[1]
